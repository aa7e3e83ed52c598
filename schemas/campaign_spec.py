"""The campaign spec an operations team writes (YAML or JSON), validated field by field.

A spec with errors is refused as a whole: `spec_errors` turns pydantic's errors into one
`FieldError` per bad field, with a dotted path (``images.directory``) the operator can find.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.annotations import AnnotationObject
from schemas.field_error import FieldError
from schemas.ontology import Ontology

__all__ = ["CampaignSpec", "FieldError", "parse_spec", "spec_errors"]

SLUG = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

# Bounds that keep a campaign inside Temporal's limits (see TEMPORAL.md): item workflows in
# flight stay well under the 2,000 pending-children/activities ceiling.
MAX_WINDOW = 1000
MAX_ANNOTATORS_PER_IMAGE = 50


def parse_duration(value: Any) -> Any:
    """Accept 90, 90.5, "90s", "10m", "2h", "1d" or an ISO-8601 duration (left to pydantic)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    return value


class ImageSource(BaseModel):
    """Where the images come from: exactly one of a directory, an S3 prefix, a manifest or URIs."""

    model_config = ConfigDict(extra="forbid")

    directory: str | None = Field(None, description="A local directory of image files.")
    s3_prefix: str | None = Field(None, description="s3://bucket/prefix of image objects.")
    manifest: str | None = Field(
        None, description="A file with one image URI per line (or JSON Lines with a 'uri')."
    )
    uris: list[str] | None = Field(None, description="Image URIs given inline.")
    serve: Literal["redirect", "proxy"] | None = Field(
        None,
        description=(
            "How annotators' browsers get S3 and web images: 'redirect' to the object (a "
            "presigned URL for S3; the browser shows where it is stored), or 'proxy' through "
            "the API (it carries the bytes). Default: proxy when the campaign has gold items, "
            "so that no address tells gold from the rest; redirect otherwise."
        ),
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [n for n in ("directory", "s3_prefix", "manifest", "uris") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of directory, s3_prefix, manifest or uris"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @field_validator("s3_prefix")
    @classmethod
    def _s3_uri(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", v):
            raise ValueError("must look like s3://bucket/prefix")
        return v


class RedundancySpec(BaseModel):
    """Adaptive redundancy: ask for annotators one at a time until the consensus is confident.

    An image gets ``min_annotators`` answers first; then, while the posterior confidence of its
    reliability-weighted consensus is below ``target_confidence``, one more annotator, up to
    ``max_annotators``; still unsure at the maximum, it goes to expert review.

    With ``reopen_below_target`` (single-label classes), every refit of the reliability model,
    and one more when the last image is done, re-checks the images that stopped at the target:
    one whose confidence under the new estimates is below it now (the annotators who agreed on
    it turned out less reliable than assumed when it stopped) is re-opened for one more
    annotator, up to ``max_annotators``. Early in a campaign the model knows little, so images
    stop on optimistic estimates; this is what makes the target hold for them.

    ``stop_when_futile`` (single-label classes) also finalizes, below the target, an image
    whose last answer did not raise its confidence when no further answer from an average
    annotator could change its leading class. It saves answers and costs some accuracy; on the
    public crowds it lost more accuracy than it saved answers (``bench/adaptive_redundancy.py``),
    so it is off unless asked for.

    ``route_contested`` sends contested images (those past ``min_annotators`` and still below
    the target) to trusted annotators: those whose estimated accuracy is at least the
    campaign's average (answer-weighted; someone the model has not estimated yet counts as
    trusted). They get contested images before fresh ones; the others get fresh images only,
    until a contested image has waited ``route_hold`` for its next answer, when anyone may take
    it. Fewer answers go into the hard images, from better annotators; the price is that
    contested images wait, and that untrusted annotators may find no work while only contested
    images are left (``bench/adaptive_redundancy.py`` measures it)."""

    model_config = ConfigDict(extra="forbid")

    min_annotators: int = Field(ge=1, le=MAX_ANNOTATORS_PER_IMAGE)
    max_annotators: int = Field(ge=1, le=MAX_ANNOTATORS_PER_IMAGE)
    target_confidence: float = Field(gt=0.5, lt=1.0)
    reopen_below_target: bool = Field(
        True, description="Re-open stopped images whose confidence a refit puts below the target."
    )
    stop_when_futile: bool = Field(
        False,
        description="Finalize a contested image below the target when no further answer could "
        "change its leading class (fewer answers, a little less accuracy).",
    )
    route_contested: bool = Field(
        False, description="Give contested images to annotators rated at least average first."
    )
    route_hold: timedelta = Field(
        timedelta(minutes=15),
        description="How long a contested image waits for a trusted annotator before anyone "
        "may take it.",
    )

    _hold = field_validator("route_hold", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )

    @field_validator("route_hold")
    @classmethod
    def _hold_range(cls, v: timedelta) -> timedelta:
        if v < timedelta(0) or v > timedelta(days=30):
            raise ValueError("must be between 0 seconds and 30 days")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max_annotators < self.min_annotators:
            raise ValueError(
                f"max_annotators ({self.max_annotators}) is below min_annotators "
                f"({self.min_annotators})"
            )
        return self


class GoldItemSpec(BaseModel):
    """One honeypot: an image and its known answer (``objects``, or ``label`` for a tag)."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(min_length=1)
    label: str | None = Field(None, description="Shorthand for a single tag answer.")
    objects: list[AnnotationObject] | None = Field(None, description="The known answer.")
    # Tasks show their image's size when it is known; a gold task without one among images
    # with one would stand out. A local file's own size is used; S3 sizes are read when needed.
    width: int | None = Field(None, gt=0, description="For a web image: its size in pixels.")
    height: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_answer(self) -> Self:
        if (self.label is None) == (self.objects is None):
            raise ValueError("give the known answer as exactly one of label or objects")
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height, or neither")
        return self

    def answer(self) -> dict[str, Any]:
        """The known answer in the response schema."""
        if self.label is not None:
            return {"objects": [{"type": "tag", "label": self.label, "attributes": {}}]}
        return {"objects": [o.model_dump(mode="json") for o in self.objects or []]}


class GoldSpec(BaseModel):
    """Items with known answers, mixed into every annotator's queue at ``rate``."""

    model_config = ConfigDict(extra="forbid")

    rate: float = Field(gt=0.0, le=0.5, description="Share of an annotator's tasks that are gold.")
    items: list[GoldItemSpec] | None = None
    manifest: str | None = Field(
        None, description="JSON Lines, one gold item per line: {uri, label | objects}."
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.items is None) == (self.manifest is None):
            raise ValueError("give the gold items as exactly one of items or manifest")
        if self.items is not None and not self.items:
            raise ValueError("items is empty; give at least one gold item")
        return self


class ReliabilitySpec(BaseModel):
    """When to stop trusting an annotator (estimated from gold answers and agreement)."""

    model_config = ConfigDict(extra="forbid")

    min_accuracy: float = Field(gt=0.0, lt=1.0, description="Block below this estimated accuracy.")
    min_evidence: int = Field(
        5, ge=1, le=10_000, description="Scored answers needed before anyone is judged."
    )
    action: Literal["block", "retrain"] = "block"
    reopen_answered: bool = Field(
        False, description="Label again the finished images a blocked annotator answered."
    )
    refit_every: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="Finished images between two fits of the model. Default: about 50 fits per "
        "campaign, at least 50 images apart (max(50, ceil(images / 50))).",
    )


class PrelabelSpec(BaseModel):
    """Model predictions imported with the campaign."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(min_length=1, description="COCO results/dataset JSON, or JSON Lines.")
    format: Literal["coco", "jsonl"] | None = Field(
        None, description="Default: by the file's extension (.jsonl / .json)."
    )
    model: str = Field("model", pattern=SLUG, description="The model's name, for provenance.")
    mode: Literal["start", "voter"] = Field(
        "start",
        description="start: shown to annotators as an editable first draft; "
        "voter: counted as one more voter with its own learned reliability.",
    )
    order: Literal["as_listed", "uncertainty"] = Field(
        "as_listed", description="uncertainty: the images the model is least sure of go first."
    )


class CampaignSpec(BaseModel):
    """What an operator launches. Durations accept seconds or "30s", "10m", "2h", "1d".

    Redundancy is either fixed (``annotators_per_image`` with ``agreement_threshold``) or
    adaptive (``redundancy``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SLUG, description="Lower-case slug naming the campaign.")
    dataset: str | None = Field(
        None, pattern=SLUG, description="The dataset its labels are published to (default: name)."
    )
    images: ImageSource
    ontology: Ontology
    annotators_per_image: int | None = Field(
        None, ge=1, le=MAX_ANNOTATORS_PER_IMAGE, description="Fixed k annotators per image."
    )
    agreement_threshold: float | None = Field(
        None, gt=0.0, le=1.0, description="With fixed k: the agreement that finalizes an image."
    )
    redundancy: RedundancySpec | None = None
    gold: GoldSpec | None = None
    reliability: ReliabilitySpec | None = None
    prelabels: PrelabelSpec | None = None
    lease_timeout: timedelta = Field(description="How long an annotator holds an image.")
    review_timeout: timedelta = Field(description="How long an item waits for an expert.")
    window: int = Field(256, ge=1, le=MAX_WINDOW, description="Item workflows in flight at once.")

    _durations = field_validator("lease_timeout", "review_timeout", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )

    @field_validator("lease_timeout", "review_timeout")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v.total_seconds() < 1:
            raise ValueError("must be at least 1 second")
        if v > timedelta(days=365):
            raise ValueError("must be at most 365 days")
        return v

    @model_validator(mode="after")
    def _one_redundancy(self) -> Self:
        if self.redundancy is None:
            if self.annotators_per_image is None:
                raise ValueError(
                    "annotators_per_image: give annotators_per_image (fixed k) or redundancy "
                    "(adaptive)"
                )
            if self.agreement_threshold is None:
                raise ValueError("agreement_threshold: this field is required with fixed k")
        elif self.annotators_per_image is not None:
            raise ValueError(
                "annotators_per_image: give annotators_per_image (fixed k) or redundancy "
                "(adaptive), not both"
            )
        return self

    @property
    def dataset_name(self) -> str:
        return self.dataset or self.name

    @property
    def min_annotators(self) -> int:
        return self.redundancy.min_annotators if self.redundancy else self.annotators_per_image or 1

    @property
    def max_annotators(self) -> int:
        return self.redundancy.max_annotators if self.redundancy else self.annotators_per_image or 1

    @property
    def threshold(self) -> float:
        """What finalizes an image: the agreement threshold (fixed k) or target confidence."""
        if self.redundancy is not None:
            return self.redundancy.target_confidence
        return self.agreement_threshold or 1.0


_FIELD_PREFIX = re.compile(r"^([a-z_][a-z0-9_.]*): (.+)$", re.DOTALL)


def spec_errors(exc: ValidationError) -> list[FieldError]:
    """One FieldError per bad field, with a dotted path such as ``ontology.classes.1.name``."""
    errors: list[FieldError] = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        message = err["msg"].removeprefix("Value error, ")
        named = _FIELD_PREFIX.match(message) if not loc else None
        if named:  # a rule across fields that names the field to fix
            loc, message = named.group(1).split("."), named.group(2)
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "missing":
            message = "this field is required"
        errors.append(FieldError(field=".".join(loc) or "(spec)", message=message))
    return errors


def parse_spec(data: Any) -> tuple[CampaignSpec | None, list[FieldError]]:
    """Validate raw spec data; return the spec or the list of field errors (never both)."""
    if not isinstance(data, dict):
        return None, [FieldError(field="(spec)", message="the spec must be a mapping of fields")]
    try:
        return CampaignSpec.model_validate(data), []
    except ValidationError as exc:
        return None, spec_errors(exc)
