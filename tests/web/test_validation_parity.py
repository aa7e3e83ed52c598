"""The page's validation (api/web/js/validate.js) and the server's (schemas/annotations.py)
give the same verdict, field for field and word for word, on every rule.

Each case runs through ``validate_response`` in Python and through ``validateResponse`` in
Chromium; the two lists of (field, message) must be equal.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page

from schemas.annotations import ResponseBody, validate_response
from schemas.ontology import Ontology
from tests.web.conftest import Web

pytestmark = pytest.mark.timeout(120)

SHAPES: dict[str, Any] = {
    "max_objects": 6,
    "classes": [
        {"name": "day"},
        {"name": "night"},
        {
            "name": "car",
            "geometry": "box",
            "attributes": [
                {"name": "color", "kind": "single", "options": ["red", "blue"], "required": True},
                {"name": "parts", "kind": "multi", "options": ["door", "wheel"]},
                {"name": "speed", "kind": "number", "minimum": 0, "maximum": 120.5},
                {"name": "plate", "kind": "text", "max_length": 5},
            ],
        },
        {"name": "sign", "geometry": "box", "rotated": True},
        {"name": "road", "geometry": "polygon"},
        {"name": "lane", "geometry": "polyline"},
        {
            "name": "person",
            "geometry": "keypoints",
            "keypoints": [{"name": "head"}, {"name": "hand"}],
            "skeleton": [["head", "hand"]],
        },
        {"name": "sky", "geometry": "mask"},
    ],
}
CLASSIFICATION: dict[str, Any] = {"classes": [{"name": "cat"}, {"name": "dog"}]}
MULTI: dict[str, Any] = {"multi_label": True, "classes": [{"name": "cat"}, {"name": "dog"}]}
SIZE = (100, 80)


def box(**kw: Any) -> dict[str, Any]:
    return (
        {"type": "box", "label": "car", "x": 10, "y": 10, "w": 20, "h": 10}
        | {"attributes": {"color": "red"}}
        | kw
    )


def poly(points: list[list[float]], label: str = "road", kind: str = "polygon") -> dict[str, Any]:
    return {"type": kind, "label": label, "points": points}


def mask(size: list[int], counts: list[int] | str) -> dict[str, Any]:
    return {"type": "mask", "label": "sky", "rle": {"size": size, "counts": counts}}


SQUARE = [[10, 10], [50, 10], [50, 50], [10, 50]]
CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]], tuple[int, int] | None]] = [
    ("valid", SHAPES, [box(), poly(SQUARE), {"type": "tag", "label": "day"}], SIZE),
    ("nothing at all", SHAPES, [], SIZE),
    ("unknown class", SHAPES, [{"type": "tag", "label": "unicorn"}], SIZE),
    ("wrong geometry", SHAPES, [poly(SQUARE, label="car")], SIZE),
    ("unknown attribute", SHAPES, [box(attributes={"color": "red", "mood": "x"})], SIZE),
    ("single choice", SHAPES, [box(attributes={"color": "pink"})], SIZE),
    ("required", SHAPES, [box(attributes={}), box(attributes={"color": ""})], SIZE),
    ("multi choice", SHAPES, [box(attributes={"color": "red", "parts": ["door", "sail"]})], SIZE),
    ("multi twice", SHAPES, [box(attributes={"color": "red", "parts": ["door", "door"]})], SIZE),
    ("multi not a list", SHAPES, [box(attributes={"color": "red", "parts": "door"})], SIZE),
    (
        "numbers",
        SHAPES,
        [
            box(attributes={"color": "red", "speed": -1}),
            box(attributes={"color": "red", "speed": 121}),
            box(attributes={"color": "red", "speed": True}),
            box(attributes={"color": "red", "speed": "fast"}),
            box(attributes={"color": "red", "speed": 120.5}),
        ],
        SIZE,
    ),
    (
        "text",
        SHAPES,
        [
            box(attributes={"color": "red", "plate": "ABCDEF"}),
            box(attributes={"color": "red", "plate": 12}),
        ],
        SIZE,
    ),
    ("too many objects", SHAPES, [box()] * 7, SIZE),
    ("box zero width", SHAPES, [box(w=0)], SIZE),
    ("box negative height", SHAPES, [box(h=-3)], SIZE),
    ("box outside", SHAPES, [box(x=95.25, y=70)], SIZE),
    ("box angle not rotated", SHAPES, [box(angle=10)], SIZE),
    (
        "rotated boxes",
        SHAPES,
        [
            {"type": "box", "label": "sign", "x": 40, "y": 30, "w": 20, "h": 10, "angle": 45},
            {"type": "box", "label": "sign", "x": 0, "y": 0, "w": 20, "h": 10, "angle": 30},
        ],
        SIZE,
    ),
    (
        "unknown size skips bounds",
        SHAPES,
        [box(x=500), poly([[900, 900], [950, 900], [950, 950]])],
        None,
    ),
    ("polygon two points", SHAPES, [poly([[10, 10], [20, 20], [10, 10]])], SIZE),
    ("polygon bowtie", SHAPES, [poly([[10, 10], [50, 50], [50, 10], [10, 50]])], SIZE),
    ("polygon collinear", SHAPES, [poly([[10, 10], [20, 20], [30, 30]])], SIZE),
    (
        "polygon touching",
        SHAPES,
        [poly([[10, 10], [50, 10], [30, 30], [50, 50], [10, 50], [30, 30]])],
        SIZE,
    ),
    (
        "polygon closed and doubled",
        SHAPES,
        [poly([[10, 10], [10, 10], [50, 10], [50, 50], [10, 10]])],
        SIZE,
    ),
    ("polygon outside", SHAPES, [poly([[10, 10], [100.5, 10], [50, 50]])], SIZE),
    (
        "polygon outside and crossing",
        SHAPES,
        [poly([[10, 10], [500, 500], [500, 10], [10, 500]])],
        SIZE,
    ),
    (
        "polyline one point",
        SHAPES,
        [poly([[10, 10], [10, 10]], label="lane", kind="polyline")],
        SIZE,
    ),
    (
        "polyline outside",
        SHAPES,
        [poly([[10, 10], [10, -0.5]], label="lane", kind="polyline")],
        SIZE,
    ),
    (
        "polyline crossing is fine",
        SHAPES,
        [poly([[10, 10], [50, 50], [50, 10], [10, 50]], label="lane", kind="polyline")],
        SIZE,
    ),
    (
        "keypoints count",
        SHAPES,
        [{"type": "keypoints", "label": "person", "points": [[1, 1, 2]]}],
        SIZE,
    ),
    (
        "keypoints none labeled",
        SHAPES,
        [{"type": "keypoints", "label": "person", "points": [[0, 0, 0], [0, 0, 0]]}],
        SIZE,
    ),
    (
        "keypoints outside",
        SHAPES,
        [{"type": "keypoints", "label": "person", "points": [[500, 5, 2], [900, 900, 0]]}],
        SIZE,
    ),
    (
        "keypoints hidden outside",
        SHAPES,
        [{"type": "keypoints", "label": "person", "points": [[5, 5, 2], [1e-05, 200.25, 1]]}],
        SIZE,
    ),
    ("mask valid", SHAPES, [mask([80, 100], [100, 50, 7850])], SIZE),
    ("mask size", SHAPES, [mask([100, 80], [8000])], SIZE),
    ("mask negative", SHAPES, [mask([80, 100], [-1, 8001])], SIZE),
    ("mask sum", SHAPES, [mask([80, 100], [10, 10])], SIZE),
    ("mask empty", SHAPES, [mask([80, 100], [8000])], SIZE),
    ("mask compressed", SHAPES, [mask([80, 100], "PZ3"), mask([80, 100], "")], SIZE),
    (
        "at most one tag",
        SHAPES,
        [{"type": "tag", "label": "day"}, {"type": "tag", "label": "night"}],
        SIZE,
    ),
    ("classification needs one", CLASSIFICATION, [], SIZE),
    (
        "classification two",
        CLASSIFICATION,
        [{"type": "tag", "label": "cat"}, {"type": "tag", "label": "dog"}],
        SIZE,
    ),
    (
        "multi-label twice",
        MULTI,
        [{"type": "tag", "label": "cat"}, {"type": "tag", "label": "cat"}],
        SIZE,
    ),
    ("multi-label none", MULTI, [], SIZE),
    (
        "quotes in names",
        SHAPES,
        [{"type": "tag", "label": "it's"}, box(attributes={"color": "red", "o'k": 1})],
        SIZE,
    ),
]


def server_verdict(
    ontology: dict[str, Any], objects: list[dict[str, Any]], size: tuple[int, int] | None
) -> list[list[str]]:
    body = ResponseBody.model_validate({"objects": objects})
    errors = validate_response(Ontology.model_validate(ontology), body, size)
    return [[e.field, e.message] for e in errors]


async def test_the_page_and_the_server_agree_on_every_rule(web: Web, page: Page) -> None:
    await page.goto(f"{web.base_url}/health")
    cases = [
        {
            "ontology": Ontology.model_validate(ontology).model_dump(mode="json"),
            "objects": objects,
            "size": list(size) if size else None,
        }
        for _, ontology, objects, size in CASES
    ]
    page_verdicts = await page.evaluate(
        """async (cases) => {
            const { validateResponse } = await import("/static/js/validate.js");
            return cases.map((c) =>
                validateResponse(c.ontology, c.objects, c.size).map((e) => [e.field, e.message]));
        }""",
        cases,
    )
    mismatches = {}
    for (name, ontology, objects, size), from_page in zip(CASES, page_verdicts, strict=True):
        expected = server_verdict(ontology, objects, size)
        if from_page != expected:
            mismatches[name] = {"server": expected, "page": from_page}
    assert mismatches == {}
    # The corpus is mostly refusals, of every kind; these few are the accepted ones.
    accepted = {name for name, o, objs, size in CASES if not server_verdict(o, objs, size)}
    assert accepted == {
        "valid",
        "nothing at all",
        "unknown size skips bounds",
        "polygon closed and doubled",
        "polyline crossing is fine",
        "mask valid",
        "multi-label none",
    }
