"""Similarity of two objects of the same class, in [0, 1], one definition per geometry type.

Every similarity here is symmetric, lies in [0, 1], is 1 for identical input and 0 for objects
of different classes (`similarity` checks the labels; the per-type functions assume one class):

* ``tag``: 1 (the label is the whole geometry).
* ``box``: intersection over union of the two (possibly rotated) rectangles. Boxes whose angle
  is a multiple of 90 degrees take a vectorized axis-aligned path; the others are intersected
  as polygons with shapely.
* ``polygon``: IoU of the two areas. A self-intersecting polygon is read with
  ``shapely.make_valid`` (a bow-tie becomes its two triangles; the rasterizer's even-odd rule
  reads it the same way), and one of fewer than 3 distinct points has no area.
* ``mask``: IoU of the two pixel sets, computed on the RLE runs (`quality.rle`).
* ``keypoints``: Object Keypoint Similarity (OKS, COCO), made symmetric; see `oks`.
* ``polyline``: a Gaussian of the modified Hausdorff distance (the mean distance of one line
  to the other) relative to the lines' size; see
  `polyline_similarity`.

IoU of two shapes that both have zero area is 0/0; it is defined as 1 when the two shapes are
given by the same data and 0 otherwise. Identical data always gives exactly 1.

Attributes are not part of the geometric similarity; `attribute_agreement` compares them, and
`quality.matching` combines the two.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import shapely
from numpy.typing import NDArray

from quality.objects import Annotation, ClassSpec
from quality.rle import rle_size, rle_to_runs, runs_iou

__all__ = [
    "DEFAULT_KEYPOINT_SIGMA",
    "POLYLINE_KAPPA",
    "attribute_agreement",
    "box_iou_matrix",
    "box_iou_pairs",
    "oks",
    "oks_matrix",
    "oks_pairs",
    "polyline_similarity",
    "similarity",
    "similarity_matrix",
]

DEFAULT_KEYPOINT_SIGMA: Final = 0.05
"""OKS sigma of a point when the class gives none (the ontology's default)."""

POLYLINE_KAPPA: Final = 0.05
"""Default polyline tolerance: the (modified Hausdorff) distance, as a share of the lines'
size, that counts as one standard deviation of the Gaussian (see `polyline_similarity`)."""

_POLYLINE_INTERVALS: Final = 200
"""A polyline is sampled at this many even steps along its length for its mean distance."""


# --- parsing: JSON-shaped data -> numbers, with ValueError on missing or bad coordinates ------


def _where(obj: Annotation) -> str:
    return f"object {obj.index} of response {obj.response_id!r} ({obj.label!r})"


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{what} is missing or not a number: {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be finite, got {number}")
    return number


def box_params(obj: Annotation) -> tuple[float, float, float, float, float]:
    """``(cx, cy, w, h, angle)``: centre, size and angle (degrees clockwise) of a box."""
    data = obj.data
    where = _where(obj)
    x = _number(data.get("x"), f"{where}: box x")
    y = _number(data.get("y"), f"{where}: box y")
    w = _number(data.get("w"), f"{where}: box w")
    h = _number(data.get("h"), f"{where}: box h")
    angle = data.get("angle")
    theta = 0.0 if angle is None else _number(angle, f"{where}: box angle")
    if w < 0 or h < 0:
        raise ValueError(f"{where}: box size must be non-negative, got w={w}, h={h}")
    return (x + w / 2, y + h / 2, w, h, theta)


def box_params_array(objects: Sequence[Annotation]) -> NDArray[np.float64]:
    """``(n, 5)`` rows ``(cx, cy, w, h, angle)`` of boxes (see `box_params`).

    A fast path reads all boxes at once and checks them with numpy; on any problem it falls
    back to `box_params` one by one, for the precise error message.
    """
    try:
        raw = np.array(
            [
                (d["x"], d["y"], d["w"], d["h"], d.get("angle") or 0.0)
                for d in (o.data for o in objects)
            ],
            dtype=np.float64,
        ).reshape(len(objects), 5)
    except (KeyError, TypeError, ValueError):
        raw = None
    if raw is None or not np.all(np.isfinite(raw)) or np.any(raw[:, 2:4] < 0):
        return np.array([box_params(o) for o in objects], dtype=np.float64).reshape(-1, 5)
    raw[:, 0] += raw[:, 2] / 2
    raw[:, 1] += raw[:, 3] / 2
    return raw


def points_array(obj: Annotation, *, minimum: int = 1) -> NDArray[np.float64]:
    """``(k, 2)`` points of a polygon or polyline."""
    where = _where(obj)
    raw = obj.data.get("points")
    if not isinstance(raw, Sequence) or isinstance(raw, str) or len(raw) < minimum:
        raise ValueError(f"{where}: needs a list of at least {minimum} [x, y] points")
    out = np.empty((len(raw), 2), dtype=np.float64)
    for n, point in enumerate(raw):
        if not isinstance(point, Sequence) or len(point) < 2:
            raise ValueError(f"{where}: point {n} must be [x, y], got {point!r}")
        out[n, 0] = _number(point[0], f"{where}: point {n} x")
        out[n, 1] = _number(point[1], f"{where}: point {n} y")
    return out


def keypoints_array(obj: Annotation, n_points: int | None) -> NDArray[np.float64]:
    """``(P, 3)`` keypoints ``(x, y, v)``; unlabeled points (``v = 0``) get ``(0, 0, 0)``."""
    where = _where(obj)
    raw = obj.data.get("points")
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise ValueError(f"{where}: keypoints need a list of [x, y, v] points")
    if n_points is not None and len(raw) != n_points:
        raise ValueError(f"{where}: expected {n_points} keypoints, got {len(raw)}")
    out = np.zeros((len(raw), 3), dtype=np.float64)
    for n, point in enumerate(raw):
        if not isinstance(point, Sequence) or len(point) != 3:
            raise ValueError(f"{where}: keypoint {n} must be [x, y, v], got {point!r}")
        v = point[2]
        if isinstance(v, bool) or v not in (0, 1, 2):
            raise ValueError(f"{where}: keypoint {n} visibility must be 0, 1 or 2, got {v!r}")
        if v == 0:
            continue  # COCO: the coordinates of an unlabeled point mean nothing
        out[n, 0] = _number(point[0], f"{where}: keypoint {n} x")
        out[n, 1] = _number(point[1], f"{where}: keypoint {n} y")
        out[n, 2] = float(v)
    return out


def mask_runs(
    obj: Annotation, image_size: tuple[int, int] | None
) -> tuple[NDArray[np.int64], tuple[int, int]]:
    """Validated RLE runs of a mask and its ``(height, width)``."""
    where = _where(obj)
    rle = obj.data.get("rle")
    if not isinstance(rle, Mapping):
        raise ValueError(f"{where}: a mask needs an rle {{size, counts}}")
    try:
        size = rle_size(rle)
        runs = rle_to_runs(rle)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    if image_size is not None and (size[1], size[0]) != tuple(image_size):
        raise ValueError(
            f"{where}: the mask is {size[1]}x{size[0]} but the image is "
            f"{image_size[0]}x{image_size[1]}"
        )
    return runs, size


def polygon_shape(points: NDArray[np.float64]) -> shapely.Geometry:
    """The area a polygon's points enclose, as a valid shapely (multi)polygon, maybe empty."""
    distinct = np.unique(points, axis=0)
    if distinct.shape[0] < 3:
        return shapely.Polygon()
    polygon = shapely.Polygon(points)
    if not polygon.is_valid:
        polygon = shapely.make_valid(polygon)
        # make_valid may return lines or points next to the areas; only areas count.
        parts = [
            p
            for p in shapely.get_parts(polygon)
            if isinstance(p, shapely.Polygon | shapely.MultiPolygon)
        ]
        polygon = shapely.union_all(parts) if parts else shapely.Polygon()
    return polygon


def _canonical_key(obj: Annotation) -> str:
    return repr(sorted((str(k), repr(v)) for k, v in obj.data.items()))


# --- per-type similarities -------------------------------------------------------------------


def box_corners(params: NDArray[np.float64]) -> NDArray[np.float64]:
    """``(n, 4, 2)`` corners of ``(n, 5)`` boxes ``(cx, cy, w, h, angle)``.

    Same order and rotation as ``schemas.annotations.BoxObject.corners``: with y pointing down,
    the standard rotation matrix turns clockwise on screen.
    """
    cx, cy, w, h, angle = params.T
    theta = np.radians(angle)
    cos, sin = np.cos(theta), np.sin(theta)
    signs = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=np.float64)
    px = signs[None, :, 0] * (w / 2)[:, None]
    py = signs[None, :, 1] * (h / 2)[:, None]
    x = cx[:, None] + px * cos[:, None] - py * sin[:, None]
    y = cy[:, None] + px * sin[:, None] + py * cos[:, None]
    return np.stack((x, y), axis=-1)


def _axis_extent(params: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """``(..., 4)`` axis-aligned ``(x0, y0, x1, y1)`` of ``(..., 5)`` boxes, and which boxes
    are axis-aligned (angle a multiple of 90 degrees; for 90 and 270 the sides swap)."""
    cx, cy, w, h, angle = (params[..., k] for k in range(5))
    quarter = np.mod(angle, 90.0) == 0
    swap = quarter & (np.mod(angle, 180.0) == 90)
    half_w = np.where(swap, h, w) / 2
    half_h = np.where(swap, w, h) / 2
    extent = np.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), axis=-1)
    return extent, quarter


