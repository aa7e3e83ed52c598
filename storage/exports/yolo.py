"""YOLO (Ultralytics layout): ``yolo/detect``, ``yolo/segment`` and ``yolo/pose``.

Each task directory has ``data.yaml`` (``names``; ``kpt_shape`` for pose), ``classes.txt`` (one
name per line, the class index is the line number), ``images.txt`` (``./images/<stem><ext>`` per
item, what ``train``/``val`` point to), ``sources.txt`` (``images/<stem><ext>`` and the image's
URI, tab-separated: Quorum exports labels, and the images are fetched from their URIs), and
``labels/<stem>.txt`` for every item with at least one object of the task. All coordinates are
normalized to [0, 1] by the image's width and height, six decimals:

* detect: ``class cx cy w h``; boxes of box classes. A rotated box is written as its enclosing
  axis-aligned box (noted in the metadata).
* segment (when the ontology has polygon or mask classes): ``class x1 y1 x2 y2 ...``; polygons,
  boxes (their four corners) and masks (the outline of the mask's largest region on pixel
  corners; further regions and holes are dropped, and counted).
* pose: ``class cx cy w h x1 y1 v1 ... xK yK vK`` with ``kpt_shape [K, 3]``, K the most keypoints
  of any keypoints class (classes with fewer are padded with ``0 0 0``); the box encloses the
  labeled points; a point with visibility 0 is ``0 0 0``.

Items whose width or height is unknown cannot be normalized: they are left out and counted.
Classes are indexed per task, in ontology order, among the classes the task can hold.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from storage.exports.coco import box_corners, polygon_points
from storage.exports.common import (
    ExportContext,
    Rendered,
    finite,
    image_extension,
    image_size,
    item_stem,
)
from storage.exports.rle import mask_outlines, rle_to_mask

FORMAT = "yolo"
TASKS = ("detect", "segment", "pose")
_TASK_GEOMETRIES = {
    "detect": ("box",),
    "segment": ("polygon", "mask", "box"),
    "pose": ("keypoints",),
}


def task_classes(ctx: ExportContext, task: str) -> list[str]:
    if task == "segment" and not ctx.with_geometry("polygon", "mask"):
        return []  # boxes alone are a detect dataset, not a segment one
    return [c.name for c in ctx.with_geometry(*_TASK_GEOMETRIES[task])]


def keypoint_count(ctx: ExportContext) -> int:
    return max((len(c.keypoints) for c in ctx.with_geometry("keypoints")), default=0)


def _n(value: float) -> str:
    text = f"{min(max(value, 0.0), 1.0):.6f}"
    return "0.000000" if text == "-0.000000" else text


def _xywh(points: Sequence[tuple[float, float]], size: tuple[int, int]) -> list[str]:
    width, height = size
    xs = [min(max(p[0], 0.0), width) for p in points]
    ys = [min(max(p[1], 0.0), height) for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    return [
        _n((x0 + x1) / 2 / width),
        _n((y0 + y1) / 2 / height),
        _n((x1 - x0) / width),
        _n((y1 - y0) / height),
    ]


def _polygon(points: Sequence[tuple[float, float]], size: tuple[int, int]) -> list[str]:
    return [_n(v / d) for x, y in points for v, d in ((x, size[0]), (y, size[1]))]


def render(record: Mapping[str, Any], ctx: ExportContext) -> Rendered:
    size = image_size(record)
    if size is None:
        return {"skip": "image size unknown"}
    index: dict[str, dict[str, int]] | None = ctx.cache.get("yolo.index")
    if index is None:
        index = ctx.cache["yolo.index"] = {
            task: {name: i for i, name in enumerate(task_classes(ctx, task))} for task in TASKS
        }
    k_max = keypoint_count(ctx)
    lines: dict[str, list[str]] = {task: [] for task in TASKS}
    notes: Counter[str] = Counter()
    for obj in record.get("objects") or []:
        if not isinstance(obj, Mapping) or obj.get("type") == "tag":
            continue
        cls = ctx.by_name(obj.get("label"))
        kind = obj.get("type")
        if cls is None:
            notes["unknown_class"] += 1
            continue
        try:
            if kind == "box":
                corners = box_corners(obj)
                if finite(obj.get("angle", 0.0) or 0.0) != 0:
                    notes["rotated_box_as_enclosing_box"] += 1
                if cls.name in index["detect"]:
                    lines["detect"].append(
                        " ".join([str(index["detect"][cls.name]), *_xywh(corners, size)])
                    )
                if cls.name in index["segment"]:
                    lines["segment"].append(
                        " ".join([str(index["segment"][cls.name]), *_polygon(corners, size)])
                    )
            elif kind == "polygon":
                points = polygon_points(obj)
                lines["segment"].append(
                    " ".join([str(index["segment"][cls.name]), *_polygon(points, size)])
                )
            elif kind == "mask":
                rle = obj["rle"]
                mask_h, mask_w = (int(v) for v in rle["size"])
                if (mask_w, mask_h) != size:
                    notes["mask_size_mismatch"] += 1
                    continue
                outlines = mask_outlines(rle_to_mask(rle["counts"], mask_h, mask_w))
                if not outlines:
                    notes["mask_empty"] += 1
                    continue
                if len(outlines) > 1:
                    notes["mask_regions_dropped"] += len(outlines) - 1
                outline = [(float(x), float(y)) for x, y in outlines[0]]
                lines["segment"].append(
                    " ".join([str(index["segment"][cls.name]), *_polygon(outline, size)])
                )
            elif kind == "keypoints":
                raw = list(obj["points"])
                if len(raw) != len(cls.keypoints):
                    notes["keypoints_count_mismatch"] += 1
                    continue
                labeled = [(finite(p[0]), finite(p[1])) for p in raw if int(p[2]) != 0]
                if not labeled:
                    notes["keypoints_none_labeled"] += 1
                    continue
                values: list[str] = [str(index["pose"][cls.name]), *_xywh(labeled, size)]
                for p in raw:
                    v = int(p[2])
                    if v not in (0, 1, 2):
                        raise ValueError(f"visibility {v}")
                    if v == 0:
                        values += ["0.000000", "0.000000", "0"]
                    else:
                        values += [_n(finite(p[0]) / size[0]), _n(finite(p[1]) / size[1]), str(v)]
                values += ["0.000000", "0.000000", "0"] * (k_max - len(raw))
                lines["pose"].append(" ".join(values))
            elif kind == "polyline":
                notes["polyline_not_in_yolo"] += 1
            else:
                raise ValueError(f"unknown object type {kind!r}")
        except (KeyError, IndexError, TypeError, ValueError):
            notes["invalid_object"] += 1
    stem = item_stem(str(record["item_id"]))
    out: dict[str, Any] = {
        "stem": stem,
        "image": f"images/{stem}{image_extension(record)}",
        "source": record.get("image"),
    }
    for task in TASKS:
        if lines[task]:
            out[task] = "\n".join(lines[task]) + "\n"
    return {"render": out, "notes": dict(notes)}


def assemble(
    entries: Sequence[tuple[str, Any]], ctx: ExportContext, info: Mapping[str, Any]
) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for task in TASKS:
        names = task_classes(ctx, task)
        if not names:
            continue
        base = f"yolo/{task}"
        data: dict[str, Any] = {
            "path": ".",
            "train": "images.txt",
            "val": "images.txt",
            "names": dict(enumerate(names)),
        }
        if task == "pose":
            data["kpt_shape"] = [keypoint_count(ctx), 3]
        header = (
            f"# Quorum dataset {info.get('dataset', ctx.dataset)} version "
            f"{info.get('version', '')}: YOLO {task} labels.\n"
            "# Put each image at the path images.txt lists (sources.txt says where it is).\n"
        )
        files[f"{base}/data.yaml"] = (
            header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
        ).encode()
        files[f"{base}/classes.txt"] = "".join(f"{n}\n" for n in names).encode()
        files[f"{base}/images.txt"] = "".join(f"./{r['image']}\n" for _, r in entries).encode()
        files[f"{base}/sources.txt"] = "".join(
            f"{r['image']}\t{r['source']}\n" for _, r in entries
        ).encode()
        for _, rendered in entries:
            if task in rendered:
                files[f"{base}/labels/{rendered['stem']}.txt"] = rendered[task].encode()
    return files
