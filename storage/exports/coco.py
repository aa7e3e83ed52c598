"""COCO (``coco/annotations.json``): boxes, polygons, RLE masks and keypoints.

* Categories are the ontology's non-tag classes, ids 1.. in ontology order; a keypoints class
  carries its ``keypoints`` names and its ``skeleton`` as 1-based index pairs, as COCO does.
* Images are the items in item_id order, ids 1..; ``file_name`` is ``<stem><ext>`` as in the
  YOLO and VOC exports, and ``coco_url`` the image's URI. Items whose
  width or height is unknown are left out (COCO needs both) and counted in the metadata.
* Annotations: an axis-aligned box is ``bbox [x, y, w, h]`` with its rectangle as the
  segmentation (so ``annToMask`` works for every annotation). A rotated box has the polygon of
  its corners as segmentation, the enclosing axis-aligned box as ``bbox`` and its ``angle``
  (degrees clockwise about the centre) in an extra field. Polygons are segmentations; masks are
  RLE with the compressed ``counts`` string pycocotools writes and the area of the RLE; keypoints
  are ``[x, y, v]*K`` (0, 0, 0 where ``v`` is 0) with ``num_keypoints`` and the bbox of the
  labeled points. ``score`` is the consensus confidence of the object, ``attributes`` its
  attributes. COCO has no polylines: they are left out and counted in the metadata.
* COCO has no image-level classification, so tags go to an extra ``labels`` list on each image,
  and the tag classes to a top-level ``quorum_image_label_classes``; COCO readers ignore both.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from storage.exports.common import (
    ExportContext,
    Rendered,
    canonical_json,
    finite,
    image_extension,
    image_size,
    item_stem,
    record_tags,
)
from storage.exports.rle import encode_counts, rle_area, rle_bbox, uncompressed_counts

FORMAT = "coco"


def category_ids(ctx: ExportContext) -> dict[str, int]:
    ids: dict[str, int] | None = ctx.cache.get("coco.category_ids")
    if ids is None:
        names = [c.name for c in ctx.classes if c.geometry != "tag"]
        ids = ctx.cache["coco.category_ids"] = {name: i + 1 for i, name in enumerate(names)}
    return ids


def _round(value: float) -> float:
    # Rounded so that float noise (cos/sin of angles) does not change the bytes from one
    # platform to another; 1/1000 pixel is far below what anyone can draw.
    return round(value, 3) + 0.0


def _bbox_of(points: Sequence[tuple[float, float]]) -> list[float]:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return [_round(min(xs)), _round(min(ys)), _round(max(xs) - min(xs)), _round(max(ys) - min(ys))]


def _shoelace(points: Sequence[tuple[float, float]]) -> float:
    n = len(points)
    return abs(
        0.5
        * sum(
            points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1]
            for i in range(n)
        )
    )


def box_corners(obj: Mapping[str, Any]) -> list[tuple[float, float]]:
    """The corners of a (possibly rotated) box, clockwise from top-left before rotation."""
    x, y, w, h = (finite(obj[k]) for k in ("x", "y", "w", "h"))
    angle = finite(obj.get("angle", 0.0) or 0.0)
    if w <= 0 or h <= 0:
        raise ValueError("box of zero area")
    cx, cy = x + w / 2, y + h / 2
    theta = math.radians(angle)
    cos, sin = math.cos(theta), math.sin(theta)
    return [
        (cx + dx * w / 2 * cos - dy * h / 2 * sin, cy + dx * w / 2 * sin + dy * h / 2 * cos)
        for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
    ]


def polygon_points(obj: Mapping[str, Any]) -> list[tuple[float, float]]:
    points = [(finite(p[0]), finite(p[1])) for p in obj["points"]]
    if len(set(points)) < 3:
        raise ValueError("polygon of fewer than 3 points")
    return points


def _annotation(
    obj: Mapping[str, Any], cls_keypoints: int, size: tuple[int, int], notes: Counter[str]
) -> dict[str, Any] | None:
    kind = obj.get("type")
    width, height = size
    if kind == "box":
        corners = box_corners(obj)
        angle = finite(obj.get("angle", 0.0) or 0.0)
        flat = [_round(c) for point in corners for c in point]
        ann: dict[str, Any] = {
            "bbox": _bbox_of(corners),
            "area": _round(finite(obj["w"]) * finite(obj["h"])),
            "segmentation": [flat],
        }
        if angle != 0:
            ann["angle"] = angle
            notes["rotated_box_as_polygon"] += 1
        return ann
    if kind == "polygon":
        points = polygon_points(obj)
        return {
            "bbox": _bbox_of(points),
            "area": _round(_shoelace(points)),
            "segmentation": [[_round(c) for point in points for c in point]],
        }
    if kind == "mask":
        rle = obj["rle"]
        mask_h, mask_w = (int(v) for v in rle["size"])
        if (mask_w, mask_h) != (width, height):
            notes["mask_size_mismatch"] += 1
            return None
        counts = rle["counts"]
        compressed = (
            counts if isinstance(counts, str) else encode_counts(uncompressed_counts(counts))
        )
        return {
            "bbox": rle_bbox(compressed, mask_h, mask_w),
            "area": rle_area(compressed),
            "segmentation": {"size": [mask_h, mask_w], "counts": compressed},
        }
    if kind == "keypoints":
        raw = list(obj["points"])
        if len(raw) != cls_keypoints:
            notes["keypoints_count_mismatch"] += 1
            return None
        flat_kp: list[float] = []
        labeled: list[tuple[float, float]] = []
        for point in raw:
            x, y, v = finite(point[0]), finite(point[1]), int(point[2])
            if v not in (0, 1, 2):
                raise ValueError(f"visibility {v}")
            if v == 0:
                flat_kp += [0, 0, 0]
            else:
                flat_kp += [_round(x), _round(y), v]
                labeled.append((x, y))
        if not labeled:
            notes["keypoints_none_labeled"] += 1
            return None
        bbox = _bbox_of(labeled)
        return {
            "bbox": bbox,
            "area": _round(bbox[2] * bbox[3]),
            "segmentation": [],
            "keypoints": flat_kp,
            "num_keypoints": len(labeled),
        }
    if kind == "polyline":
        notes["polyline_not_in_coco"] += 1
        return None
    raise ValueError(f"unknown object type {kind!r}")


def render(record: Mapping[str, Any], ctx: ExportContext) -> Rendered:
    size = image_size(record)
    if size is None:
        return {"skip": "image size unknown"}
    ids = category_ids(ctx)
    notes: Counter[str] = Counter()
    annotations: list[dict[str, Any]] = []
    for obj in record.get("objects") or []:
        if not isinstance(obj, Mapping) or obj.get("type") == "tag":
            continue
        cls = ctx.by_name(obj.get("label"))
        if cls is None or cls.name not in ids:
            notes["unknown_class"] += 1
            continue
        try:
            ann = _annotation(obj, len(cls.keypoints), size, notes)
        except (KeyError, IndexError, TypeError, ValueError):
            notes["invalid_object"] += 1
            continue
        if ann is None:
            continue
        ann["category_id"] = ids[cls.name]
        ann["iscrowd"] = 0
        if isinstance(obj.get("confidence"), int | float):
            ann["score"] = obj["confidence"]
        if obj.get("attributes"):
            ann["attributes"] = obj["attributes"]
        annotations.append(ann)
    image: dict[str, Any] = {
        # The same name the YOLO and VOC exports use (unique, unlike the URIs' last segments).
        "file_name": f"{item_stem(str(record['item_id']))}{image_extension(record)}",
        "coco_url": record.get("image"),
        "width": size[0],
        "height": size[1],
        "labels": record_tags(record),
        "quorum_item_id": record["item_id"],
    }
    for key in ("confidence", "agreement", "method", "campaign_id"):
        if record.get(key) is not None:
            image[f"quorum_{key}"] = record[key]
    return {"render": {"image": image, "annotations": annotations}, "notes": dict(notes)}


def assemble(
    entries: Sequence[tuple[str, Any]], ctx: ExportContext, info: Mapping[str, Any]
) -> dict[str, bytes]:
    categories: list[dict[str, Any]] = []
    for cls in ctx.classes:
        if cls.geometry == "tag":
            continue
        category: dict[str, Any] = {
            "id": len(categories) + 1,
            "name": cls.name,
            "supercategory": cls.geometry,
        }
        if cls.geometry == "keypoints":
            index = {name: i + 1 for i, name in enumerate(cls.keypoints)}
            category["keypoints"] = list(cls.keypoints)
            category["skeleton"] = [
                [index[a], index[b]] for a, b in cls.skeleton if a in index and b in index
            ]
        categories.append(category)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, (_, rendered) in enumerate(entries, start=1):
        images.append({"id": image_id, **rendered["image"]})
        for ann in rendered["annotations"]:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
    document = {
        "info": {
            "description": f"Quorum dataset {info.get('dataset', ctx.dataset)}",
            "version": str(info.get("version", "")),
            "date_created": str(info.get("created_at", "")),
            "contributor": "Quorum",
        },
        "licenses": [],
        "categories": categories,
        "quorum_image_label_classes": [c.name for c in ctx.classes if c.geometry == "tag"],
        "images": images,
        "annotations": annotations,
    }
    return {"coco/annotations.json": (canonical_json(document) + "\n").encode()}
