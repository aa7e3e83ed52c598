"""Model pre-labels: a model's predictions, imported for a campaign, one per image.

A prediction is stored in the ``prelabels`` table (one row per item, in the response schema of
schemas/annotations.py) with the model's name and its uncertainty about the image. It serves in
one of two modes (``CampaignSpec.prelabels.mode``; ``start`` for a campaign whose spec names no
pre-labels):

* ``start``: the annotation page opens with the prediction drawn, as a first draft the person
  moves, relabels, deletes or keeps; what they submit is their answer.
* ``voter``: annotators never see it; ``voter_responses`` hands it to the consensus as the
  answer of one more voter, ``model:<name>``, whose reliability is learned like anyone's.

Gold items, in mode ``start``, take predictions too, matched like the images (an image's name
wins over a gold item's; a gold image that is also one of the campaign's images gets its
prediction): a gold task that opened empty while the others open with a draft would give
itself away. The import says how many gold items have none while images do.

Formats
-------
**COCO** (``.json``), in one of three shapes:

* a dataset: ``{"images", "categories", "annotations"}``, ``score`` optional;
* a results list with its companion: ``{"images", "categories", "results": [...]}``;
* a bare results list ``[{image_id, category_id, bbox | segmentation | keypoints, score}]``,
  with the ``images`` and ``categories`` given separately as its companion (API ``companion``,
  CLI ``--companion``).

Images are matched to the campaign's items by file name: the basename of the COCO image's
``file_name`` against the basename of the item's URI. Categories are matched to ontology classes
by name. The class decides the object: ``box`` from ``bbox`` (and an ``angle``, as Quorum's COCO
export writes for rotated boxes); ``polygon`` from each ring of a polygon ``segmentation``;
``mask`` from an RLE ``segmentation`` (compressed or not) or from polygon rings, rasterized;
``keypoints`` from ``keypoints`` ``[x, y, v] * K`` (a ``v`` that is not 0, 1 or 2 is a score:
positive means visible); ``tag`` from an annotation with none of those, or from the image's
``labels`` list (Quorum's export puts tags there). ``attributes`` are kept. COCO has no
polylines. An image listed with no annotation is predicted empty, except in a classification
campaign, where it has no prediction. Tag annotations with scores are class probabilities:
single-label, the most probable class is the tag; multi-label, every class of score >= 0.5.

**JSON Lines** (``.jsonl``): one image per line,
``{"uri" | "file_name", "objects": [...], "scores": {class: p}, "uncertainty": u}``. ``objects``
are in the response schema, each with an optional ``score`` (0..1); ``scores`` (optional) are
the image's tag-class probabilities (when ``objects`` hold no tag, they choose it as for COCO);
``uncertainty`` (optional, 0..1) overrides the rule below. ``uri`` matches an item's URI, else
by its basename, as ``file_name`` does.

Uncertainty
-----------
Given, it is kept. Otherwise it is ``1 - mean(confidences)`` over the image's decisions: each
object's score; for a tag chosen from class probabilities, the top probability when
single-label (a single tag: ``1 - max p``), and ``max(p, 1 - p)`` for each class when
multi-label. With no object and no score it is 1.0 (the model found nothing it could say);
objects without any score leave it unknown (None).

Launch order (``order: uncertainty``): the images the model is least sure of get the first
ordinals, most uncertain first; images of unknown uncertainty and images without a prediction
follow, in the order they were listed. Ties keep the listed order. An import after launch never
changes the order.

Errors
------
A file is imported whole or not at all. Every problem is one FieldError naming where it is:
``lines.3.objects.0.label`` (JSON Lines, line numbers counted from 1 as editors do),
``annotations.12.bbox``, ``results.4.category_id``, ``categories.2.name``,
``images.5.file_name`` (COCO, list indices from 0). Predictions for file names that match no
image of the campaign are not errors: they are counted and named in the result.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from pydantic import ValidationError
from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Campaign, Item, Prelabel, Response, utcnow
from schemas.annotations import ResponseBody, validate_response
from schemas.campaign_spec import CampaignSpec, FieldError, spec_errors
from schemas.ontology import ClassDef, Ontology
from services import audit
from services.errors import InvalidInput, NotFound
from services.gold import GOLD
from services.image_sources import ImageRef

Format = Literal["coco", "jsonl"]
Mode = Literal["start", "voter"]

ACTION_IMPORTED = "prelabels.imported"
ORDER_KEPT = "the work order was set at launch; an import after launch does not change it"
GOLD_WITHOUT_PREDICTION = (
    "{n} gold item(s) have no prediction while images do: annotators can tell those from the "
    "images that open with a draft; add the gold images to the predictions"
)
MAX_ERRORS = 100  # listed in a refusal; the message gives the total
MAX_UNMATCHED_LISTED = 50
CHUNK = 5_000
JSONL_FIELDS = {"uri", "file_name", "objects", "scores", "uncertainty"}
OBJECT_TYPES = {"tag", "box", "polygon", "polyline", "keypoints", "mask"}


# ---- what predictions are matched to, and what parsing gives ------------------------------


@dataclass(frozen=True)
class Target:
    """An image of the campaign that predictions can name."""

    uri: str
    width: int | None = None
    height: int | None = None

    @property
    def file_name(self) -> str:
        return file_name_of(self.uri)

    @property
    def size(self) -> tuple[int, int] | None:
        return (self.width, self.height) if self.width and self.height else None


def file_name_of(uri_or_name: str) -> str:
    """The basename of a URI's path (``file:///a/b/c.png`` -> ``c.png``) or of a file name."""
    parsed = urlparse(uri_or_name)
    path = unquote(parsed.path) if parsed.scheme else uri_or_name
    return posixpath.basename(path.replace("\\", "/"))


