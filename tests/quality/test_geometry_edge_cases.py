"""Edge cases of object agreement and consensus: empty responses, one annotator, ties, total
disagreement, invalid polygons, missing coordinates, bad arguments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from quality import (
    Annotation,
    ClassSpec,
    ResponseObjects,
    object_consensus,
    object_item_agreement,
    rle_encode,
    similarity,
)

CLASSES = {
    "car": ClassSpec("car", "box", attribute_kinds={"color": "single"}),
    "lake": ClassSpec("lake", "polygon"),
    "road": ClassSpec("road", "polyline"),
    "face": ClassSpec("face", "keypoints", sigmas=(0.1, 0.1)),
    "sky": ClassSpec("sky", "mask"),
    "cat": ClassSpec("cat", "tag"),
    "dog": ClassSpec("dog", "tag"),
}
TAGS = {"cat": CLASSES["cat"], "dog": CLASSES["dog"]}


def response(rid: str, *objects: tuple[Any, ...]) -> ResponseObjects:
    """Response ``rid`` by annotator ``a<rid>``; objects are (label, data[, attributes])."""
    return ResponseObjects(
        rid,
        "a" + rid,
        [
            Annotation(
                rid, "a" + rid, i, o[0], CLASSES[o[0]].geometry, o[1], o[2] if len(o) > 2 else {}
            )
            for i, o in enumerate(objects)
        ],
    )


def box(x: float, y: float, w: float = 10, h: float = 10) -> dict[str, float]:
    return {"x": x, "y": y, "w": w, "h": h, "angle": 0.0}


def poly(*points: Any) -> dict[str, Any]:
    return {"points": [list(p) for p in points]}


# --- empty responses -------------------------------------------------------------------------


def test_no_responses_is_refused() -> None:
    with pytest.raises(ValueError, match="no responses"):
        object_item_agreement([], CLASSES, image_size=None)
    with pytest.raises(ValueError, match="no responses"):
        object_consensus([], CLASSES, image_size=None)


def test_everyone_saw_nothing() -> None:
    responses = [response("1"), response("2"), response("3")]
    result = object_item_agreement(responses, CLASSES, image_size=None)
    assert result.score == 1.0
    assert all(p.score == 1.0 and p.matches == () for p in result.pairs)
    assert object_consensus(responses, CLASSES, image_size=None) == []


def test_nothing_against_something() -> None:
    responses = [response("1"), response("2", ("car", box(0, 0)))]
    assert object_item_agreement(responses, CLASSES, image_size=None).score == 0.0
    # One of two drew the box: a share of 1/2 meets the quorum of 1/2.
    (only,) = object_consensus(responses, CLASSES, image_size=None)
    assert only.support == ("2",)
    assert only.confidence == 0.5
    assert object_consensus(responses, CLASSES, image_size=None, quorum=0.6) == []


# --- one annotator ---------------------------------------------------------------------------


def test_one_annotator_agrees_with_itself_and_is_the_consensus() -> None:
    one = response(
        "1", ("car", box(0, 0), {"color": "red"}), ("lake", poly((0, 0), (5, 0), (0, 5)))
    )
    assert object_item_agreement([one], CLASSES, image_size=None).score == 1.0
    got = object_consensus([one], CLASSES, image_size=None)
    assert [(o.label, dict(o.data), dict(o.attributes), o.confidence) for o in got] == [
        ("car", box(0, 0), {"color": "red"}, 1.0),
        ("lake", poly((0, 0), (5, 0), (0, 5)), {}, 1.0),
    ]


# --- ties ------------------------------------------------------------------------------------


def test_single_label_tie_goes_to_class_order() -> None:
    responses = [response("1", ("dog", {})), response("2", ("cat", {}))]
    assert object_item_agreement(responses, TAGS, image_size=None).score == 0.5
    (only,) = object_consensus(responses, TAGS, image_size=None)
    assert only.label == "cat"
    (only,) = object_consensus(responses, TAGS, image_size=None, class_order=("dog", "cat"))
    assert only.label == "dog"


def test_attribute_tie_goes_to_the_first_response_in_the_fixed_order() -> None:
    # Equal weights: the fixed order is by response id, so "1" comes first.
    responses = [
        response("2", ("car", box(0, 0), {"color": "blue"})),
        response("1", ("car", box(0, 0), {"color": "red"})),
    ]
    (only,) = object_consensus(responses, CLASSES, image_size=None)
    assert only.attributes == {"color": "red"}
    # A heavier annotator comes first.
    (only,) = object_consensus(responses, CLASSES, image_size=None, weights={"a1": 1.0, "a2": 2.0})
    assert only.attributes == {"color": "blue"}


def test_two_way_pixel_tie_is_kept() -> None:
    # Two annotators: a pixel drawn by one of them has half the weight, which counts.
    a = np.zeros((4, 4), dtype=bool)
    a[0:2, 0:2] = True
    b = np.zeros((4, 4), dtype=bool)
    b[0:2, 0:3] = True
    responses = [
        response("1", ("sky", {"rle": rle_encode(a)})),
        response("2", ("sky", {"rle": rle_encode(b)})),
    ]
    (only,) = object_consensus(responses, CLASSES, image_size=(4, 4))
    assert only.data == {"rle": rle_encode(a | b)}


def test_consensus_does_not_depend_on_input_order() -> None:
    responses = [
        response("1", ("car", box(0, 0)), ("car", box(40, 40))),
        response("2", ("car", box(41, 40)), ("car", box(1, 0))),
        response("3", ("car", box(0, 1)), ("car", box(80, 80))),
    ]

    def summary(objects: list[Any]) -> list[tuple[Any, ...]]:
        # support and members list responses in input order, which is what changes here.
        return [(o.label, o.data, o.attributes, o.confidence, sorted(o.support)) for o in objects]

    forward = object_consensus(responses, CLASSES, image_size=None)
    backward = object_consensus(responses[::-1], CLASSES, image_size=None)
    assert len(forward) == 2
    assert summary(forward) == summary(backward)


# --- total disagreement ----------------------------------------------------------------------


def test_total_disagreement_on_boxes() -> None:
    responses = [response(str(i), ("car", box(100 * i, 0))) for i in range(3)]
    result = object_item_agreement(responses, CLASSES, image_size=None)
    assert result.score == 0.0
    assert all(p.matches == () for p in result.pairs)
    # Each box has 1/3 of the votes: none reaches the quorum.
    assert object_consensus(responses, CLASSES, image_size=None) == []


def test_total_disagreement_on_single_label_tags_is_one_over_n() -> None:
    three = {**TAGS, "bird": ClassSpec("bird", "tag")}
    responses = [
        ResponseObjects(f"r{i}", f"a{i}", [Annotation(f"r{i}", f"a{i}", 0, label, "tag", {}, {})])
        for i, label in enumerate(("cat", "dog", "bird"))
    ]
    assert object_item_agreement(responses, three, image_size=None).score == pytest.approx(1 / 3)
    (only,) = object_consensus(responses, three, image_size=None)
    assert only.label == "cat"  # first in the ontology
    assert only.confidence == pytest.approx(1 / 3)


# --- invalid polygons ------------------------------------------------------------------------

INVALID_POLYGONS = {
    "bowtie": poly((0, 0), (10, 10), (10, 0), (0, 10)),
    "two-points": poly((0, 0), (10, 10)),
    "collinear": poly((0, 0), (5, 5), (10, 10)),
    "repeated-points": poly((0, 0), (0, 0), (10, 0), (10, 0), (10, 10), (0, 10)),
    "spike": poly((0, 0), (10, 0), (10, 10), (20, 10), (10, 10), (0, 10)),
}


@pytest.mark.parametrize("data", INVALID_POLYGONS.values(), ids=INVALID_POLYGONS.keys())
def test_invalid_polygon_similarity_is_defined(data: dict[str, Any]) -> None:
    spec = CLASSES["lake"]
    a = Annotation("r", "a", 0, "lake", "polygon", data, {})
    b = Annotation("s", "b", 0, "lake", "polygon", data, {})
    square = Annotation(
        "t", "c", 0, "lake", "polygon", poly((0, 0), (10, 0), (10, 10), (0, 10)), {}
    )
    assert similarity(a, b, spec, image_size=None) == 1.0  # identical input
    value = similarity(a, square, spec, image_size=None)
    assert 0.0 <= value <= 1.0


def test_zero_area_polygons_that_differ_do_not_match() -> None:
    spec = CLASSES["lake"]
    a = Annotation("r", "a", 0, "lake", "polygon", poly((0, 0), (5, 5), (10, 10)), {})
    b = Annotation("s", "b", 0, "lake", "polygon", poly((0, 0), (5, 5), (10, 11)), {})
    assert similarity(a, b, spec, image_size=None) == 0.0


def test_consensus_of_invalid_polygons() -> None:
    bowtie = INVALID_POLYGONS["bowtie"]
    shifted = poly((0.2, 0), (10.2, 10), (10.2, 0), (0.2, 10))
    responses = [
        response("1", ("lake", bowtie)),
        response("2", ("lake", shifted)),
        response("3", ("lake", bowtie)),
    ]
    (only,) = object_consensus(responses, CLASSES, image_size=(50, 50))
    assert only.support == ("1", "2", "3")
    assert len(only.data["points"]) >= 3  # the largest triangle of the voted bow-tie


def test_degenerate_polygons_that_differ_fall_back_to_a_member() -> None:
    a = poly((0, 0), (5, 5), (10, 10))
    responses = [response("1", ("lake", a)), response("2", ("lake", a))]
    (only,) = object_consensus(responses, CLASSES, image_size=None)
    assert only.data == a


# --- missing or bad coordinates --------------------------------------------------------------

BAD_OBJECTS = {
    "box-missing-w": ("car", {"x": 0, "y": 0, "h": 10}, "box w"),
    "box-null-x": ("car", {"x": None, "y": 0, "w": 10, "h": 10}, "box x"),
    "box-nan": ("car", {"x": float("nan"), "y": 0, "w": 10, "h": 10}, "finite"),
    "box-negative-size": ("car", {"x": 0, "y": 0, "w": -1, "h": 10}, "non-negative"),
    "box-text": ("car", {"x": "left", "y": 0, "w": 10, "h": 10}, "not a number"),
    "polygon-no-points": ("lake", {}, "points"),
    "polygon-null-point": ("lake", {"points": [[0, 0], None, [1, 1]]}, "point 1"),
    "polygon-short-point": ("lake", {"points": [[0, 0], [1], [1, 1]]}, "point 1"),
    "polyline-nan": ("road", poly((0, 0), (float("inf"), 1)), "finite"),
    "keypoints-wrong-count": ("face", {"points": [[0, 0, 2]]}, "expected 2 keypoints"),
    "keypoints-visible-null": ("face", {"points": [[None, None, 2], [0, 0, 2]]}, "keypoint 0"),
    "keypoints-bad-visibility": ("face", {"points": [[0, 0, 3], [0, 0, 2]]}, "visibility"),
    "mask-short-runs": ("sky", {"rle": {"size": [2, 2], "counts": [1, 1]}}, "add up to"),
    "mask-no-rle": ("sky", {}, "rle"),
}


@pytest.mark.parametrize(("label", "data", "message"), BAD_OBJECTS.values(), ids=BAD_OBJECTS.keys())
def test_bad_coordinates_are_refused(label: str, data: Mapping[str, Any], message: str) -> None:
    good = {
        "car": box(0, 0),
        "lake": poly((0, 0), (1, 0), (0, 1)),
        "road": poly((0, 0), (1, 1)),
        "face": {"points": [[0, 0, 2], [1, 1, 2]]},
        "sky": {"rle": {"size": [2, 2], "counts": [0, 4]}},
    }[label]
    responses = [response("1", (label, good)), response("2", (label, data))]
    with pytest.raises(ValueError, match=message):
        object_item_agreement(responses, CLASSES, image_size=None)
    with pytest.raises(ValueError, match=message):
        object_consensus(responses, CLASSES, image_size=None)


def test_unlabeled_keypoints_may_have_no_coordinates() -> None:
    a = response("1", ("face", {"points": [[0, 0, 2], [None, None, 0]]}))
    b = response("2", ("face", {"points": [[0, 0, 2], [3, 4, 0]]}))
    assert object_item_agreement([a, b], CLASSES, image_size=None).score == 1.0


def test_mask_of_the_wrong_size_is_refused() -> None:
    sky = response("1", ("sky", {"rle": {"size": [2, 2], "counts": [0, 4]}}))
    with pytest.raises(ValueError, match="the image is 3x2"):
        object_item_agreement([sky], CLASSES, image_size=(3, 2))


@pytest.mark.parametrize(
    ("responses", "message"),
    [
        (
            [ResponseObjects("1", "a1", [Annotation("1", "a1", 0, "horse", "box", box(0, 0))])],
            "not in the ontology",
        ),
        (
            [ResponseObjects("1", "a1", [Annotation("1", "a1", 0, "car", "polygon", box(0, 0))])],
            "drawn as box",
        ),
        (
            [ResponseObjects("1", "a1", [Annotation("2", "a1", 0, "car", "box", box(0, 0))])],
            "names response",
        ),
        ([response("1"), response("1")], "given twice"),
    ],
    ids=["unknown-class", "wrong-geometry", "foreign-object", "duplicate-response"],
)
def test_malformed_responses_are_refused(responses: list[ResponseObjects], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        object_item_agreement(responses, CLASSES, image_size=None)


# --- bad arguments ---------------------------------------------------------------------------


def test_bad_arguments_are_refused() -> None:
    responses = [response("1", ("car", box(0, 0))), response("2", ("car", box(0, 0)))]
    with pytest.raises(ValueError, match="no weight for annotator 'a2'"):
        object_consensus(responses, CLASSES, image_size=None, weights={"a1": 1.0})
    with pytest.raises(ValueError, match="finite and >= 0"):
        object_item_agreement(responses, CLASSES, image_size=None, weights={"a1": -1, "a2": 1})
    with pytest.raises(ValueError, match="sum to zero"):
        object_consensus(responses, CLASSES, image_size=None, weights={"a1": 0, "a2": 0})
    with pytest.raises(ValueError, match="no pair"):
        object_item_agreement(responses, CLASSES, image_size=None, weights={"a1": 0, "a2": 1})
    with pytest.raises(ValueError, match="quorum"):
        object_consensus(responses, CLASSES, image_size=None, quorum=1.5)
    with pytest.raises(ValueError, match="match_threshold"):
        object_item_agreement(responses, CLASSES, image_size=None, match_threshold=0.0)
    with pytest.raises(ValueError, match="image_size"):
        object_item_agreement(responses, CLASSES, image_size=(0, 10))
    with pytest.raises(ValueError, match="geometry must be one of"):
        ClassSpec("x", "circle")
    with pytest.raises(ValueError, match="sigmas must be positive"):
        ClassSpec("x", "keypoints", sigmas=(0.0,))


def test_zero_weight_annotator_still_lets_the_others_decide() -> None:
    responses = [
        response("1", ("car", box(0, 0))),
        response("2", ("car", box(2, 0))),
        response("3", ("car", box(1, 0))),
    ]
    (only,) = object_consensus(
        responses, CLASSES, image_size=None, weights={"a1": 1.0, "a2": 0.0, "a3": 1.0}
    )
    assert only.data["x"] == pytest.approx(0.5)
    assert only.confidence <= 1.0
