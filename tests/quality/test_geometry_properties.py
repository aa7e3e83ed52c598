"""Properties of object similarity, agreement and consensus for any input (hypothesis)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

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
    "car": ClassSpec("car", "box", attribute_kinds={"color": "single", "parts": "multi"}),
    "lake": ClassSpec("lake", "polygon"),
    "road": ClassSpec("road", "polyline"),
    "face": ClassSpec("face", "keypoints", sigmas=(0.05, 0.1, 0.2)),
    "sky": ClassSpec("sky", "mask"),
    "cat": ClassSpec("cat", "tag"),
}
MASK_SHAPE = (6, 7)  # (height, width)
IMAGE = (7, 6)  # (width, height): masks must match it

coordinate = st.floats(min_value=0, max_value=100, allow_nan=False, width=32).map(float)
size = st.floats(min_value=0.5, max_value=60, allow_nan=False, width=32).map(float)
angle = st.one_of(st.just(0.0), st.floats(min_value=0, max_value=359, width=32).map(float))
point = st.tuples(coordinate, coordinate).map(list)

boxes = st.builds(
    lambda x, y, w, h, t: {"x": x, "y": y, "w": w, "h": h, "angle": t},
    coordinate,
    coordinate,
    size,
    size,
    angle,
)
# Any point lists, so self-intersecting, collinear and repeated-point polygons are included.
polygons = st.lists(point, min_size=3, max_size=7).map(lambda p: {"points": p})
polylines = st.lists(point, min_size=2, max_size=6).map(lambda p: {"points": p})
keypoints = st.lists(
    st.tuples(coordinate, coordinate, st.sampled_from([0, 1, 2])).map(list),
    min_size=3,
    max_size=3,
).map(lambda p: {"points": p})
masks = st.lists(st.booleans(), min_size=42, max_size=42).map(
    lambda bits: {"rle": rle_encode(np.array(bits, dtype=bool).reshape(MASK_SHAPE))}
)
GEOMETRY_DATA = {"car": boxes, "lake": polygons, "road": polylines, "face": keypoints, "sky": masks}
attributes = st.fixed_dictionaries(
    {},
    optional={
        "color": st.sampled_from(["red", "blue"]),
        "parts": st.lists(st.sampled_from(["door", "wheel", "roof"]), unique=True, max_size=3),
    },
)


def geometric_object(label: str) -> st.SearchStrategy[tuple[str, dict[str, Any], dict[str, Any]]]:
    return st.tuples(st.just(label), GEOMETRY_DATA[label], attributes)


any_object = st.one_of([geometric_object(label) for label in GEOMETRY_DATA])
pairs_of_one_class = st.sampled_from(list(GEOMETRY_DATA)).flatmap(
    lambda label: st.tuples(st.just(label), GEOMETRY_DATA[label], GEOMETRY_DATA[label])
)
# A response: a few objects of any type, and at most one tag (single-label ontology).
response_objects = st.tuples(st.lists(any_object, max_size=4), st.booleans()).map(
    lambda t: t[0] + ([("cat", {}, {})] if t[1] else [])
)


def annotation(
    rid: str, index: int, label: str, data: dict[str, Any], attrs: dict[str, Any] | None = None
) -> Annotation:
    return Annotation(rid, "a" + rid, index, label, CLASSES[label].geometry, data, attrs or {})


def response(
    rid: str, objects: list[tuple[str, dict[str, Any], dict[str, Any]]]
) -> ResponseObjects:
    return ResponseObjects(rid, "a" + rid, [annotation(rid, i, *o) for i, o in enumerate(objects)])


def expected_data(label: str, data: dict[str, Any]) -> dict[str, Any]:
    if CLASSES[label].geometry == "box":
        return {k: float(data.get(k) or 0.0) for k in ("x", "y", "w", "h", "angle")}
    return data


@settings(max_examples=200, deadline=None)
@given(pairs_of_one_class)
def test_similarity_is_symmetric_bounded_and_one_on_identical_input(
    case: tuple[str, dict[str, Any], dict[str, Any]],
) -> None:
    label, data_a, data_b = case
    spec = CLASSES[label]
    a = annotation("1", 0, label, data_a)
    b = annotation("2", 0, label, data_b)
    same = annotation("3", 0, label, data_a)
    s = similarity(a, b, spec, image_size=IMAGE)
    assert s == similarity(b, a, spec, image_size=IMAGE)
    assert 0.0 <= s <= 1.0
    assert similarity(a, same, spec, image_size=IMAGE) == 1.0


@settings(max_examples=80, deadline=None)
@given(response_objects, st.integers(min_value=1, max_value=4))
def test_consensus_of_identical_responses_is_that_response(
    objects: list[tuple[str, dict[str, Any], dict[str, Any]]], copies: int
) -> None:
    responses = [response(str(k), objects) for k in range(copies)]
    got = object_consensus(responses, CLASSES, image_size=IMAGE)
    assert [(o.label, dict(o.data), dict(o.attributes)) for o in got] == [
        (label, expected_data(label, data), attrs) for label, data, attrs in objects
    ]
    assert all(o.confidence == 1.0 for o in got)
    assert all(len(o.support) == copies for o in got)
    agreement = object_item_agreement(responses, CLASSES, image_size=IMAGE)
    assert agreement.score == 1.0


@settings(max_examples=80, deadline=None)
@given(st.lists(response_objects, min_size=1, max_size=4))
def test_agreement_and_confidence_lie_in_the_unit_interval(
    answers: list[list[tuple[str, dict[str, Any], dict[str, Any]]]],
) -> None:
    responses = [response(str(k), objects) for k, objects in enumerate(answers)]
    agreement = object_item_agreement(responses, CLASSES, image_size=IMAGE)
    assert 0.0 <= agreement.score <= 1.0
    for pair in agreement.pairs:
        assert 0.0 <= pair.score <= 1.0
        assert all(0.0 <= s <= 1.0 for _, _, s in pair.matches)
    for obj in object_consensus(responses, CLASSES, image_size=IMAGE):
        assert 0.0 <= obj.confidence <= 1.0
        assert obj.support


@settings(max_examples=40, deadline=None)
@given(st.lists(response_objects, min_size=2, max_size=4), st.randoms(use_true_random=False))
def test_agreement_does_not_depend_on_response_order(
    answers: list[list[tuple[str, dict[str, Any], dict[str, Any]]]], rnd: Any
) -> None:
    responses = [response(str(k), objects) for k, objects in enumerate(answers)]
    shuffled = list(responses)
    rnd.shuffle(shuffled)
    a = object_item_agreement(responses, CLASSES, image_size=IMAGE).score
    b = object_item_agreement(shuffled, CLASSES, image_size=IMAGE).score
    assert abs(a - b) <= 1e-12