@dataclass(frozen=True)
class Prediction:
    uri: str  # the target's URI
    body: dict[str, Any]  # {"objects": [...]}, valid for the campaign's ontology
    uncertainty: float | None


@dataclass
class Parsed:
    predictions: dict[str, Prediction]  # by target URI, in the file's order
    unmatched: list[str]  # names in the file that match no image of the campaign


@dataclass
class ImportResult:
    campaign_id: str
    model: str
    format: str
    imported: int
    replaced: int
    unmatched: list[str]
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "model": self.model,
            "format": self.format,
            "imported": self.imported,
            "replaced": self.replaced,
            "unmatched": len(self.unmatched),
            "unmatched_file_names": self.unmatched[:MAX_UNMATCHED_LISTED],
            "message": self.message,
        }


# ---- parsing ------------------------------------------------------------------------------


def format_of(name: str, given: str | None = None, *, field_name: str = "format") -> Format:
    """The format given, else by the file's extension (.jsonl, .ndjson: jsonl; .json: coco)."""
    if given in ("coco", "jsonl"):
        return given  # type: ignore[return-value]
    if given is not None:
        raise _refuse(field_name, f"unknown format {given!r}; give coco or jsonl")
    suffix = Path(name).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "coco"
    raise _refuse(field_name, f"cannot tell the format of {Path(name).name!r}; give coco or jsonl")


def parse_predictions(
    content: str,
    fmt: Format,
    ontology: Ontology,
    targets: Sequence[Target],
    *,
    companion: str | None = None,
    gold: Sequence[Target] = (),
) -> Parsed:
    """Parse and validate a whole file of predictions; InvalidInput lists every problem.

    ``gold``: the campaign's gold images, matched only where no image of ``targets`` is."""
    index = _Index(targets, gold)
    errors: list[FieldError] = []
    if fmt == "jsonl":
        drafts = _parse_jsonl(content, ontology, index, errors)
    else:
        drafts = _parse_coco(content, companion, ontology, index, errors)
    predictions: dict[str, Prediction] = {}
    for draft in drafts:
        prediction = draft.validate(ontology, errors)
        if prediction is not None:
            predictions[prediction.uri] = prediction
    if errors:
        errors.sort(key=_natural)  # in file order: lines.2 before lines.10
        shown = errors[:MAX_ERRORS]
        more = f" (the first {MAX_ERRORS} are listed)" if len(errors) > MAX_ERRORS else ""
        raise InvalidInput(
            f"the predictions have {len(errors)} error(s){more}; nothing was imported: "
            + "; ".join(f"{e.field}: {e.message}" for e in shown[:5]),
            errors=shown,
        )
    if not predictions:
        if index.unmatched:
            names = ", ".join(repr(n) for n in index.unmatched[:5])
            raise _refuse(
                "file_name",
                f"no prediction names an image of this campaign (file names such as {names} "
                "match none; images are matched by the basename of their URI)",
            )
        raise _refuse("(file)", "the file holds no predictions")
    return Parsed(predictions=predictions, unmatched=index.unmatched)


def uncertainty_of(confidences: Sequence[float], objects: int) -> float | None:
    """The rule of the module docstring: 1 - mean confidence; nothing found: 1.0."""
    if confidences:
        return min(1.0, max(0.0, 1.0 - sum(confidences) / len(confidences)))
    if objects == 0:
        return 1.0
    return None


def _natural(error: FieldError) -> list[tuple[int, int | str]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in error.field.split(".")]


def _refuse(field_name: str, message: str) -> InvalidInput:
    return InvalidInput(
        f"{field_name}: {message}", errors=[FieldError(field=field_name, message=message)]
    )


