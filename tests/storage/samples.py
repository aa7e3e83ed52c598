"""Label records and an ontology for the dataset tests, small enough to check by hand."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

ONTOLOGY: dict[str, Any] = {
    "classes": [
        {"name": "cat", "geometry": "tag"},
        {"name": "dog", "geometry": "tag"},
        {"name": "car", "geometry": "box", "rotated": True},
        {"name": "road", "geometry": "polygon"},
        {"name": "sky", "geometry": "mask"},
        {
            "name": "person",
            "geometry": "keypoints",
            "keypoints": [{"name": "head", "sigma": 0.03}, {"name": "left"}, {"name": "right"}],
            "skeleton": [["head", "left"], ["head", "right"]],
        },
        {"name": "lane", "geometry": "polyline"},
    ],
    "multi_label": True,
    "segmentation": "instance",
}

WIDTH, HEIGHT = 64, 48


def sky_mask() -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Two regions: a 15x20 block and a 10x10 block."""
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[5:20, 10:30] = 1
    mask[30:40, 40:50] = 1
    return mask


def uncompressed_rle(mask: np.ndarray[Any, np.dtype[np.uint8]]) -> dict[str, Any]:
    """COCO's uncompressed RLE (column-major run lengths, starting with zeros)."""
    flat = mask.flatten(order="F")
    counts: list[int] = []
    current, run = 0, 0
    for value in flat.tolist():
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def compressed_rle(mask: np.ndarray[Any, np.dtype[np.uint8]]) -> dict[str, Any]:
    encoded = mask_utils.encode(np.asfortranarray(mask))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode()}


def full_record(item_id: str = "cmp_x-0", **changes: Any) -> dict[str, Any]:
    """A record with one object of every geometry (and a tag)."""
    record: dict[str, Any] = {
        "item_id": item_id,
        "campaign_id": "cmp_x",
        "image": f"file:///images/{item_id}.png",
        "width": WIDTH,
        "height": HEIGHT,
        "labels": ["cat"],
        "objects": [
            {"type": "tag", "label": "cat", "attributes": {}, "confidence": 0.95, "support": ["a"]},
            {
                "type": "box",
                "label": "car",
                "x": 1,
                "y": 2,
                "w": 10,
                "h": 5,
                "angle": 0,
                "attributes": {},
                "confidence": 0.9,
                "support": ["a", "b"],
            },
            {
                "type": "box",
                "label": "car",
                "x": 20,
                "y": 20,
                "w": 10,
                "h": 6,
                "angle": 30,
                "attributes": {},
                "confidence": 0.7,
                "support": ["a"],
            },
            {
                "type": "polygon",
                "label": "road",
                "points": [[0, 40], [30, 40], [30, 47]],
                "attributes": {},
                "confidence": 0.8,
                "support": ["a", "b"],
            },
            {
                "type": "mask",
                "label": "sky",
                "rle": uncompressed_rle(sky_mask()),
                "attributes": {},
                "confidence": 0.6,
                "support": ["b"],
            },
            {
                "type": "keypoints",
                "label": "person",
                "points": [[5, 5, 2], [0, 0, 0], [9, 9, 1]],
                "attributes": {},
                "confidence": 0.85,
                "support": ["a", "b"],
            },
            {
                "type": "polyline",
                "label": "lane",
                "points": [[0, 0], [5, 5]],
                "attributes": {},
                "confidence": 0.5,
                "support": ["a"],
            },
        ],
        "confidence": 0.8,
        "agreement": 0.9,
        "method": "majority_vote",
        "responses": [
            {
                "response_id": "rsp_a",
                "annotator_id": "ann_1",
                "labels": ["cat"],
                "objects": [],
                "submitted_at": "2025-01-01T00:00:00+00:00",
                "late": False,
            }
        ],
        "review_id": None,
        "reviewer_id": None,
        "workflow_id": f"campaign/cmp_x/item/{item_id}",
        "run_id": "run-1",
        "finalized_at": "2025-01-01T00:00:00+00:00",
    }
    record.update(changes)
    return record


def simple_record(
    i: int, *, x: float = 10, label: str = "cat", prefix: str = "cmp_x"
) -> dict[str, Any]:
    """A small record: a tag, a box and (for odd i) a polygon."""
    objects: list[dict[str, Any]] = [
        {"type": "tag", "label": label, "attributes": {}, "confidence": 0.9, "support": ["a"]},
        {
            "type": "box",
            "label": "car",
            "x": x,
            "y": 5,
            "w": 20,
            "h": 10,
            "angle": 0,
            "attributes": {},
            "confidence": 0.8,
            "support": ["a", "b"],
        },
    ]
    if i % 2:
        objects.append(
            {
                "type": "polygon",
                "label": "road",
                "points": [[1, 30], [40, 30], [40, 45]],
                "attributes": {},
                "confidence": 0.7,
                "support": ["b"],
            }
        )
    return {
        "item_id": f"{prefix}-{i:06d}",
        "campaign_id": prefix,
        "image": f"s3://images/{prefix}/{i}.jpg",
        "width": WIDTH,
        "height": HEIGHT,
        "labels": [label],
        "objects": objects,
        "confidence": 0.9,
        "agreement": 0.85,
        "method": "majority_vote",
        "responses": [],
        "review_id": None,
        "reviewer_id": None,
        "workflow_id": f"campaign/{prefix}/item/{i}",
        "run_id": "run",
        "finalized_at": "2025-01-01T00:00:00+00:00",
    }


def simple_records(n: int, **kw: Any) -> list[dict[str, Any]]:
    return [simple_record(i, **kw) for i in range(n)]


def change_some(
    records: list[dict[str, Any]], fraction: float, rng: random.Random
) -> tuple[list[dict[str, Any]], list[str]]:
    """A copy with ``fraction`` of the records, picked at random, moved by one pixel."""
    picked = rng.sample(range(len(records)), max(1, round(len(records) * fraction)))
    out = list(records)
    for i in picked:
        record = dict(out[i])
        objects = [dict(o) for o in record["objects"]]
        objects[1]["x"] = objects[1]["x"] + 1
        record["objects"] = objects
        out[i] = record
    return out, sorted(records[i]["item_id"] for i in picked)
