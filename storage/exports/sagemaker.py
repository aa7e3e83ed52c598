"""JSON Lines in the style of a SageMaker Ground Truth output manifest (``jsonl/output.manifest``).

One line per item, in item_id order, with ``source-ref`` (the image's URI), a label attribute
named after the dataset, and ``<dataset>-metadata``. Class ids are the ontology's class indices
(0-based, every class). The shape follows Ground Truth's built-in task types where one fits:

* only tag classes, single-label: the attribute is the class id; metadata ``class-name``,
  ``confidence``, type ``groundtruth/image-classification``;
* only tag classes, multi-label: a list of class ids; metadata ``class-map`` and
  ``confidence-map``, type ``groundtruth/image-classification-multilabel``;
* only box classes: ``{"image_size": [...], "annotations": [{class_id, left, top, width,
  height}]}``; metadata ``objects`` (a confidence per object) and ``class-map``, type
  ``groundtruth/object-detection``;
* anything else (polygons, masks, keypoints, polylines, mixed): the same object-detection shape
  with a ``type`` and the geometry on each annotation (``points``; ``rle``; ``angle`` for
  rotated boxes) and the image's ``labels``; type ``quorum/annotations``.

Every line's metadata also has ``job-name`` (``labeling-job/<campaign_id>``), ``human-annotated``
``yes``, ``creation-date`` (when the item was finalized), the item's consensus ``confidence``,
and Quorum's ``item-id``, ``method`` and ``agreement``. Unlike the other formats, an image of
unknown size is kept (``image_size`` is then left out).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from storage.exports.common import (
    ExportContext,
    Rendered,
    canonical_json,
    finite,
    image_size,
    record_tags,
)

FORMAT = "jsonl"


def _kind(ctx: ExportContext) -> str:
    geometries = {c.geometry for c in ctx.classes}
    if geometries == {"tag"}:
        return "multilabel" if ctx.multi_label else "classification"
    if geometries == {"box"} and not any(c.rotated for c in ctx.classes):
        return "detection"
    return "annotations"


def _creation_date(value: Any) -> Any:
    # Ground Truth writes UTC without an offset ("2019-10-15T22:41:36.654018").
    if not isinstance(value, str):
        return value
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed.isoformat()


def _geometry(obj: Mapping[str, Any]) -> dict[str, Any]:
    kind = obj.get("type")
    if kind == "box":
        out: dict[str, Any] = {
            "left": finite(obj["x"]),
            "top": finite(obj["y"]),
            "width": finite(obj["w"]),
            "height": finite(obj["h"]),
        }
        angle = finite(obj.get("angle", 0.0) or 0.0)
        if angle:
            out["angle"] = angle
        return out
    if kind in ("polygon", "polyline"):
        return {"points": [{"x": finite(p[0]), "y": finite(p[1])} for p in obj["points"]]}
    if kind == "keypoints":
        return {
            "points": [
                {"x": finite(p[0]), "y": finite(p[1]), "visibility": int(p[2])}
                for p in obj["points"]
            ]
        }
    if kind == "mask":
        rle = obj["rle"]
        return {"rle": {"size": list(rle["size"]), "counts": rle["counts"]}}
    raise ValueError(f"unknown object type {kind!r}")


def render(record: Mapping[str, Any], ctx: ExportContext) -> Rendered:
    attribute = ctx.dataset
    ids = {c.name: i for i, c in enumerate(ctx.classes)}
    kind = _kind(ctx)
    notes: Counter[str] = Counter()
    campaign = record.get("campaign_id")
    metadata: dict[str, Any] = {
        "job-name": f"labeling-job/{campaign or ctx.dataset}",
        "human-annotated": "yes",
        "creation-date": _creation_date(record.get("finalized_at")),
        "confidence": record.get("confidence"),
        "item-id": record["item_id"],
        "method": record.get("method"),
        "agreement": record.get("agreement"),
    }
    tags = [t for t in record_tags(record) if t in ids]
    notes["unknown_class"] += len(record_tags(record)) - len(tags)
    line: dict[str, Any] = {"source-ref": record.get("image")}
    if kind == "classification":
        if len(tags) != 1:
            return {"skip": "not exactly one label"}
        line[attribute] = ids[tags[0]]
        metadata["class-name"] = tags[0]
        metadata["type"] = "groundtruth/image-classification"
    elif kind == "multilabel":
        confidences = {
            str(o.get("label")): o.get("confidence")
            for o in record.get("objects") or []
            if isinstance(o, Mapping) and o.get("type") == "tag"
        }
        line[attribute] = [ids[t] for t in tags]
        metadata["class-map"] = {str(ids[t]): t for t in tags}
        metadata["confidence-map"] = {
            str(ids[t]): confidences.get(t, record.get("confidence")) for t in tags
        }
        metadata["type"] = "groundtruth/image-classification-multilabel"
    else:
        annotations: list[dict[str, Any]] = []
        objects: list[dict[str, Any]] = []
        for obj in record.get("objects") or []:
            if not isinstance(obj, Mapping) or obj.get("type") == "tag":
                continue
            if obj.get("label") not in ids:
                notes["unknown_class"] += 1
                continue
            try:
                geometry = _geometry(obj)
            except (KeyError, IndexError, TypeError, ValueError):
                notes["invalid_object"] += 1
                continue
            annotation: dict[str, Any] = {"class_id": ids[obj["label"]]}
            if kind == "annotations":
                annotation["type"] = obj.get("type")
                if obj.get("attributes"):
                    annotation["attributes"] = obj["attributes"]
            annotation.update(geometry)
            annotations.append(annotation)
            objects.append({"confidence": obj.get("confidence")})
        content: dict[str, Any] = {"annotations": annotations}
        size = image_size(record)
        if size is not None:
            content["image_size"] = [{"width": size[0], "height": size[1], "depth": 3}]
        if kind == "annotations":
            content["labels"] = tags
        line[attribute] = content
        used = sorted({a["class_id"] for a in annotations} | {ids[t] for t in tags})
        metadata["objects"] = objects
        metadata["class-map"] = {str(i): ctx.classes[i].name for i in used}
        metadata["type"] = (
            "groundtruth/object-detection" if kind == "detection" else "quorum/annotations"
        )
    line[f"{attribute}-metadata"] = metadata
    return {"render": line, "notes": dict(notes)}


def assemble(
    entries: Sequence[tuple[str, Any]], ctx: ExportContext, info: Mapping[str, Any]
) -> dict[str, bytes]:
    body = "".join(canonical_json(rendered) + "\n" for _, rendered in entries)
    return {"jsonl/output.manifest": body.encode()}