class _Index:
    """Targets by URI and by file name; remembers the names that matched nothing."""

    def __init__(self, targets: Sequence[Target], gold: Sequence[Target] = ()) -> None:
        self.by_uri = {t.uri: t for t in targets}
        self.by_name: dict[str, list[Target]] = defaultdict(list)
        for t in targets:
            self.by_name[t.file_name].append(t)
        # Gold images are matched by name only where no image has that name, so that adding
        # gold to a campaign never makes an existing predictions file ambiguous.
        self.gold_by_name: dict[str, list[Target]] = defaultdict(list)
        for t in gold:
            if t.uri not in self.by_uri:
                self.by_uri[t.uri] = t
                self.gold_by_name[t.file_name].append(t)
        self.unmatched: list[str] = []
        self.claimed: dict[str, str] = {}  # target URI -> where it was first predicted

    def find(self, name: str, where: str, errors: list[FieldError], *, uri: bool) -> Target | None:
        target = self.by_uri.get(name) if uri else None
        if target is None:
            found = self.by_name.get(file_name_of(name)) or self.gold_by_name.get(
                file_name_of(name), []
            )
            if len(found) > 1:
                errors.append(
                    FieldError(
                        field=where,
                        message=f"{file_name_of(name)!r} names {len(found)} images of this "
                        f"campaign ({found[0].uri}, {found[1].uri}, ...); give the full uri",
                    )
                )
                return None
            if not found:
                self.unmatched.append(name)
                return None
            target = found[0]
        first = self.claimed.get(target.uri)
        if first is not None:
            errors.append(
                FieldError(field=where, message=f"{name!r} was already predicted at {first}")
            )
            return None
        self.claimed[target.uri] = where
        return target


# A function from a field of the response schema (relative to one object, such as "points.2")
# to where that value came from in the file (such as "annotations.7.segmentation").
Locator = Callable[[str], str]


def _at(where: str) -> Locator:
    """Every field of the object is at ``where`` (one value in the file)."""
    return lambda rest: where


def _under(where: str) -> Locator:
    """The object's fields are under ``where``, with the same names (JSON Lines)."""
    return lambda rest: f"{where}.{rest}" if rest else where


@dataclass
class _Draft:
    """One image's prediction as read from the file, before validation."""

    target: Target
    where: str  # the image's entry: "lines.3", "images.5"
    size: tuple[int, int] | None
    objects_at: str = ""  # where a problem with the whole list is named (default: where)
    objects: list[dict[str, Any]] = field(default_factory=list)
    locators: list[Locator] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    uncertainty: float | None = None
    given_uncertainty: bool = False

    def add(self, obj: dict[str, Any], locator: Locator) -> None:
        self.objects.append(obj)
        self.locators.append(locator)

    def locate(self, field_name: str) -> str:
        """Where a field of the assembled body (``objects.3.points.1``) is in the file."""
        parts = field_name.split(".")
        if len(parts) >= 2 and parts[0] == "objects" and parts[1].isdigit():
            i = int(parts[1])
            rest = parts[2:]
            if rest and rest[0] in OBJECT_TYPES:  # pydantic names the union member
                rest = rest[1:]
            if i < len(self.locators):
                return self.locators[i](".".join(rest))
        return self.objects_at or self.where

    def validate(self, ontology: Ontology, errors: list[FieldError]) -> Prediction | None:
        try:
            body = ResponseBody.model_validate({"objects": self.objects})
        except ValidationError as exc:
            for e in spec_errors(exc):
                errors.append(FieldError(field=self.locate(e.field), message=e.message))
            return None
        problems = validate_response(ontology, body, self.size)
        for e in problems:
            errors.append(FieldError(field=self.locate(e.field), message=e.message))
        if problems:
            return None
        uncertainty = (
            self.uncertainty
            if self.given_uncertainty
            else uncertainty_of(self.confidences, len(body.objects))
        )
        return Prediction(
            uri=self.target.uri, body=body.model_dump(mode="json"), uncertainty=uncertainty
        )


def _probability(value: Any, where: str, errors: list[FieldError]) -> float | None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0.0 <= value <= 1.0
    ):
        errors.append(FieldError(field=where, message="must be a number from 0 to 1"))
        return None
    return float(value)


def _tag_decisions(
    ontology: Ontology, scored: list[tuple[ClassDef, float | None, Locator]]
) -> tuple[list[tuple[ClassDef, Locator]], list[float]]:
    """The tags an image gets from its tag entries, and their confidences (module docstring)."""
    probabilities = [(cls, p) for cls, p, _ in scored if p is not None]
    if not probabilities or len(probabilities) != len(scored):
        # Unscored tags (or a mix) are taken as they are; the validation judges them.
        return [(cls, loc) for cls, _, loc in scored], [p for _, p in probabilities]
    if ontology.multi_label:
        kept = [(cls, loc) for cls, p, loc in scored if p is not None and p >= 0.5]
        return kept, [max(p, 1.0 - p) for _, p in probabilities]
    order = {c.name: i for i, c in enumerate(ontology.classes)}
    best = max(scored, key=lambda s: (s[1] or 0.0, -order[s[0].name]))
    return [(best[0], best[2])], [best[1] or 0.0]


# ---- JSON Lines ---------------------------------------------------------------------------


def _parse_jsonl(
    content: str, ontology: Ontology, index: _Index, errors: list[FieldError]
) -> list[_Draft]:
    drafts: list[_Draft] = []
    for n, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        at = f"lines.{n}"
        try:
            entry = json.loads(line)
        except ValueError as exc:
            errors.append(FieldError(field=at, message=f"not valid JSON: {exc}"))
            continue
        if not isinstance(entry, dict):
            errors.append(FieldError(field=at, message="must be a JSON object"))
            continue
        for key in sorted(set(entry) - JSONL_FIELDS):
            errors.append(FieldError(field=f"{at}.{key}", message="unknown field"))
        draft = _jsonl_draft(entry, at, ontology, index, errors)
        if draft is not None:
            drafts.append(draft)
    return drafts


