"""A bad response is refused with a message naming the object and the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas.annotations import ResponseBody, validate_response
from schemas.ontology import Ontology

ONTOLOGY = Ontology.model_validate(
    {
        "max_objects": 5,
        "classes": [
            {"name": "scene-day", "geometry": "tag"},
            {"name": "scene-night", "geometry": "tag"},
            {
                "name": "car",
                "geometry": "box",
                "attributes": [
                    {"name": "colour", "kind": "single", "options": ["red", "blue"]},
                    {"name": "tags", "kind": "multi", "options": ["parked", "moving"]},
                    {"name": "speed", "kind": "number", "minimum": 0, "maximum": 300},
                    {"name": "plate", "kind": "text", "max_length": 10},
                    {
                        "name": "occluded",
                        "kind": "single",
                        "options": ["yes", "no"],
                        "required": True,
                    },
                ],
            },
            {"name": "sign", "geometry": "box", "rotated": True},
            {"name": "road", "geometry": "polygon"},
            {"name": "lane", "geometry": "polyline"},
            {
                "name": "person",
                "geometry": "keypoints",
                "keypoints": [{"name": "head", "sigma": 0.08}, {"name": "hip", "sigma": 0.1}],
                "skeleton": [["head", "hip"]],
            },
            {"name": "sky", "geometry": "mask"},
        ],
    }
)
SIZE = (100, 50)
CAR = {
    "type": "box",
    "label": "car",
    "x": 10,
    "y": 10,
    "w": 20,
    "h": 10,
    "attributes": {"occluded": "no"},
}


def errors_of(*objects: dict[str, Any], size: tuple[int, int] | None = SIZE) -> dict[str, str]:
    body = ResponseBody.model_validate({"objects": list(objects)})
    return {e.field: e.message for e in validate_response(ONTOLOGY, body, size)}


def test_a_good_response_of_every_type_passes() -> None:
    assert (
        errors_of(
            CAR,
            {"type": "box", "label": "sign", "x": 40, "y": 10, "w": 10, "h": 10, "angle": 30},
            {
                "type": "polygon",
                "label": "road",
                "points": [[0, 40], [100, 40], [100, 50], [0, 50]],
            },
            {"type": "polyline", "label": "lane", "points": [[0, 45], [99, 45]]},
            {"type": "keypoints", "label": "person", "points": [[50, 5, 2], [0, 0, 0]]},
        )
        == {}
    )
    mask = {"type": "mask", "label": "sky", "rle": {"size": [50, 100], "counts": [10, 5, 4985]}}
    assert errors_of(mask, {"type": "tag", "label": "scene-day"}) == {}


@pytest.mark.parametrize(
    ("obj", "field", "says"),
    [
        (
            {"type": "box", "label": "truck", "x": 1, "y": 1, "w": 1, "h": 1},
            "objects.0.label",
            "unknown class 'truck'",
        ),
        (
            {"type": "polygon", "label": "car", "points": [[0, 0], [1, 0], [1, 1]]},
            "objects.0.type",
            "drawn as box",
        ),
        (
            {**CAR, "attributes": {"occluded": "no", "wheels": 4}},
            "objects.0.attributes.wheels",
            "no attribute 'wheels'",
        ),
        (
            {**CAR, "attributes": {"occluded": "no", "colour": "green"}},
            "objects.0.attributes.colour",
            "must be one of",
        ),
        (
            {**CAR, "attributes": {"occluded": "no", "speed": "fast"}},
            "objects.0.attributes.speed",
            "must be a number",
        ),
        (
            {**CAR, "attributes": {"occluded": "no", "speed": 900}},
            "objects.0.attributes.speed",
            "at most 300",
        ),
        (
            {**CAR, "attributes": {"occluded": "no", "tags": "parked"}},
            "objects.0.attributes.tags",
            "must be a list",
        ),
        (
            {**CAR, "attributes": {"occluded": "no", "plate": "X" * 11}},
            "objects.0.attributes.plate",
            "at most 10 characters",
        ),
        ({**CAR, "attributes": {}}, "objects.0.attributes.occluded", "required"),
        ({**CAR, "w": 0}, "objects.0.w", "zero area"),
        ({**CAR, "x": 90}, "objects.0", "outside the 100x50 image"),
        ({**CAR, "angle": 15}, "objects.0.angle", "not rotated"),
        (
            {"type": "polygon", "label": "road", "points": [[0, 0], [10, 0], [0, 0], [10, 0]]},
            "objects.0.points",
            "at least 3 distinct points",
        ),
        (
            {"type": "polygon", "label": "road", "points": [[0, 0], [10, 10], [10, 0], [0, 10]]},
            "objects.0.points",
            "crosses itself",
        ),
        (
            {"type": "polygon", "label": "road", "points": [[0, 0], [5, 5], [10, 10]]},
            "objects.0.points",
            "zero area",
        ),
        (
            {"type": "polygon", "label": "road", "points": [[0, 0], [10, 0], [10, 60]]},
            "objects.0.points.2",
            "outside",
        ),
        (
            {"type": "polyline", "label": "lane", "points": [[3, 3], [3, 3]]},
            "objects.0.points",
            "at least 2 distinct points",
        ),
        (
            {"type": "keypoints", "label": "person", "points": [[1, 1, 2]]},
            "objects.0.points",
            "all 2 keypoints",
        ),
        (
            {"type": "keypoints", "label": "person", "points": [[1, 1, 2], [500, 1, 1]]},
            "objects.0.points.1",
            "hip",
        ),
        (
            {"type": "keypoints", "label": "person", "points": [[0, 0, 0], [0, 0, 0]]},
            "objects.0.points",
            "no keypoint is labeled",
        ),
        (
            {"type": "mask", "label": "sky", "rle": {"size": [40, 100], "counts": [4000]}},
            "objects.0.rle.size",
            "mask is 100x40 but the image is 100x50",
        ),
        (
            {"type": "mask", "label": "sky", "rle": {"size": [50, 100], "counts": [10, 5, 10]}},
            "objects.0.rle.counts",
            "add up to 25",
        ),
    ],
    ids=[
        "unknown-class",
        "wrong-geometry",
        "unknown-attribute",
        "bad-choice",
        "not-a-number",
        "number-too-big",
        "multi-not-list",
        "text-too-long",
        "required-missing",
        "zero-area-box",
        "box-outside",
        "unrotatable",
        "polygon-two-points",
        "bowtie",
        "collinear-polygon",
        "polygon-outside",
        "polyline-one-point",
        "keypoints-missing",
        "keypoint-outside",
        "no-keypoints",
        "mask-wrong-size",
        "rle-wrong-length",
    ],
)
def test_each_mistake_is_named(obj: dict[str, Any], field: str, says: str) -> None:
    errors = errors_of(obj)
    assert field in errors, errors
    assert says in errors[field]


def test_too_many_objects_and_tag_rules() -> None:
    assert "give at most 5" not in str(errors_of(*[CAR] * 5))
    assert "allows 5" in errors_of(*[CAR] * 6)["objects"]
    two_tags = errors_of(
        {"type": "tag", "label": "scene-day"}, {"type": "tag", "label": "scene-night"}
    )
    assert "at most one tag" in two_tags["objects"]


def test_missing_coordinates_and_unknown_types_fail_parsing() -> None:
    with pytest.raises(ValidationError) as missing:
        ResponseBody.model_validate({"objects": [{"type": "box", "label": "car", "x": 1}]})
    assert {".".join(map(str, e["loc"])) for e in missing.value.errors()} == {
        "objects.0.box.y",
        "objects.0.box.w",
        "objects.0.box.h",
    }
    with pytest.raises(ValidationError):
        ResponseBody.model_validate({"objects": [{"type": "circle", "label": "car"}]})


def test_unknown_image_size_skips_only_the_bounds() -> None:
    assert errors_of({**CAR, "x": 5000}, size=None) == {}
    assert "objects.0.w" in errors_of({**CAR, "w": -1}, size=None)


def test_classification_only_needs_exactly_one_tag() -> None:
    tags = Ontology.model_validate({"classes": [{"name": "cat"}, {"name": "dog"}]})
    empty = ResponseBody.model_validate({"objects": []})
    assert [e.field for e in validate_response(tags, empty)] == ["objects"]
    multi = Ontology.model_validate(
        {"classes": [{"name": "cat"}, {"name": "dog"}], "multi_label": True}
    )
    assert validate_response(multi, empty) == []
