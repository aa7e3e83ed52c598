"""Golden values for object similarity, agreement and consensus, small enough to check by hand.

Each expected number is worked out in the comment or the expression next to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import shapely

from quality import (
    Annotation,
    ClassSpec,
    ResponseObjects,
    Vote,
    attribute_agreement,
    item_agreement,
    majority_vote,
    object_consensus,
    object_item_agreement,
    rle_encode,
    similarity,
)
from quality.geometry_consensus import assess_item

CLASSES = {
    "car": ClassSpec("car", "box", attribute_kinds={"color": "single", "parts": "multi"}),
    "truck": ClassSpec("truck", "box"),
    "lake": ClassSpec("lake", "polygon"),
    "road": ClassSpec("road", "polyline"),
    "face": ClassSpec("face", "keypoints", sigmas=(0.1, 0.1, 0.1)),
    "sky": ClassSpec("sky", "mask"),
    "cat": ClassSpec("cat", "tag"),
    "dog": ClassSpec("dog", "tag"),
    "bird": ClassSpec("bird", "tag"),
}
TAGS = {name: CLASSES[name] for name in ("cat", "dog", "bird")}


def obj(
    label: str,
    data: Mapping[str, Any],
    attributes: Mapping[str, Any] | None = None,
    *,
    rid: str = "r",
    index: int = 0,
) -> Annotation:
    return Annotation(
        rid, "a" + rid, index, label, CLASSES[label].geometry, dict(data), dict(attributes or {})
    )


def response(rid: str, *objects: tuple[Any, ...]) -> ResponseObjects:
    """Response ``rid`` by annotator ``a<rid>``; objects are (label, data[, attributes])."""
    return ResponseObjects(
        rid,
        "a" + rid,
        [
            obj(o[0], o[1], o[2] if len(o) > 2 else None, rid=rid, index=i)
            for i, o in enumerate(objects)
        ],
    )


def box(x: float, y: float, w: float, h: float, angle: float = 0.0) -> dict[str, float]:
    return {"x": x, "y": y, "w": w, "h": h, "angle": angle}


def poly(*points: tuple[float, float]) -> dict[str, Any]:
    return {"points": [list(p) for p in points]}


def square(x: float, y: float, side: float) -> dict[str, Any]:
    return poly((x, y), (x + side, y), (x + side, y + side), (x, y + side))


def mask(array: list[list[int]]) -> dict[str, Any]:
    return {"rle": rle_encode(np.array(array, dtype=bool))}


def sim(label: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    return similarity(obj(label, a), obj(label, b, rid="s"), CLASSES[label], image_size=None)


# --- similarity per type ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "a", "b", "expected"),
    [
        # 10x10 boxes 5 px apart: intersection 5 x 10 = 50, union 100 + 100 - 50.
        ("car", box(0, 0, 10, 10), box(5, 0, 10, 10), 50 / 150),
        ("car", box(0, 0, 10, 10), box(0, 0, 5, 5), 25 / 100),
        ("car", box(0, 0, 10, 10), box(20, 20, 10, 10), 0.0),
        # A 20x10 box, and the 10x20 box turned 90 degrees about the same centre (10, 5).
        ("car", box(0, 0, 20, 10), box(5, -5, 10, 20, 90), 1.0),
        # A square and itself turned 45 degrees: the overlap is a regular octagon of area
        # 2 (sqrt 2 - 1) s^2, so IoU = (sqrt 2 - 1) / (2 - sqrt 2) = 1 / sqrt 2.
        ("car", box(0, 0, 10, 10), box(0, 0, 10, 10, 45), 1 / math.sqrt(2)),
        ("lake", square(0, 0, 10), square(5, 0, 10), 50 / 150),
        # Right triangle, half of the square.
        ("lake", poly((0, 0), (10, 0), (0, 10)), square(0, 0, 10), 0.5),
        # A bow-tie is read as its two triangles (area 50 of the square's 100).
        ("lake", poly((0, 0), (10, 10), (10, 0), (0, 10)), square(0, 0, 10), 0.5),
        # 2x2 blocks overlapping in one pixel: 1 / (4 + 4 - 1).
        (
            "sky",
            mask([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]),
            mask([[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0]]),
            1 / 7,
        ),
        # Lines of length 100, 5 px apart: d = 5, L = 100, kappa L = 5: exp(-25 / 50).
        ("road", poly((0, 0), (100, 0)), poly((0, 5), (100, 5)), math.exp(-0.5)),
        # Direction does not matter.
        ("road", poly((0, 0), (100, 0)), poly((100, 5), (0, 5)), math.exp(-0.5)),
        # Shifted 10 along itself: from either line, the first (or last) 10 px are on average
        # 5 px from the other, the rest 0: d = 10 x 5 / 100 = 0.5, exp(-0.25 / 50).
        ("road", poly((0, 0), (100, 0)), poly((10, 0), (110, 0)), math.exp(-0.005)),
        # A bent line and its chord: the bent line is on average 25 px from the chord (its
        # mean height); the chord is on average 25 / sqrt 2 from the bent line (x / sqrt 2 on
        # each half). d = 25, L = (hypot(100, 50) + 100) / 2.
        (
            "road",
            poly((0, 0), (50, 50), (100, 0)),
            poly((0, 0), (100, 0)),
            math.exp(-(25**2) / (2 * (0.05 * (math.hypot(100, 50) + 100) / 2) ** 2)),
        ),
        ("cat", {}, {}, 1.0),
    ],
    ids=[
        "box-half-shift",
        "box-inside",
        "box-disjoint",
        "box-rotated-90-is-same-box",
        "box-rotated-45",
        "polygon-half-shift",
        "polygon-triangle-in-square",
        "polygon-bowtie",
        "mask-one-pixel",
        "polyline-parallel",
        "polyline-reversed",
        "polyline-shifted-along",
        "polyline-bent",
        "tag",
    ],
)
def test_similarity(label: str, a: dict[str, Any], b: dict[str, Any], expected: float) -> None:
    assert sim(label, a, b) == pytest.approx(expected, abs=1e-9)
    assert sim(label, b, a) == sim(label, a, b)


def test_oks_by_hand() -> None:
    # Both bounding boxes are 10 x 10, so s^2 = (200 + 200) / 4 = 100; k = 2 sigma = 0.2.
    a = {"points": [[0, 0, 2], [10, 0, 2], [0, 10, 2]]}
    b = {"points": [[1, 0, 2], [10, 0, 2], [0, 10, 1]]}
    assert sim("face", a, b) == pytest.approx((math.exp(-1 / (2 * 100 * 0.04)) + 2) / 3)
    # Point 2 unlabeled in c: it counts as 0; c's box is 9 x 0, so s^2 = (200 + 81) / 4.
    c = {"points": [[1, 0, 2], [10, 0, 2], [None, None, 0]]}
    assert sim("face", a, c) == pytest.approx((math.exp(-1 / (2 * 70.25 * 0.04)) + 1 + 0) / 3)
    # Labeled by neither: left out.
    d = {"points": [[0, 0, 2], [10, 0, 2], [0, 0, 0]]}
    e = {"points": [[0, 0, 2], [10, 0, 2], [5, 5, 0]]}
    assert sim("face", d, e) == 1.0


def test_labels_that_differ_are_not_similar() -> None:
    a = obj("car", box(0, 0, 10, 10))
    b = obj("truck", box(0, 0, 10, 10), rid="s")
    assert similarity(a, b, CLASSES["car"], image_size=None) == 0.0


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ({}, {}, 1.0),
        ({"color": "red"}, {"color": "red"}, 1.0),
        ({"color": "red"}, {"color": "blue"}, 0.0),
        ({"color": "red"}, {}, 0.0),
        ({"color": None}, {}, 1.0),
        # color agrees, parts has Jaccard 1/3: mean 2/3.
        ({"color": "red", "parts": ["a", "b"]}, {"color": "red", "parts": ["b", "c"]}, 2 / 3),
    ],
    ids=["none", "same", "different", "one-missing", "none-is-missing", "jaccard"],
)
def test_attribute_agreement(a: dict[str, Any], b: dict[str, Any], expected: float) -> None:
    kinds = CLASSES["car"].attribute_kinds
    assert attribute_agreement(a, b, kinds) == pytest.approx(expected)
    assert attribute_agreement(b, a, kinds) == pytest.approx(expected)


# --- item agreement --------------------------------------------------------------------------


def test_item_agreement_boxes_by_hand() -> None:
    a = response("1", ("car", box(0, 0, 10, 10)), ("car", box(50, 50, 10, 10)))
    # Same first box; second 2 px off (IoU 80 / 120); an extra box nobody else drew.
    b = response(
        "2", ("car", box(0, 0, 10, 10)), ("car", box(52, 50, 10, 10)), ("car", box(90, 90, 5, 5))
    )
    c = response("3")  # saw nothing
    result = object_item_agreement([a, b, c], CLASSES, image_size=None)
    ab, ac, bc = result.pairs
    # A(a, b) = (1 + 2/3) / (2 + 3 - 2) = 5/9; a and b against nothing: 0.
    assert ab.score == pytest.approx(5 / 9)
    assert ab.matches == ((0, 0, 1.0), (1, 1, pytest.approx(2 / 3)))
    assert ab.unmatched_a == () and ab.unmatched_b == (2,)
    assert ac.score == 0.0 and ac.unmatched_a == (0, 1)
    assert bc.score == 0.0
    assert result.score == pytest.approx(5 / 27)


def test_item_agreement_class_and_attribute_disagreement() -> None:
    same_box = box(0, 0, 10, 10)
    # Different classes never match: both objects unmatched, A = 0 / 2.
    car_truck = object_item_agreement(
        [response("1", ("car", same_box)), response("2", ("truck", same_box))],
        CLASSES,
        image_size=None,
    )
    assert car_truck.score == 0.0
    assert car_truck.pairs[0].unmatched_a == (0,)
    # Same box, color differs, parts agree: s q = 1 x 1/2.
    attrs = object_item_agreement(
        [
            response("1", ("car", same_box, {"color": "red", "parts": ["door"]})),
            response("2", ("car", same_box, {"color": "blue", "parts": ["door"]})),
        ],
        CLASSES,
        image_size=None,
    )
    assert attrs.score == pytest.approx(0.5)
    assert attrs.pairs[0].matches == ((0, 0, 1.0),)
    assert attrs.pairs[0].attribute_scores == (0.5,)


def test_item_agreement_weights() -> None:
    a = response("1", ("car", box(0, 0, 10, 10)))
    b = response("2", ("car", box(0, 0, 10, 10)))
    c = response("3")
    # Pairs ab = 1, ac = 0, bc = 0, with pair weights w_a w_b = 2, 2 x 1, 1 x 1.
    weights = {"a1": 2.0, "a2": 1.0, "a3": 1.0}
    result = object_item_agreement([a, b, c], CLASSES, image_size=None, weights=weights)
    assert result.score == pytest.approx(2 / (2 + 2 + 1))


SINGLE_LABEL_CASES = [
    (("cat", "cat", "cat"), None),
    (("cat", "dog", "cat"), None),
    (("cat", "dog", "dog", "bird"), None),
    (("cat", "cat", "dog"), {"a0": 1.0, "a1": 1.0, "a2": 3.0}),
    (("dog", "cat"), None),
    (("cat", "dog", "bird"), None),
    (("cat",), None),
    (("cat", "cat", "dog"), {"a0": 0.1, "a1": 0.2, "a2": 0.3}),
]


def _tag_responses(label_sets: list[tuple[str, ...]]) -> list[ResponseObjects]:
    return [
        ResponseObjects(
            f"r{i}",
            f"a{i}",
            [
                Annotation(f"r{i}", f"a{i}", k, label, "tag", {}, {})
                for k, label in enumerate(labels)
            ],
        )
        for i, labels in enumerate(label_sets)
    ]


@pytest.mark.parametrize(("labels", "weights"), SINGLE_LABEL_CASES)
def test_single_label_tags_score_the_plurality_share_exactly(
    labels: tuple[str, ...], weights: dict[str, float] | None
) -> None:
    votes = [Vote.single(f"a{i}", label, f"r{i}") for i, label in enumerate(labels)]
    expected = item_agreement(votes, multi_label=False, weights=weights)
    responses = _tag_responses([(label,) for label in labels])
    got = object_item_agreement(responses, TAGS, image_size=None, weights=weights)
    assert got.score == expected  # to the last bit


@pytest.mark.parametrize(
    "label_sets",
    [
        [("cat", "dog"), ("cat",), ()],
        [("cat",), ("cat",)],
        [(), ()],
        [("cat", "dog", "bird"), ("bird",), ("dog", "bird"), ("cat",)],
    ],
)
def test_multi_label_tags_score_the_mean_pairwise_jaccard_exactly(
    label_sets: list[tuple[str, ...]],
) -> None:
    votes = [Vote(f"a{i}", frozenset(s), f"r{i}") for i, s in enumerate(label_sets)]
    weights = {f"a{i}": 1.0 + i for i in range(len(label_sets))}
    expected = item_agreement(votes, multi_label=True, weights=weights)
    got = object_item_agreement(
        _tag_responses(label_sets), TAGS, image_size=None, multi_label=True, weights=weights
    )
    assert got.score == expected


# --- consensus -------------------------------------------------------------------------------


def test_box_consensus_averages_and_drops_below_quorum() -> None:
    a = response("1", ("car", box(0, 0, 20, 20)), ("car", box(100, 100, 10, 10)))
    b = response("2", ("car", box(2, 0, 20, 20)))
    c = response("3", ("car", box(1, 3, 20, 20)))
    (only,) = object_consensus([a, b, c], CLASSES, image_size=None)  # the lone box: 1/3 < 0.5
    assert only.data == pytest.approx(box(1, 1, 20, 20))
    assert only.support == ("1", "2", "3")
    assert only.members == (("1", 0), ("2", 0), ("3", 0))
    # IoU with (1, 1, 20, 20): 19 x 19 / (800 - 361) twice, and 20 x 18 / (800 - 360); the
    # share of responses is 1.
    assert only.confidence == pytest.approx((2 * 361 / 439 + 360 / 440) / 3)


def test_box_consensus_weighted_average() -> None:
    a = response("1", ("car", box(0, 0, 20, 20)))
    b = response("2", ("car", box(2, 0, 20, 20)))
    c = response("3", ("car", box(1, 3, 20, 20)))
    weights = {"a1": 2.0, "a2": 1.0, "a3": 1.0}
    (only,) = object_consensus([a, b, c], CLASSES, image_size=None, weights=weights)
    # x = (2 x 0 + 2 + 1) / 4, y = (0 + 0 + 3) / 4.
    assert only.data == pytest.approx(box(0.75, 0.75, 20, 20))


def test_box_consensus_two_of_three() -> None:
    a = response("1", ("car", box(0, 0, 10, 10)))
    b = response("2", ("car", box(0, 0, 10, 10)))
    c = response("3")
    (only,) = object_consensus([a, b, c], CLASSES, image_size=None)
    assert only.data == box(0, 0, 10, 10)
    assert only.confidence == pytest.approx(2 / 3)
    assert only.support == ("1", "2")


def test_rotated_box_consensus_aligns_equivalent_forms() -> None:
    # The same 20 x 10 box written two ways, and a third turned by 10 degrees.
    a = response("1", ("car", box(0, 0, 20, 10)))
    b = response("2", ("car", box(5, -5, 10, 20, 90)))
    c = response("3", ("car", box(0, 0, 20, 10, 9)))
    (only,) = object_consensus([a, b, c], CLASSES, image_size=None)
    assert only.data == pytest.approx(box(0, 0, 20, 10, 3))


def test_polygon_consensus_is_the_two_of_three_region() -> None:
    # Squares [0,20]^2, [1,21]x[0,20], [0,20]x[1,21]: covered by two or more is
    # [1,20]x[0,20] | [0,20]x[1,20], area 380 + 380 - 361 = 399.
    responses = [
        response("1", ("lake", square(0, 0, 20))),
        response("2", ("lake", square(1, 0, 20))),
        response("3", ("lake", poly((0, 1), (20, 1), (20, 21), (0, 21)))),
    ]
    (only,) = object_consensus(responses, CLASSES, image_size=(100, 100))
    shape = shapely.Polygon(only.data["points"])
    expected = shapely.union_all([shapely.box(1, 0, 20, 20), shapely.box(0, 1, 20, 20)])
    # The vote runs on a 1/8 px grid; tracing cuts each convex corner by half a cell.
    assert shape.area == pytest.approx(399, abs=0.1)
    assert shapely.area(shapely.symmetric_difference(shape, expected)) < 0.1


def test_mask_consensus_is_the_pixel_majority() -> None:
    responses = [
        response("1", ("sky", mask([[1, 1, 1], [1, 0, 0], [0, 0, 0]]))),
        response("2", ("sky", mask([[1, 1, 1], [1, 1, 1], [0, 0, 0]]))),
        response("3", ("sky", mask([[1, 1, 0], [1, 1, 0], [1, 0, 0]]))),
    ]
    (only,) = object_consensus(responses, CLASSES, image_size=(3, 3))
    # Votes per pixel: 3 3 2 / 3 2 1 / 1 0 0.
    assert only.data == mask([[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    assert isinstance(only.data["rle"]["counts"], list)


def test_keypoint_consensus_median_and_visibility_vote() -> None:
    responses = [
        response("1", ("face", {"points": [[0, 0, 2], [10, 0, 2], [0, 10, 2]]})),
        response("2", ("face", {"points": [[1, 0, 2], [10, 1, 0], [0, 11, 1]]})),
        response("3", ("face", {"points": [[3, 1, 1], [10, 2, 0], [0, 12, 1]]})),
    ]
    (only,) = object_consensus(responses, CLASSES, image_size=None, match_threshold=0.1)
    # Point 0: median (1, 0), visible 2 of 3; point 1: labeled by 1 of 3, so not labeled;
    # point 2: median (0, 11), hidden by 2 of 3.
    assert only.data == {"points": [[1.0, 0.0, 2], [0.0, 0.0, 0], [0.0, 11.0, 1]]}


def test_polyline_consensus_is_the_median_line() -> None:
    responses = [
        response("1", ("road", poly((0, 0), (100, 0)))),
        response("2", ("road", poly((100, 1), (50, 1), (0, 1)))),  # drawn the other way
        response("3", ("road", poly((0, 3), (100, 3)))),
    ]
    (only,) = object_consensus(responses, CLASSES, image_size=None)
    np.testing.assert_allclose(only.data["points"], [[0, 1], [100, 1]], atol=1e-9)


@pytest.mark.parametrize(("labels", "weights"), SINGLE_LABEL_CASES)
def test_single_label_tag_consensus_is_majority_vote(
    labels: tuple[str, ...], weights: dict[str, float] | None
) -> None:
    votes = [Vote.single(f"a{i}", label, f"r{i}") for i, label in enumerate(labels)]
    expected = majority_vote(
        votes, multi_label=False, class_order=("cat", "dog", "bird"), weights=weights
    )
    (only,) = object_consensus(
        _tag_responses([(label,) for label in labels]), TAGS, image_size=None, weights=weights
    )
    assert (only.label,) == expected.labels
    assert only.confidence == expected.confidence
    assert only.support == expected.support


def test_multi_label_tag_consensus_is_majority_vote() -> None:
    label_sets = [("cat", "dog"), ("cat",), ("dog", "bird"), ("cat", "bird")]
    got = object_consensus(_tag_responses(label_sets), TAGS, image_size=None, multi_label=True)
    # cat 3/4 > 1/2 is in; dog and bird 2/4 are ties, left out as majority_vote does.
    assert [(o.label, o.confidence, o.support) for o in got] == [("cat", 0.75, ("r0", "r1", "r3"))]


def test_attribute_consensus_is_the_majority() -> None:
    same = box(0, 0, 10, 10)
    responses = [
        response("1", ("car", same, {"color": "red", "parts": ["door", "wheel"]})),
        response("2", ("car", same, {"color": "red", "parts": ["wheel"]})),
        response("3", ("car", same, {"color": "blue"})),
    ]
    (only,) = object_consensus(responses, CLASSES, image_size=None)
    # parts is given by 2 of 3; among them wheel 2/2 is in, door 1/2 is a tie and out.
    assert only.attributes == {"color": "red", "parts": ["wheel"]}


def test_assess_item_equals_the_two_calls() -> None:
    responses = [
        response("1", ("car", box(0, 0, 10, 10)), ("lake", square(30, 30, 10))),
        response("2", ("car", box(1, 0, 10, 10)), ("lake", square(31, 30, 10))),
        response("3", ("car", box(0, 1, 10, 10))),
    ]
    both = assess_item(responses, CLASSES, image_size=(100, 100))
    assert both.agreement == object_item_agreement(responses, CLASSES, image_size=(100, 100))
    assert both.consensus == object_consensus(responses, CLASSES, image_size=(100, 100))