def _jsonl_draft(
    entry: dict[str, Any], at: str, ontology: Ontology, index: _Index, errors: list[FieldError]
) -> _Draft | None:
    given = [k for k in ("uri", "file_name") if entry.get(k) is not None]
    if len(given) != 1 or not isinstance(entry[given[0]], str) or not entry[given[0]]:
        errors.append(
            FieldError(field=f"{at}.uri", message="give the image as one of uri or file_name")
        )
        return None
    name_field = given[0]
    objects = entry.get("objects")
    if not isinstance(objects, list):
        message = "this field is required" if objects is None else "must be a list of objects"
        errors.append(FieldError(field=f"{at}.objects", message=message))
        return None
    target = index.find(entry[name_field], f"{at}.{name_field}", errors, uri=name_field == "uri")
    if target is None:
        return None
    draft = _Draft(target=target, where=at, size=target.size, objects_at=f"{at}.objects")
    if "uncertainty" in entry:
        draft.given_uncertainty = True
        draft.uncertainty = _probability(entry["uncertainty"], f"{at}.uncertainty", errors)
    for i, raw in enumerate(objects):
        loc = f"{at}.objects.{i}"
        if isinstance(raw, dict) and "score" in raw:
            raw = dict(raw)
            score = _probability(raw.pop("score"), f"{loc}.score", errors)
            if score is not None:
                draft.confidences.append(score)
        draft.add(raw, _under(loc))
    scores = entry.get("scores")
    if scores is not None:
        _class_scores(scores, f"{at}.scores", ontology, draft, errors)
    return draft


def _class_scores(
    scores: Any, at: str, ontology: Ontology, draft: _Draft, errors: list[FieldError]
) -> None:
    if not isinstance(scores, dict):
        errors.append(FieldError(field=at, message="must map tag classes to probabilities"))
        return
    scored: list[tuple[ClassDef, float | None, Locator]] = []
    for name, value in scores.items():
        cls = ontology.by_name(name)
        where = f"{at}.{name}"
        if cls is None or cls.geometry != "tag":
            errors.append(
                FieldError(
                    field=where,
                    message=f"unknown tag class {name!r}; expected one of "
                    f"{[c.name for c in ontology.tag_classes]}",
                )
            )
            continue
        p = _probability(value, where, errors)
        if p is not None:
            scored.append((cls, p, _at(where)))
    chosen, confidences = _tag_decisions(ontology, scored)
    if not any(isinstance(o, dict) and o.get("type") == "tag" for o in draft.objects):
        for cls, loc in chosen:  # no tag given: the probabilities choose it
            draft.add({"type": "tag", "label": cls.name, "attributes": {}}, loc)
    draft.confidences.extend(confidences)


# ---- COCO ---------------------------------------------------------------------------------


def _load_json(text: str, at: str, errors: list[FieldError]) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        errors.append(FieldError(field=at, message=f"not valid JSON: {exc}"))
        return None


def _parse_coco(
    content: str,
    companion: str | None,
    ontology: Ontology,
    index: _Index,
    errors: list[FieldError],
) -> list[_Draft]:
    data = _load_json(content, "(file)", errors)
    if data is None:
        return []
    if isinstance(data, list):
        if companion is None:
            errors.append(
                FieldError(
                    field="companion",
                    message="a bare COCO results list needs its images and categories: give "
                    "them as its companion (API: companion; CLI: --companion), or in one "
                    'file as {"images", "categories", "results"}',
                )
            )
            return []
        meta = _load_json(companion, "companion", errors)
        if meta is None:
            return []
        if not isinstance(meta, dict):
            errors.append(FieldError(field="companion", message='must be {"images", "categories"}'))
            return []
        entries, entries_at = data, "results"
    elif isinstance(data, dict):
        meta = data
        key = "annotations" if "annotations" in data else "results"
        entries, entries_at = data.get(key, []), key
        if not isinstance(entries, list):
            errors.append(FieldError(field=key, message="must be a list"))
            return []
    else:
        errors.append(
            FieldError(field="(file)", message="a COCO file is a dataset object or a results list")
        )
        return []
    images = _coco_images(meta.get("images"), index, errors)
    categories = _coco_categories(meta.get("categories"), errors)
    if images is None or categories is None:
        return []
    return _coco_drafts(entries, entries_at, images, categories, ontology, errors)


@dataclass
class _CocoImage:
    at: str
    target: Target | None  # None: matches no image of the campaign
    size: tuple[int, int] | None
    labels: list[Any]


