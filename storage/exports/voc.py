"""Pascal VOC (``voc/``): one XML file per image, boxes only.

* ``Annotations/<stem>.xml`` per item: ``filename``, ``path`` (the image's URI), ``size``, and an
  ``object`` with ``name`` and ``bndbox`` for every box, polygon and mask. VOC has only
  axis-aligned boxes: a rotated box, a polygon or a mask is written as its enclosing box (and
  counted in the metadata, per kind). Keypoints and polylines have no VOC form and are left out
  (counted). Box corners are VOC's 1-based, inclusive pixel indices: pixel ``i`` (0-based)
  covers ``[i, i+1)``, so a box from ``x`` to ``x + w`` has ``xmin = floor(x) + 1`` and
  ``xmax = ceil(x + w)``, clipped to the image.
* ``ImageSets/Main/default.txt`` lists every stem; image-level tags use VOC's classification
  lists ``ImageSets/Main/<class>_default.txt`` (``<stem> 1`` if tagged, ``<stem> -1`` if not).
* ``labels.txt`` names the object classes.

Items whose width or height is unknown are left out (VOC's ``size`` is required) and counted.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

from storage.exports.coco import box_corners, polygon_points
from storage.exports.common import (
    ExportContext,
    Rendered,
    finite,
    image_extension,
    image_size,
    item_stem,
    record_tags,
)
from storage.exports.rle import rle_bbox

FORMAT = "voc"


def _pixel_box(
    x0: float, y0: float, x1: float, y1: float, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    width, height = size
    xmin = min(max(math.floor(x0) + 1, 1), width)
    ymin = min(max(math.floor(y0) + 1, 1), height)
    xmax = min(max(math.ceil(x1), xmin), width)
    ymax = min(max(math.ceil(y1), ymin), height)
    return xmin, ymin, xmax, ymax


def _extent(obj: Mapping[str, Any], notes: Counter[str]) -> tuple[float, float, float, float]:
    kind = obj.get("type")
    if kind == "box":
        points = box_corners(obj)
        if finite(obj.get("angle", 0.0) or 0.0) != 0:
            notes["rotated_box_as_enclosing_box"] += 1
    elif kind == "polygon":
        points = polygon_points(obj)
        notes["polygon_as_box"] += 1
    elif kind == "mask":
        rle = obj["rle"]
        h, w = (int(v) for v in rle["size"])
        bx, by, bw, bh = rle_bbox(rle["counts"], h, w)
        if bw == 0:
            raise ValueError("empty mask")
        notes["mask_as_box"] += 1
        return bx, by, bx + bw, by + bh
    else:
        raise ValueError(kind)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _text(value: Any) -> str:
    return escape(str(value))


def render(record: Mapping[str, Any], ctx: ExportContext) -> Rendered:
    size = image_size(record)
    if size is None:
        return {"skip": "image size unknown"}
    stem = item_stem(str(record["item_id"]))
    uri = _text(record.get("image") or "")
    # Written as text rather than through ElementTree: the same bytes, many times faster.
    parts = [
        "<annotation>\n",
        "  <folder>images</folder>\n",
        f"  <filename>{_text(stem + image_extension(record))}</filename>\n",
        f"  <path>{uri}</path>\n",
        "  <source>\n",
        f"    <database>{_text(f'Quorum dataset {ctx.dataset}')}</database>\n",
        "    <annotation>Quorum</annotation>\n",
        f"    <image>{uri}</image>\n",
        "  </source>\n",
        "  <size>\n",
        f"    <width>{size[0]}</width>\n",
        f"    <height>{size[1]}</height>\n",
        "    <depth>3</depth>\n",
        "  </size>\n",
        "  <segmented>0</segmented>\n",
    ]
    notes: Counter[str] = Counter()
    for obj in record.get("objects") or []:
        if not isinstance(obj, Mapping) or obj.get("type") == "tag":
            continue
        cls = ctx.by_name(obj.get("label"))
        if cls is None:
            notes["unknown_class"] += 1
            continue
        if obj.get("type") in ("keypoints", "polyline"):
            notes[f"{obj.get('type')}_not_in_voc"] += 1
            continue
        try:
            extent = _extent(obj, notes)
        except (KeyError, IndexError, TypeError, ValueError):
            notes["invalid_object"] += 1
            continue
        xmin, ymin, xmax, ymax = _pixel_box(*extent, size)
        parts += [
            "  <object>\n",
            f"    <name>{_text(cls.name)}</name>\n",
            "    <pose>Unspecified</pose>\n",
            "    <truncated>0</truncated>\n",
            "    <difficult>0</difficult>\n",
            "    <bndbox>\n",
            f"      <xmin>{xmin}</xmin>\n",
            f"      <ymin>{ymin}</ymin>\n",
            f"      <xmax>{xmax}</xmax>\n",
            f"      <ymax>{ymax}</ymax>\n",
            "    </bndbox>\n",
            "  </object>\n",
        ]
    parts.append("</annotation>\n")
    xml = "".join(parts)
    return {
        "render": {"stem": stem, "xml": xml, "labels": record_tags(record)},
        "notes": dict(notes),
    }


def assemble(
    entries: Sequence[tuple[str, Any]], ctx: ExportContext, info: Mapping[str, Any]
) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for _, rendered in entries:
        files[f"voc/Annotations/{rendered['stem']}.xml"] = rendered["xml"].encode()
    files["voc/ImageSets/Main/default.txt"] = "".join(f"{r['stem']}\n" for _, r in entries).encode()
    for cls in ctx.with_geometry("tag"):
        files[f"voc/ImageSets/Main/{cls.name}_default.txt"] = "".join(
            f"{r['stem']} {'1' if cls.name in r['labels'] else '-1'}\n" for _, r in entries
        ).encode()
    names = [c.name for c in ctx.with_geometry("box", "polygon", "mask")]
    files["voc/labels.txt"] = "".join(f"{n}\n" for n in names).encode()
    return files
