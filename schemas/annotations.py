"""What an annotator submits for one image, and its validation against the ontology.

A response is a list of objects, one union member per geometry type. Coordinates are image
pixels with the origin at the top-left corner; x grows right, y grows down.

- ``tag``: ``label``.
- ``box``: ``x, y, w, h`` of the top-left corner and size, and ``angle`` in degrees
  (clockwise, about the box centre; 0 unless the class is ``rotated``).
- ``polygon``: ``points`` ``[[x, y], ...]``, at least 3 distinct, implicitly closed.
- ``polyline``: ``points``, at least 2 distinct, open.
- ``keypoints``: ``points`` ``[[x, y, v], ...]`` in the class's keypoint order, with COCO's
  visibility ``v``: 0 not labeled, 1 labeled but hidden, 2 visible.
- ``mask``: COCO RLE, ``{"size": [height, width], "counts": [...] or "..."}``.

Every object may carry ``attributes`` (name -> value) as its class defines.

Validation refuses, with one FieldError naming the object and the field
(``objects.3.points.2``): unknown classes or attributes, attributes of the wrong type, a
geometry that is not its class's, coordinates outside the image, degenerate shapes (a box of
zero area, a polygon of fewer than 3 distinct points, a polyline of fewer than 2), a mask whose
size is not the image's, and too many objects. Self-intersecting polygons are **refused**, not
repaired: a repair (buffer(0), convex hull) silently changes what the person drew, and the
annotation page applies the same rule before submitting, so the person can fix it.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.field_error import FieldError
from schemas.ontology import AttributeDef, ClassDef, Ontology

MAX_OBJECTS = 10_000
MAX_POINTS = 2_000
AttributeValue = str | float | int | bool | list[str] | None


class _Object(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1, max_length=64)
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)


class TagObject(_Object):
    type: Literal["tag"] = "tag"


class BoxObject(_Object):
    type: Literal["box"] = "box"
    x: float
    y: float
    w: float
    h: float
    angle: float = 0.0

    def corners(self) -> list[tuple[float, float]]:
        cx, cy = self.x + self.w / 2, self.y + self.h / 2
        theta = math.radians(self.angle)
        cos, sin = math.cos(theta), math.sin(theta)
        out = []
        for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            px, py = dx * self.w / 2, dy * self.h / 2
            out.append((cx + px * cos - py * sin, cy + px * sin + py * cos))
        return out


class PolygonObject(_Object):
    type: Literal["polygon"] = "polygon"
    points: list[tuple[float, float]] = Field(max_length=MAX_POINTS)


class PolylineObject(_Object):
    type: Literal["polyline"] = "polyline"
    points: list[tuple[float, float]] = Field(max_length=MAX_POINTS)


class KeypointsObject(_Object):
    type: Literal["keypoints"] = "keypoints"
    points: list[tuple[float, float, Literal[0, 1, 2]]] = Field(max_length=MAX_POINTS)


class Rle(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: tuple[int, int]  # [height, width], as COCO writes it
    counts: list[int] | str


class MaskObject(_Object):
    type: Literal["mask"] = "mask"
    rle: Rle


AnnotationObject = Annotated[
    TagObject | BoxObject | PolygonObject | PolylineObject | KeypointsObject | MaskObject,
    Field(discriminator="type"),
]


class ResponseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objects: list[AnnotationObject] = Field(max_length=MAX_OBJECTS)

    def labels(self) -> list[str]:
        """The classes tagged (for classification answers)."""
        return sorted({o.label for o in self.objects if o.type == "tag"})


def validate_response(
    ontology: Ontology, body: ResponseBody, image_size: tuple[int, int] | None = None
) -> list[FieldError]:
    """Check a response against the ontology and the image's (width, height).

    An empty list means it is acceptable. ``image_size`` None skips the bounds checks (an
    image whose size is not known yet); masks then cannot be checked against it either.
    """
    errors: list[FieldError] = []

    def err(field: str, message: str) -> None:
        errors.append(FieldError(field=field, message=message))

    if len(body.objects) > ontology.max_objects:
        err("objects", f"{len(body.objects)} objects; this campaign allows {ontology.max_objects}")
    tags: list[str] = []
    for i, obj in enumerate(body.objects):
        at = f"objects.{i}"
        cls = ontology.by_name(obj.label)
        if cls is None:
            err(
                f"{at}.label",
                f"unknown class {obj.label!r}; expected one of {ontology.class_names}",
            )
            continue
        if cls.geometry != obj.type:
            err(f"{at}.type", f"class {cls.name!r} is drawn as {cls.geometry}, not {obj.type}")
            continue
        _check_attributes(cls, obj.attributes, at, err)
        if obj.type == "tag":
            tags.append(obj.label)
        elif isinstance(obj, BoxObject):
            _check_box(cls, obj, image_size, at, err)
        elif isinstance(obj, PolygonObject):
            _check_points(obj.points, image_size, at, err, minimum=3, kind="polygon")
            if len(set(obj.points)) >= 3 and _self_intersects(obj.points):
                err(f"{at}.points", "the polygon crosses itself; redraw it without crossings")
            elif len(set(obj.points)) >= 3 and abs(_shoelace(obj.points)) < 1e-9:
                err(f"{at}.points", "the polygon has zero area")
        elif isinstance(obj, PolylineObject):
            _check_points(obj.points, image_size, at, err, minimum=2, kind="polyline")
        elif isinstance(obj, KeypointsObject):
            _check_keypoints(cls, obj, image_size, at, err)
        elif isinstance(obj, MaskObject):
            _check_mask(obj, image_size, at, err)

    if ontology.tag_classes:
        if not ontology.multi_label and ontology.is_classification and len(tags) != 1:
            err("objects", "give exactly one tag: this is single-label")
        elif not ontology.multi_label and len(tags) > 1:
            err("objects", "give at most one tag: this is single-label")
    if len(tags) != len(set(tags)):
        err("objects", "a class is tagged more than once")
    return errors


def _check_attributes(cls: ClassDef, values: dict[str, Any], at: str, err: Any) -> None:
    for name, value in values.items():
        spec = cls.attribute(name)
        if spec is None:
            err(f"{at}.attributes.{name}", f"class {cls.name!r} has no attribute {name!r}")
            continue
        problem = _attribute_problem(spec, value)
        if problem:
            err(f"{at}.attributes.{name}", problem)
    for spec in cls.attributes:
        if spec.required and values.get(spec.name) in (None, "", []):
            err(f"{at}.attributes.{spec.name}", "this attribute is required")


def _attribute_problem(spec: AttributeDef, value: Any) -> str | None:
    if value is None:
        return None
    if spec.kind == "single":
        if not isinstance(value, str) or value not in spec.options:
            return f"must be one of {spec.options}"
    elif spec.kind == "multi":
        if not isinstance(value, list) or any(v not in spec.options for v in value):
            return f"must be a list of values from {spec.options}"
        if len(set(value)) != len(value):
            return "a value is listed twice"
    elif spec.kind == "number":
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            return "must be a number"
        if spec.minimum is not None and value < spec.minimum:
            return f"must be at least {spec.minimum}"
        if spec.maximum is not None and value > spec.maximum:
            return f"must be at most {spec.maximum}"
    elif spec.kind == "text":
        if not isinstance(value, str):
            return "must be text"
        if len(value) > spec.max_length:
            return f"must be at most {spec.max_length} characters"
    return None


def _inside(x: float, y: float, size: tuple[int, int] | None) -> bool:
    if not (math.isfinite(x) and math.isfinite(y)):
        return False
    if size is None:
        return True
    return 0 <= x <= size[0] and 0 <= y <= size[1]


def _check_box(
    cls: ClassDef, box: BoxObject, size: tuple[int, int] | None, at: str, err: Any
) -> None:
    if not all(math.isfinite(v) for v in (box.x, box.y, box.w, box.h, box.angle)):
        err(at, "box coordinates must be finite numbers")
        return
    if box.w <= 0 or box.h <= 0:
        err(f"{at}.w" if box.w <= 0 else f"{at}.h", "the box has zero area")
        return
    if box.angle != 0 and not cls.rotated:
        err(f"{at}.angle", f"boxes of class {cls.name!r} are not rotated; angle must be 0")
    for n, (x, y) in enumerate(box.corners()):
        if not _inside(x, y, size):
            err(at, f"corner {n} ({x:.1f}, {y:.1f}) is outside the {_size_text(size)} image")
            return


def _size_text(size: tuple[int, int] | None) -> str:
    return f"{size[0]}x{size[1]}" if size else "unknown-size"


def _check_points(
    points: list[tuple[float, float]] | list[tuple[float, float, int]],
    size: tuple[int, int] | None,
    at: str,
    err: Any,
    *,
    minimum: int,
    kind: str,
) -> None:
    for n, p in enumerate(points):
        if not _inside(p[0], p[1], size):
            err(f"{at}.points.{n}", f"({p[0]}, {p[1]}) is outside the {_size_text(size)} image")
            return
    distinct = {(p[0], p[1]) for p in points}
    if len(distinct) < minimum:
        err(f"{at}.points", f"a {kind} needs at least {minimum} distinct points")


def _check_keypoints(
    cls: ClassDef, obj: KeypointsObject, size: tuple[int, int] | None, at: str, err: Any
) -> None:
    if len(obj.points) != len(cls.keypoints):
        err(
            f"{at}.points",
            f"give all {len(cls.keypoints)} keypoints of {cls.name!r} in order "
            "(visibility 0 for one that is not labeled)",
        )
        return
    for n, (x, y, v) in enumerate(obj.points):
        if v != 0 and not _inside(x, y, size):
            err(
                f"{at}.points.{n}",
                f"{cls.keypoints[n].name} ({x}, {y}) is outside the {_size_text(size)} image",
            )
    if all(v == 0 for _, _, v in obj.points):
        err(f"{at}.points", "no keypoint is labeled")


def _check_mask(obj: MaskObject, size: tuple[int, int] | None, at: str, err: Any) -> None:
    h, w = obj.rle.size
    if size is not None and (w, h) != size:
        err(f"{at}.rle.size", f"the mask is {w}x{h} but the image is {size[0]}x{size[1]}")
        return
    if isinstance(obj.rle.counts, list):
        if any(c < 0 for c in obj.rle.counts):
            err(f"{at}.rle.counts", "run lengths cannot be negative")
        elif sum(obj.rle.counts) != h * w:
            err(f"{at}.rle.counts", f"run lengths add up to {sum(obj.rle.counts)}, not {h * w}")
        elif not any(c for c in obj.rle.counts[1::2]):
            err(f"{at}.rle", "the mask is empty")
    elif not obj.rle.counts:
        err(f"{at}.rle.counts", "empty compressed counts")


def _shoelace(points: list[tuple[float, float]]) -> float:
    return 0.5 * sum(
        x1 * y2 - x2 * y1
        for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1], strict=True)
    )


def _orientation(p: tuple[float, float], q: tuple[float, float], r: tuple[float, float]) -> int:
    v = (q[1] - p[1]) * (r[0] - q[0]) - (q[0] - p[0]) * (r[1] - q[1])
    return 0 if abs(v) < 1e-12 else (1 if v > 0 else 2)


def _on_segment(p: tuple[float, float], q: tuple[float, float], r: tuple[float, float]) -> bool:
    return min(p[0], r[0]) <= q[0] <= max(p[0], r[0]) and min(p[1], r[1]) <= q[1] <= max(p[1], r[1])


def _segments_cross(
    a: tuple[float, float], b: tuple[float, float], c: tuple[float, float], d: tuple[float, float]
) -> bool:
    o1, o2, o3, o4 = (
        _orientation(a, b, c),
        _orientation(a, b, d),
        _orientation(c, d, a),
        _orientation(c, d, b),
    )
    if o1 != o2 and o3 != o4:
        return True
    return (
        (o1 == 0 and _on_segment(a, c, b))
        or (o2 == 0 and _on_segment(a, d, b))
        or (o3 == 0 and _on_segment(c, a, d))
        or (o4 == 0 and _on_segment(c, b, d))
    )


def _self_intersects(points: list[tuple[float, float]]) -> bool:
    """Do two non-adjacent edges of the closed polygon touch or cross? (The page's rule too.)"""
    pts = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
    if len(pts) > 1 and pts[0] == pts[-1]:
        pts = pts[:-1]
    n = len(pts)
    edges = [(pts[i], pts[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # adjacent edges share a vertex
            if _segments_cross(*edges[i], *edges[j]):
                return True
    return False