def _coco_images(raw: Any, index: _Index, errors: list[FieldError]) -> dict[Any, _CocoImage] | None:
    if not isinstance(raw, list):
        errors.append(FieldError(field="images", message="must be the list of COCO images"))
        return None
    images: dict[Any, _CocoImage] = {}
    for j, image in enumerate(raw):
        at = f"images.{j}"
        if not isinstance(image, dict):
            errors.append(FieldError(field=at, message="must be an object"))
            continue
        image_id, name = image.get("id"), image.get("file_name")
        if isinstance(image_id, bool) or not isinstance(image_id, int | str):
            errors.append(FieldError(field=f"{at}.id", message="must be a number or a string"))
            continue
        if not isinstance(name, str) or not name:
            errors.append(FieldError(field=f"{at}.file_name", message="this field is required"))
            continue
        if image_id in images:
            errors.append(FieldError(field=f"{at}.id", message=f"image id {image_id} repeats"))
            continue
        target = index.find(name, f"{at}.file_name", errors, uri=False)
        w, h = image.get("width"), image.get("height")
        coco_size = (
            (w, h) if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0 else None
        )
        labels = image.get("labels") or []
        images[image_id] = _CocoImage(
            at=at,
            target=target,
            size=(target.size or coco_size) if target else None,
            labels=labels if isinstance(labels, list) else [],
        )
    return images


def _coco_categories(raw: Any, errors: list[FieldError]) -> dict[Any, tuple[str, str]] | None:
    """category id -> (name, where it is listed)."""
    if not isinstance(raw, list):
        errors.append(FieldError(field="categories", message="must be the list of COCO categories"))
        return None
    categories: dict[Any, tuple[str, str]] = {}
    for c, category in enumerate(raw):
        at = f"categories.{c}"
        if not isinstance(category, dict) or not isinstance(category.get("name"), str):
            errors.append(FieldError(field=f"{at}.name", message="this field is required"))
            continue
        categories[category.get("id")] = (category["name"], at)
    return categories


def _coco_drafts(
    entries: list[Any],
    entries_at: str,
    images: dict[Any, _CocoImage],
    categories: dict[Any, tuple[str, str]],
    ontology: Ontology,
    errors: list[FieldError],
) -> list[_Draft]:
    per_image: dict[Any, list[tuple[int, dict[str, Any], ClassDef]]] = defaultdict(list)
    unknown: dict[str, list[str]] = {}  # class name -> where it is used
    for k, entry in enumerate(entries):
        at = f"{entries_at}.{k}"
        if not isinstance(entry, dict):
            errors.append(FieldError(field=at, message="must be an object"))
            continue
        image_id = entry.get("image_id")
        if image_id not in images:
            errors.append(
                FieldError(field=f"{at}.image_id", message=f"no image with id {image_id!r}")
            )
            continue
        category_id = entry.get("category_id")
        if category_id not in categories:
            errors.append(
                FieldError(
                    field=f"{at}.category_id", message=f"no category with id {category_id!r}"
                )
            )
            continue
        name, listed_at = categories[category_id]
        cls = ontology.by_name(name)
        if cls is None:
            unknown.setdefault(listed_at + "|" + name, []).append(at)
            continue
        if images[image_id].target is not None:
            per_image[image_id].append((k, entry, cls))
    for key, uses in unknown.items():
        listed_at, name = key.split("|", 1)
        errors.append(
            FieldError(
                field=f"{listed_at}.name",
                message=f"unknown class {name!r} (used by {len(uses)} annotation(s), first "
                f"{uses[0]}); this campaign's classes are {ontology.class_names}",
            )
        )
    drafts = []
    for image_id, image in images.items():
        if image.target is None:
            continue
        found = per_image.get(image_id, [])
        if not found and not image.labels and ontology.is_classification:
            continue  # COCO cannot say "no tag": no prediction, rather than a wrong one
        draft = _Draft(target=image.target, where=image.at, size=image.size)
        tags: list[tuple[ClassDef, float | None, Locator]] = []
        for m, label in enumerate(image.labels):
            cls = ontology.by_name(label) if isinstance(label, str) else None
            at = f"{image.at}.labels.{m}"
            if cls is None or cls.geometry != "tag":
                errors.append(
                    FieldError(
                        field=at,
                        message=f"unknown tag class {label!r}; expected one of "
                        f"{[c.name for c in ontology.tag_classes]}",
                    )
                )
                continue
            tags.append((cls, None, _at(at)))
        for k, entry, cls in found:
            at = f"{entries_at}.{k}"
            score = None
            if entry.get("score") is not None:
                score = _probability(entry["score"], f"{at}.score", errors)
            if cls.geometry == "tag":
                tags.append((cls, score, _coco_locator(at, "tag")))
                continue
            added = _coco_objects(entry, cls, at, draft, errors)
            if added and score is not None:
                draft.confidences.append(score)
        chosen, confidences = _tag_decisions(ontology, tags)
        for cls, loc in chosen:
            draft.add({"type": "tag", "label": cls.name, "attributes": {}}, loc)
        draft.confidences.extend(confidences)
        drafts.append(draft)
    return drafts


_COCO_FIELDS = {
    "label": "category_id",
    "x": "bbox",
    "y": "bbox",
    "w": "bbox",
    "h": "bbox",
    "angle": "angle",
}