def _box_iou(pa: NDArray[np.float64], pb: NDArray[np.float64]) -> NDArray[np.float64]:
    """IoU of broadcastable ``(..., 5)`` box arrays ``(cx, cy, w, h, angle)``."""
    pa, pb = np.broadcast_arrays(pa, pb)
    ext_a, quarter_a = _axis_extent(pa)
    ext_b, quarter_b = _axis_extent(pb)
    iw = np.minimum(ext_a[..., 2], ext_b[..., 2]) - np.maximum(ext_a[..., 0], ext_b[..., 0])
    ih = np.minimum(ext_a[..., 3], ext_b[..., 3]) - np.maximum(ext_a[..., 1], ext_b[..., 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    rotated = ~(quarter_a & quarter_b)
    if rotated.any():
        where = np.nonzero(rotated)
        sub_a, sub_b = pa[where], pb[where]
        corners_a, corners_b = box_corners(sub_a), box_corners(sub_b)
        lo_a, hi_a = corners_a.min(axis=1), corners_a.max(axis=1)
        lo_b, hi_b = corners_b.min(axis=1), corners_b.max(axis=1)
        overlap = np.all(np.minimum(hi_a, hi_b) > np.maximum(lo_a, lo_b), axis=1)
        values = np.zeros(sub_a.shape[0], dtype=np.float64)
        if overlap.any():
            values[overlap] = shapely.area(
                shapely.intersection(
                    shapely.polygons(corners_a[overlap]), shapely.polygons(corners_b[overlap])
                )
            )
        inter = inter.copy()
        inter[where] = values
    union = pa[..., 2] * pa[..., 3] + pb[..., 2] * pb[..., 3] - inter
    positive = union > 0
    iou = np.where(positive, inter / np.where(positive, union, 1.0), 0.0)
    iou = np.clip(iou, 0.0, 1.0)
    iou[np.all(pa == pb, axis=-1)] = 1.0
    result: NDArray[np.float64] = iou
    return result


def _aligned_iou(
    pa: NDArray[np.float64], pb: NDArray[np.float64], *, outer: bool
) -> NDArray[np.float64]:
    """IoU of boxes that all have angle 0 (the common case): every pair of ``(n, 5)`` x
    ``(m, 5)`` rows when ``outer``, else row by row.

    Areas are taken from the same corner coordinates as the intersection, so a box with itself
    gives exactly ``area / area = 1``.
    """
    half_wa, half_ha = pa[:, 2] / 2, pa[:, 3] / 2
    half_wb, half_hb = pb[:, 2] / 2, pb[:, 3] / 2
    ax0, ax1 = pa[:, 0] - half_wa, pa[:, 0] + half_wa
    ay0, ay1 = pa[:, 1] - half_ha, pa[:, 1] + half_ha
    bx0, bx1 = pb[:, 0] - half_wb, pb[:, 0] + half_wb
    by0, by1 = pb[:, 1] - half_hb, pb[:, 1] + half_hb
    area_a = (ax1 - ax0) * (ay1 - ay0)
    area_b = (bx1 - bx0) * (by1 - by0)
    if outer:
        iw = np.minimum.outer(ax1, bx1) - np.maximum.outer(ax0, bx0)
        ih = np.minimum.outer(ay1, by1) - np.maximum.outer(ay0, by0)
        both = np.add.outer(area_a, area_b)
    else:
        iw = np.minimum(ax1, bx1) - np.maximum(ax0, bx0)
        ih = np.minimum(ay1, by1) - np.maximum(ay0, by0)
        both = area_a + area_b
    np.maximum(iw, 0.0, out=iw)
    np.maximum(ih, 0.0, out=ih)
    inter = iw * ih
    union = both - inter
    if union.all():
        iou: NDArray[np.float64] = inter / union
        return np.minimum(iou, 1.0, out=iou)
    # Zero-area boxes: IoU 0, except a box with an identical one (0/0 read as identity).
    positive = union > 0
    iou = np.where(positive, inter, 0.0) / np.where(positive, union, 1.0)
    same = (pa[:, None, :] == pb[None, :, :]) if outer else (pa == pb)
    iou[same.all(axis=-1)] = 1.0
    return np.minimum(iou, 1.0, out=iou)


def box_iou_matrix(
    params_a: NDArray[np.float64], params_b: NDArray[np.float64]
) -> NDArray[np.float64]:
    """IoU of every box of ``params_a`` with every box of ``params_b``, ``(n, 5)`` x ``(m, 5)``.

    Rows are ``(cx, cy, w, h, angle)``. Pairs of axis-aligned boxes (angles multiples of 90
    degrees) are computed by broadcasting; pairs with a rotated box whose bounding boxes
    overlap are intersected as polygons with shapely. Identical rows give exactly 1.
    """
    if not (params_a[:, 4].any() or params_b[:, 4].any()):
        return _aligned_iou(params_a, params_b, outer=True)
    return _box_iou(params_a[:, None, :], params_b[None, :, :])


def box_iou_pairs(
    params_a: NDArray[np.float64], params_b: NDArray[np.float64]
) -> NDArray[np.float64]:
    """IoU of ``params_a[i]`` with ``params_b[i]`` for each row ``i`` (see `box_iou_matrix`)."""
    if not (params_a[:, 4].any() or params_b[:, 4].any()):
        return _aligned_iou(params_a, params_b, outer=False)
    return _box_iou(params_a, params_b)


def oks(a: NDArray[np.float64], b: NDArray[np.float64], sigmas: NDArray[np.float64]) -> float:
    """Object Keypoint Similarity of two ``(P, 3)`` keypoint arrays, made symmetric.

    COCO's OKS compares a detection with a ground truth:

        OKS = sum_i exp(-d_i^2 / (2 s^2 k_i^2)) [v_i > 0] / sum_i [v_i > 0],   k_i = 2 sigma_i,

    with ``d_i`` the distance between the two ``i``-th points, ``s^2`` the ground truth's area
    and ``v_i`` its visibility. Between two annotators neither is the ground truth, so:

    * a point labeled (``v > 0``) by both contributes the Gaussian term; one labeled by exactly
      one of them contributes 0 (they disagree on whether it can be placed); one labeled by
      neither is left out. If no point is labeled by either, the similarity is 1.
    * ``s^2 = (D_a^2 + D_b^2) / 4``, with ``D`` the diagonal of the bounding box of an
      annotation's labeled points: it equals the box area for a square box, and, unlike the
      area, stays positive for collinear points. It is at least 1 px^2.

    Reference: COCO keypoint evaluation, https://cocodataset.org/#keypoints-eval ; M. R. Ronchi
    and P. Perona (2017), "Benchmarking and Error Diagnosis in Multi-Instance Pose
    Estimation", ICCV.
    """
    return float(_oks(a, b, sigmas))


def _keypoint_scale2(k: NDArray[np.float64]) -> NDArray[np.float64]:
    """Squared bounding-box diagonal of the labeled points of ``(..., P, 3)`` annotations."""
    labeled = k[..., 2] > 0
    x, y = k[..., 0], k[..., 1]
    x0 = np.where(labeled, x, np.inf).min(axis=-1)
    x1 = np.where(labeled, x, -np.inf).max(axis=-1)
    y0 = np.where(labeled, y, np.inf).min(axis=-1)
    y1 = np.where(labeled, y, -np.inf).max(axis=-1)
    diag2 = np.zeros(labeled.shape[:-1], dtype=np.float64)
    any_labeled = labeled.any(axis=-1)
    diag2[any_labeled] = ((x1 - x0) ** 2 + (y1 - y0) ** 2)[any_labeled]
    return diag2


def _oks(
    a: NDArray[np.float64], b: NDArray[np.float64], sigmas: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Symmetric OKS (see `oks`) of broadcastable ``(..., P, 3)`` keypoint arrays."""
    lab_a = a[..., 2] > 0
    lab_b = b[..., 2] > 0
    both = lab_a & lab_b
    counted = (lab_a | lab_b).sum(axis=-1)
    d2 = (a[..., 0] - b[..., 0]) ** 2 + (a[..., 1] - b[..., 1]) ** 2
    s2 = np.maximum((_keypoint_scale2(a) + _keypoint_scale2(b)) / 4, 1.0)
    k2 = (2.0 * sigmas) ** 2
    terms = np.where(both, np.exp(-d2 / (2.0 * s2[..., None] * k2)), 0.0)
    value = np.where(counted > 0, terms.sum(axis=-1) / np.maximum(counted, 1), 1.0)
    result: NDArray[np.float64] = np.clip(value, 0.0, 1.0)
    return result


def oks_matrix(
    a: NDArray[np.float64], b: NDArray[np.float64], sigmas: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Symmetric OKS of every ``(n, P, 3)`` annotation with every ``(m, P, 3)`` one."""
    return _oks(a[:, None], b[None, :], sigmas)


def oks_pairs(
    a: NDArray[np.float64], b: NDArray[np.float64], sigmas: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Symmetric OKS of ``a[i]`` with ``b[i]`` for each row of two ``(p, P, 3)`` arrays."""
    return _oks(a, b, sigmas)


def arc_samples(points: NDArray[np.float64], intervals: int) -> NDArray[np.float64]:
    """``intervals + 1`` points evenly spaced by arc length along a polyline, ends included."""
    if points.shape[0] == 1:
        return np.repeat(points, intervals + 1, axis=0)
    seg = np.hypot(*np.diff(points, axis=0).T)
    along = np.concatenate(([0.0], np.cumsum(seg)))
    if along[-1] <= 0:
        return np.repeat(points[:1], intervals + 1, axis=0)
    targets = np.linspace(0.0, along[-1], intervals + 1)
    return np.column_stack(
        (np.interp(targets, along, points[:, 0]), np.interp(targets, along, points[:, 1]))
    )


def _distances_to_line(
    samples: NDArray[np.float64], line: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Distance of each sample point to the polyline ``line`` (to its nearest segment)."""
    if line.shape[0] == 1:
        seg_a = line
        seg_d = np.zeros_like(line)
    else:
        seg_a = line[:-1]
        seg_d = np.diff(line, axis=0)
    length2 = np.einsum("ij,ij->i", seg_d, seg_d)
    v = samples[:, None, :] - seg_a[None, :, :]
    t = np.einsum("nmj,mj->nm", v, seg_d) / np.where(length2 > 0, length2, 1.0)[None, :]
    t = np.clip(t, 0.0, 1.0)
    diff = v - t[..., None] * seg_d[None, :, :]
    result: NDArray[np.float64] = np.sqrt(np.einsum("nmj,nmj->nm", diff, diff).min(axis=1))
    return result


def _mean_distance(samples: NDArray[np.float64], line: NDArray[np.float64]) -> float:
    """Mean distance from a curve (evenly sampled) to ``line``, by the trapezoidal rule."""
    d = _distances_to_line(samples, line)
    return float((d.sum() - (d[0] + d[-1]) / 2) / (d.size - 1))


def polyline_length(points: NDArray[np.float64]) -> float:
    seg = np.diff(points, axis=0)
    return float(np.hypot(seg[:, 0], seg[:, 1]).sum())


def _diagonal(points: NDArray[np.float64]) -> float:
    span = points.max(axis=0) - points.min(axis=0)
    return float(math.hypot(span[0], span[1]))


def polyline_similarity(
    a: NDArray[np.float64], b: NDArray[np.float64], kappa: float = POLYLINE_KAPPA
) -> float:
    """Similarity of two polylines ``(k, 2)``: a Gaussian of their modified Hausdorff distance.

        sim = exp(-d^2 / (2 (kappa L)^2)),    L = max(1 px, (D_a + D_b) / 2),
        d = max(mean_{p on a} dist(p, b), mean_{p on b} dist(p, a)),

    where ``d`` is the modified Hausdorff distance (Dubuisson and Jain): the larger of the two
    mean distances from a point of one line, taken evenly along its length, to the other
    line; ``D`` is the diagonal of a line's bounding box, its size. Averaging instead of taking
    the worst point (the plain Hausdorff distance) makes one noisy vertex cost in proportion to
    the stretch of line it moves, as a noisy vertex costs a polygon some IoU, rather than
    deciding the score alone. The Gaussian form is OKS's: ``d = kappa L`` gives
    ``exp(-1/2) = 0.61``, and ``1.18 kappa L`` gives 0.5, so with the default ``kappa = 0.05``
    two 200 px lines match (similarity >= 0.5) when they are on average within about 12 px.
    Normalising by size makes the same relative error score the same on a short and a long
    line. ``d`` ignores the direction in which the lines were drawn and how their vertices are
    spaced.

    The means are integrals along each line, computed exactly to the nearest segment of the
    other line at 201 evenly spaced points and summed with the trapezoidal rule.

    References: M.-P. Dubuisson and A. K. Jain (1994), "A modified Hausdorff distance for
    object matching", ICPR; D. P. Huttenlocher, G. A. Klanderman and W. J. Rucklidge (1993),
    "Comparing images using the Hausdorff distance", IEEE TPAMI 15(9).
    """
    if a.shape == b.shape and np.array_equal(a, b):
        return 1.0
    size = max(1.0, (_diagonal(a) + _diagonal(b)) / 2)
    d = max(
        _mean_distance(arc_samples(a, _POLYLINE_INTERVALS), b),
        _mean_distance(arc_samples(b, _POLYLINE_INTERVALS), a),
    )
    return math.exp(-(d * d) / (2.0 * (kappa * size) ** 2))


def polygon_iou(a: shapely.Geometry, b: shapely.Geometry) -> float:
    """IoU of two valid polygonal shapes (0 when both are empty; see the module docstring)."""
    inter = float(shapely.area(shapely.intersection(a, b)))
    union = float(shapely.area(a)) + float(shapely.area(b)) - inter
    if union <= 0:
        return 0.0
    return min(1.0, max(0.0, inter / union))


# --- attributes ------------------------------------------------------------------------------


def _present(attributes: Mapping[str, Any], name: str) -> bool:
    return attributes.get(name) is not None


def _attribute_value_agreement(kind: str | None, x: Any, y: Any) -> float:
    if kind == "multi" or (
        kind is None and isinstance(x, list | tuple | set) and isinstance(y, list | tuple | set)
    ):
        sx = set(x) if isinstance(x, list | tuple | set) else {x}
        sy = set(y) if isinstance(y, list | tuple | set) else {y}
        union = len(sx | sy)
        return 1.0 if union == 0 else len(sx & sy) / union
    return 1.0 if x == y else 0.0


def attribute_agreement(
    a: Mapping[str, Any], b: Mapping[str, Any], kinds: Mapping[str, str]
) -> float:
    """Agreement of two objects' attributes, in [0, 1].

    The mean, over the attributes that either object gives (``None`` counts as not given), of:
    1 if both give the same value (``single``, ``number``, ``text``: exact match), the Jaccard
    similarity ``|X & Y| / |X | Y|`` of the two option sets for ``multi``, and 0 if only one of
    them gives it. Objects without attributes agree fully (1.0).
    """
    names = [n for n in a if _present(a, n)]
    names += [n for n in b if _present(b, n) and not _present(a, n)]
    if not names:
        return 1.0
    total = 0.0
    for name in names:
        if _present(a, name) and _present(b, name):
            total += _attribute_value_agreement(kinds.get(name), a[name], b[name])
    return total / len(names)


# --- public entry points ---------------------------------------------------------------------


def _check_class(obj: Annotation, spec: ClassSpec) -> None:
    if obj.geometry != spec.geometry:
        raise ValueError(
            f"{_where(obj)} is a {obj.geometry}, but class {spec.name!r} is drawn as "
            f"{spec.geometry}"
        )


def _sigmas(spec: ClassSpec, n_points: int) -> NDArray[np.float64]:
    if not spec.sigmas:
        return np.full(n_points, DEFAULT_KEYPOINT_SIGMA)
    if len(spec.sigmas) != n_points:
        raise ValueError(
            f"class {spec.name!r} has {len(spec.sigmas)} keypoint sigmas but its objects have "
            f"{n_points} points"
        )
    return np.asarray(spec.sigmas, dtype=np.float64)


def similarity_matrix(
    objects: Sequence[Annotation], spec: ClassSpec, *, image_size: tuple[int, int] | None
) -> NDArray[np.float64]:
    """The symmetric ``(n, n)`` matrix of similarities between objects of one class.

    Each object's data is parsed once. The matrix is exactly symmetric (the upper triangle is
    mirrored) with 1 on the diagonal.

    Raises:
        ValueError: an object that is not of ``spec``'s geometry, or whose data is missing
            coordinates, has non-finite ones, or is otherwise malformed.
    """
    n = len(objects)
    for obj in objects:
        _check_class(obj, spec)
    sim = np.eye(n, dtype=np.float64)
    if n == 0:
        return sim
    geometry = spec.geometry
    if geometry == "tag":
        return np.ones((n, n), dtype=np.float64)
    if geometry == "box":
        params = box_params_array(objects)
        full = box_iou_matrix(params, params)
        upper = np.triu(full, 1)
        return upper + upper.T + np.eye(n)
    if geometry == "keypoints":
        n_points = len(spec.sigmas) if spec.sigmas else None
        arrays = [keypoints_array(o, n_points) for o in objects]
        sizes = {k.shape[0] for k in arrays}
        if len(sizes) > 1:
            raise ValueError(f"class {spec.name!r}: objects have different numbers of keypoints")
        stack = np.stack(arrays)
        full = oks_matrix(stack, stack, _sigmas(spec, stack.shape[1]))
        upper = np.triu(full, 1)
        return upper + upper.T + np.eye(n)
    ii, jj = np.triu_indices(n, 1)
    pairs = list(zip(ii.tolist(), jj.tolist(), strict=True))
    # Parse (and so validate) every object, even when there is no pair to compare.
    if geometry == "polygon":
        points = [points_array(o) for o in objects]
        shapes = np.array([polygon_shape(p) for p in points], dtype=object)
        if not pairs:
            return sim
        bounds = shapely.bounds(shapes)
        overlap = (
            np.minimum(bounds[ii, 2], bounds[jj, 2]) > np.maximum(bounds[ii, 0], bounds[jj, 0])
        ) & (np.minimum(bounds[ii, 3], bounds[jj, 3]) > np.maximum(bounds[ii, 1], bounds[jj, 1]))
        values = np.zeros(ii.size, dtype=np.float64)
        if overlap.any():
            oi, oj = ii[overlap], jj[overlap]
            inter = shapely.area(shapely.intersection(shapes[oi], shapes[oj]))
            areas = shapely.area(shapes)
            union = areas[oi] + areas[oj] - inter
            with np.errstate(divide="ignore", invalid="ignore"):
                values[overlap] = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
        values = np.clip(values, 0.0, 1.0)
        values[[np.array_equal(points[i], points[j]) for i, j in pairs]] = 1.0
    elif geometry == "mask":
        parsed = [mask_runs(o, image_size) for o in objects]
        if len({size for _, size in parsed}) > 1:
            raise ValueError(f"class {spec.name!r}: masks of one item have different sizes")
        values = np.array([runs_iou(parsed[i][0], parsed[j][0]) for i, j in pairs])
    elif geometry == "polyline":
        lines = [points_array(o) for o in objects]
        kappa = spec.sigmas[0] if spec.sigmas else POLYLINE_KAPPA
        values = np.array([polyline_similarity(lines[i], lines[j], kappa) for i, j in pairs])
    else:  # pragma: no cover - ClassSpec validates the geometry
        raise ValueError(f"unknown geometry {geometry!r}")
    if not pairs:
        return sim
    sim[ii, jj] = values
    sim[jj, ii] = values
    return sim


def similarity(
    a: Annotation, b: Annotation, spec: ClassSpec, *, image_size: tuple[int, int] | None
) -> float:
    """Similarity of two objects in [0, 1]: 0 if their labels differ, else the per-type one.

    Symmetric to the last bit: the two objects are put in a canonical order before computing.

    Args:
        a, b: the two objects.
        spec: their class (the label of ``a`` when they differ is irrelevant: the answer is 0).
        image_size: ``(width, height)`` of the image, or None; masks must match it.

    Raises:
        ValueError: see `similarity_matrix`.
    """
    if a.label != b.label:
        return 0.0
    first, second = (a, b) if _canonical_key(a) <= _canonical_key(b) else (b, a)
    return float(similarity_matrix([first, second], spec, image_size=image_size)[0, 1])