def _coco_locator(at: str, geometry: str, ring: int | None = None) -> Locator:
    """Name COCO's field for a field of the response schema."""

    def locate(rest: str) -> str:
        head = rest.split(".", 1)[0]
        if head == "attributes":
            return f"{at}.{rest}"
        if head in _COCO_FIELDS:
            return f"{at}.{_COCO_FIELDS[head]}"
        if head == "points":
            if geometry == "keypoints":
                return f"{at}.keypoints"
            return f"{at}.segmentation" + (f".{ring}" if ring is not None else "")
        if head == "rle":
            return f"{at}.segmentation"
        return f"{at}.bbox" if geometry == "box" else at

    return locate


def _numbers(value: Any) -> list[float] | None:
    if not isinstance(value, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        return None
    return [float(v) for v in value]


def _coco_objects(
    entry: dict[str, Any], cls: ClassDef, at: str, draft: _Draft, errors: list[FieldError]
) -> bool:
    """Add the objects one COCO annotation makes for its class; False if it made none."""
    base: dict[str, Any] = {"type": cls.geometry, "label": cls.name}
    attributes = entry.get("attributes")
    if isinstance(attributes, dict):
        base["attributes"] = attributes
    if cls.geometry == "box":
        bbox = _numbers(entry.get("bbox"))
        if bbox is None or len(bbox) != 4:
            errors.append(
                FieldError(field=f"{at}.bbox", message="a box class needs bbox [x, y, w, h]")
            )
            return False
        obj = {**base, "x": bbox[0], "y": bbox[1], "w": bbox[2], "h": bbox[3]}
        if entry.get("angle") is not None:
            obj["angle"] = entry["angle"]
        draft.add(obj, _coco_locator(at, "box"))
        return True
    if cls.geometry == "keypoints":
        flat = _numbers(entry.get("keypoints"))
        if flat is None or len(flat) % 3:
            errors.append(
                FieldError(field=f"{at}.keypoints", message="must be [x, y, v] * K numbers")
            )
            return False
        points = [[flat[i], flat[i + 1], _visibility(flat[i + 2])] for i in range(0, len(flat), 3)]
        draft.add({**base, "points": points}, _coco_locator(at, "keypoints"))
        return True
    if cls.geometry == "polyline":
        errors.append(
            FieldError(
                field=f"{at}.category_id",
                message=f"{cls.name!r} is a polyline class and COCO has no polylines; "
                "import them as JSON Lines",
            )
        )
        return False
    segmentation = entry.get("segmentation")
    if isinstance(segmentation, dict) and cls.geometry == "mask":
        return _coco_rle(segmentation, base, at, draft, errors)
    rings = segmentation if isinstance(segmentation, list) else None
    if not rings or not all(_numbers(r) is not None and len(r) % 2 == 0 for r in rings):
        errors.append(
            FieldError(
                field=f"{at}.segmentation",
                message=f"a {cls.geometry} class needs a polygon segmentation [[x, y, ...]]"
                + (" or an RLE" if cls.geometry == "mask" else ""),
            )
        )
        return False
    if cls.geometry == "polygon":
        for r, ring in enumerate(rings):
            points = [[ring[i], ring[i + 1]] for i in range(0, len(ring), 2)]
            draft.add({**base, "points": points}, _coco_locator(at, "polygon", r))
        return True
    return _coco_rasterize(rings, base, at, draft, errors)


def _visibility(v: float) -> int:
    if v in (0, 1, 2):
        return int(v)
    return 2 if v > 0 else 0  # a score where COCO results put visibility


def _coco_rle(
    rle: dict[str, Any], base: dict[str, Any], at: str, draft: _Draft, errors: list[FieldError]
) -> bool:
    from quality.rle import counts_from_string

    counts = rle.get("counts")
    if isinstance(counts, str):
        try:
            counts = counts_from_string(counts)
        except ValueError as exc:
            errors.append(FieldError(field=f"{at}.segmentation.counts", message=str(exc)))
            return False
    # Run lengths rather than COCO's string: the validation can then check their total.
    draft.add(
        {**base, "rle": {"size": rle.get("size"), "counts": counts}}, _coco_locator(at, "mask")
    )
    return True


def _coco_rasterize(
    rings: list[Any], base: dict[str, Any], at: str, draft: _Draft, errors: list[FieldError]
) -> bool:
    if draft.size is None:
        errors.append(
            FieldError(
                field=f"{at}.segmentation",
                message="a polygon becomes a mask only when the image's size is known; give "
                "the image's width and height, or an RLE",
            )
        )
        return False
    import numpy as np

    from quality.raster import rasterize_polygon
    from quality.rle import rle_encode

    width, height = draft.size
    mask = np.zeros((height, width), dtype=np.bool_)
    for ring in rings:
        points = np.asarray(ring, dtype=np.float64).reshape(-1, 2)
        mask ^= rasterize_polygon(points, (height, width))  # even-odd: holes stay holes
    draft.add({**base, "rle": rle_encode(mask)}, _coco_locator(at, "mask"))
    return True


# ---- launch -------------------------------------------------------------------------------


@dataclass
class LaunchPrelabels:
    """Predictions read at launch, before the campaign's items exist."""

    model: str
    format: Format
    order: str
    parsed: Parsed
    mode: Mode = "start"

    def work_order(self, images: Sequence[ImageRef]) -> list[ImageRef]:
        """The images in the order they are to be labeled (their ordinals)."""
        if self.order != "uncertainty":
            return list(images)
        predictions = self.parsed.predictions

        def key(pair: tuple[int, ImageRef]) -> tuple[int, float, int]:
            n, image = pair
            prediction = predictions.get(image.uri)
            if prediction is None or prediction.uncertainty is None:
                return (1, 0.0, n)
            return (0, -prediction.uncertainty, n)

        return [image for _, image in sorted(enumerate(images), key=key)]


def load_for_launch(
    spec: CampaignSpec,
    images: Sequence[ImageRef],
    *,
    base_dir: Path | None = None,
    gold: Sequence[Target] = (),
) -> LaunchPrelabels | None:
    """Read and validate the spec's pre-labels file (None when it names none).

    ``gold``: the campaign's gold images, which take predictions in mode ``start``. Errors are
    refused as the spec's: ``prelabels.file`` with the place in the file."""
    if spec.prelabels is None:
        return None
    path = Path(spec.prelabels.file)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    fmt = format_of(path.name, spec.prelabels.format, field_name="prelabels.format")
    if not path.is_file():
        raise _refuse("prelabels.file", f"{path} is not a file")
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _refuse("prelabels.file", f"cannot read {path}: {exc}") from exc
    targets = [Target(i.uri, i.width, i.height) for i in images]
    shown_gold = gold if spec.prelabels.mode == "start" else ()
    try:
        parsed = parse_predictions(content, fmt, spec.ontology, targets, gold=shown_gold)
    except InvalidInput as exc:
        errors = [
            FieldError(field="prelabels.file", message=f"{e.field}: {e.message}")
            for e in exc.errors
        ]
        raise InvalidInput(f"prelabels.file: {path.name}: {exc.message}", errors=errors) from None
    return LaunchPrelabels(
        model=spec.prelabels.model,
        format=fmt,
        order=spec.prelabels.order,
        parsed=parsed,
        mode=spec.prelabels.mode,
    )


async def store_at_launch(
    session: AsyncSession, campaign_id: str, loaded: LaunchPrelabels, *, created_by: str
) -> ImportResult:
    """Store the launch's predictions, in the transaction that creates the items."""
    return await _store(
        session,
        campaign_id,
        loaded.parsed,
        model=loaded.model,
        fmt=loaded.format,
        actor=("operator", created_by),
        at_launch=True,
        order=loaded.order,
        mode=loaded.mode,
    )


# ---- import for an existing campaign ------------------------------------------------------


def _spec_prelabels(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    value = spec.get("prelabels")
    return value if isinstance(value, Mapping) else {}


def mode_of(campaign: Campaign) -> Mode:
    """How the campaign uses predictions: ``start`` unless its spec says ``voter``."""
    return "voter" if _spec_prelabels(campaign.spec).get("mode") == "voter" else "start"


async def import_prelabels(
    session: AsyncSession,
    campaign_id: str,
    content: str,
    *,
    fmt: Format,
    model: str,
    companion: str | None = None,
    actor: tuple[audit.ActorType, str] = ("operator", "operator"),
) -> ImportResult:
    """Import predictions for a stored campaign, in the caller's transaction. A prediction
    replaces the item's earlier one; the work order is not changed."""
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}")
    ontology = Ontology.model_validate(campaign.spec["ontology"])
    mode = mode_of(campaign)
    rows = (
        await session.execute(
            select(Item.uri, Item.width, Item.height, Item.kind)
            .where(Item.campaign_id == campaign_id, Item.kind.in_(_kinds_shown(mode)))
            .order_by(Item.ordinal)
        )
    ).all()
    targets = [Target(uri, w, h) for uri, w, h, kind in rows if kind == "image"]
    gold = [Target(uri, w, h) for uri, w, h, kind in rows if kind == GOLD]
    parsed = parse_predictions(content, fmt, ontology, targets, companion=companion, gold=gold)
    return await _store(
        session,
        campaign_id,
        parsed,
        model=model,
        fmt=fmt,
        actor=actor,
        at_launch=False,
        order=str(_spec_prelabels(campaign.spec).get("order", "as_listed")),
        mode=mode,
    )


def _kinds_shown(mode: Mode) -> tuple[str, ...]:
    """The kinds of item a prediction is stored for: gold too when annotators see it (a
    voter's answer on gold would be evidence nobody asked for)."""
    return ("image", GOLD) if mode == "start" else ("image",)


async def _store(
    session: AsyncSession,
    campaign_id: str,
    parsed: Parsed,
    *,
    model: str,
    fmt: str,
    actor: tuple[audit.ActorType, str],
    at_launch: bool,
    order: str,
    mode: Mode,
) -> ImportResult:
    # Items by URI, read back rather than derived from ordinals, so that whatever else the
    # launch inserts cannot shift a prediction onto the wrong image. A URI can be both an
    # image's and a gold item's: each gets the prediction.
    ids: dict[str, list[str]] = defaultdict(list)
    for uri, item_id in (
        await session.execute(
            select(Item.uri, Item.id)
            .where(Item.campaign_id == campaign_id, Item.kind.in_(_kinds_shown(mode)))
            .order_by(Item.ordinal)
        )
    ).all():
        ids[uri].append(item_id)
    now = utcnow()
    rows = [
        {
            "item_id": item_id,
            "campaign_id": campaign_id,
            "model": model,
            "body": p.body,
            "uncertainty": p.uncertainty,
            "imported_at": now,
        }
        for p in parsed.predictions.values()
        for item_id in ids.get(p.uri, [])
    ]
    replaced = 0
    for start in range(0, len(rows), CHUNK):
        chunk = [r["item_id"] for r in rows[start : start + CHUNK]]
        replaced += (
            await session.scalar(
                select(func.count()).select_from(Prelabel).where(Prelabel.item_id.in_(chunk))
            )
        ) or 0
        await session.execute(delete(Prelabel).where(Prelabel.item_id.in_(chunk)))
    for start in range(0, len(rows), CHUNK):
        await session.execute(insert(Prelabel), rows[start : start + CHUNK])
    parts = [f"imported {len(rows)} prediction(s) of model {model!r}"]
    if replaced:
        parts.append(f"{replaced} replaced earlier ones")
    if parsed.unmatched:
        names = ", ".join(repr(n) for n in parsed.unmatched[:3])
        parts.append(
            f"{len(parsed.unmatched)} file name(s) matched no image of the campaign "
            f"({names}{', ...' if len(parsed.unmatched) > 3 else ''})"
        )
    if order == "uncertainty":
        parts.append(
            "the images the model is least sure of come first" if at_launch else ORDER_KEPT
        )
    gold_without = await _gold_without_prediction(session, campaign_id) if mode == "start" else 0
    if gold_without:
        parts.append(GOLD_WITHOUT_PREDICTION.format(n=gold_without))
    result = ImportResult(
        campaign_id=campaign_id,
        model=model,
        format=fmt,
        imported=len(rows),
        replaced=replaced,
        unmatched=parsed.unmatched,
        message="; ".join(parts),
    )
    await audit.append(
        session,
        action=ACTION_IMPORTED,
        actor=actor,
        campaign_id=campaign_id,
        details={
            "model": model,
            "format": fmt,
            "imported": len(rows),
            "replaced": replaced,
            "unmatched": len(parsed.unmatched),
            "at_launch": at_launch,
            "order": order,
            **({"gold_without_prediction": gold_without} if gold_without else {}),
        },
    )
    return result


async def _gold_without_prediction(session: AsyncSession, campaign_id: str) -> int:
    """Gold items with no prediction, when some image has one (0 otherwise): annotators could
    tell those gold tasks from the images that open with a draft."""
    predicted = select(Prelabel.item_id).where(Prelabel.campaign_id == campaign_id)
    if not await session.scalar(
        select(func.count())
        .select_from(Item)
        .where(Item.campaign_id == campaign_id, Item.kind == "image", Item.id.in_(predicted))
    ):
        return 0
    return int(
        await session.scalar(
            select(func.count())
            .select_from(Item)
            .where(Item.campaign_id == campaign_id, Item.kind == GOLD, Item.id.not_in(predicted))
        )
        or 0
    )


# ---- serving ------------------------------------------------------------------------------


async def for_annotator(
    session: AsyncSession, campaign: Campaign, item_id: str
) -> dict[str, Any] | None:
    """The first draft an annotator starts from (``{"objects": [...]}``), in mode ``start``."""
    if mode_of(campaign) != "start":
        return None
    row = await session.get(Prelabel, item_id)
    if row is None or row.campaign_id != campaign.id:
        return None
    return {"objects": list(row.body.get("objects", []))}


async def voter_responses(
    session: AsyncSession, campaign_id: str, item_ids: Sequence[str]
) -> dict[str, Response]:
    """The model's answers as transient responses (never added to the session), by item ID,
    for a campaign whose pre-labels vote (mode ``voter``); {} otherwise.

    Each is answered by ``model:<name>``, so the consensus learns the model's reliability as
    it does a person's."""
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None or mode_of(campaign) != "voter" or not item_ids:
        return {}
    out: dict[str, Response] = {}
    wanted = list(dict.fromkeys(item_ids))
    for start in range(0, len(wanted), CHUNK):
        rows = await session.scalars(
            select(Prelabel).where(
                Prelabel.campaign_id == campaign_id,
                Prelabel.item_id.in_(wanted[start : start + CHUNK]),
            )
        )
        for row in rows:
            response_id = f"pre-{row.item_id}"
            out[row.item_id] = Response(
                id=response_id,
                assignment_id=response_id,
                campaign_id=campaign_id,
                item_id=row.item_id,
                annotator_id=f"model:{row.model}",
                idempotency_key=f"prelabel:{row.model}",
                body=json.loads(json.dumps(row.body)),  # a copy the caller may change
                late=False,
                submitted_at=row.imported_at,
            )
    return out
