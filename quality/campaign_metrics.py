"""Campaign-level agreement: Krippendorff's alpha (any metric, and for geometry), the pairwise
Cohen's kappa matrix between annotators, and each annotator's agreement with the consensus.

Fleiss' kappa and nominal alpha from a list of units live in `quality.agreement_metrics`.

Krippendorff's alpha in general. With the coincidence matrix ``o_ck`` of the pairable values
(units with at least two values), its margins ``n_c`` and ``n = sum_c n_c``, and a distance
``delta_ck`` between values,

    D_o = sum_ck o_ck delta_ck / n,
    D_e = sum_ck n_c (n_k - [c = k]) delta_ck / (n (n - 1)),
    alpha = 1 - D_o / D_e.

Reference: K. Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", University of
Pennsylvania, https://repository.upenn.edu/asc_papers/43 ; K. Krippendorff (2004), "Content
Analysis: An Introduction to Its Methodology", 2nd ed., ch. 11 (metrics).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray

from quality.geometry_consensus import cluster_objects, consensus
from quality.matching import (
    DEFAULT_MATCH_THRESHOLD,
    check_threshold,
    pair_agreement,
    prepare_item,
)
from quality.objects import Annotation, ClassSpec, ConsensusObject, ResponseObjects
from quality.rle import rle_decode, runs_bbox, runs_iou
from quality.similarity import (
    DEFAULT_KEYPOINT_SIGMA,
    POLYLINE_KAPPA,
    box_corners,
    box_iou_pairs,
    box_params,
    keypoints_array,
    mask_runs,
    oks_pairs,
    points_array,
    polygon_shape,
    polyline_similarity,
    similarity_matrix,
)

__all__ = [
    "AnnotatorAgreement",
    "CampaignItem",
    "GeometryAlpha",
    "GeometryUnit",
    "KappaMatrix",
    "annotator_consensus_agreement",
    "cohen_kappa_matrix",
    "geometry_alpha",
    "geometry_units",
    "krippendorff_alpha",
]

Metric = Literal["nominal", "ordinal", "interval", "ratio"]

_DENSE_CELLS: Final = 50_000_000
"""Up to this many (unit, value) cells, value counts are a dense table (no sort needed)."""
_NEGLIGIBLE: Final = 1e-17
"""Gaussian similarities (OKS, polylines) below this are left out of alpha's expected
disagreement: it is 1e-17 relative to one pair, far below the 1e-9 the results are held to."""


# --- Krippendorff's alpha for coded values ---------------------------------------------------


def _encode_values(values: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Sorted distinct values and each value's index among them.

    Small integer codes (the usual case: class indices) are mapped with a bincount in linear
    time; anything else goes through ``numpy.unique`` (a sort).
    """
    if values.size == 0:
        return values, np.zeros(0, dtype=np.int64)
    lo, hi = values.min(), values.max()
    if hi - lo < 10_000_000 and np.all(values == np.floor(values)):
        offset = (values - lo).astype(np.int64)
        used = np.bincount(offset) > 0
        code_of = np.cumsum(used) - 1
        domain = np.flatnonzero(used).astype(np.float64) + lo
        return domain, code_of[offset]
    domain, codes = np.unique(values, return_inverse=True)
    return domain, codes.reshape(-1).astype(np.int64)


_FEW_VALUES: Final = 64
"""Up to this many candidate values, value counts are one vectorized comparison per value."""


def _coincidences_from_table(table: NDArray[np.float64]) -> NDArray[np.float64]:
    """``o_ck = sum_u (n_uc n_uk - [c = k] n_uc) / (m_u - 1)`` from a units x values table."""
    m = table.sum(axis=1)
    inv = np.zeros_like(m)
    pairable = m >= 2  # a unit with one value has no pair; its weight is 0
    inv[pairable] = 1.0 / (m[pairable] - 1)
    weighted = table * inv[:, None]
    o: NDArray[np.float64] = table.T @ weighted
    o[np.diag_indices(table.shape[1])] -= weighted.sum(axis=0)
    return o


def _few_value_counts(
    matrix: NDArray[np.float64], value_domain: NDArray[np.float64] | None, n_present: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """Units x values count table by one comparison pass per candidate value, or None.

    The candidates are ``value_domain``, or every integer between the smallest and largest
    value. No sort and no extraction of the present values (a boolean gather over a million
    scattered cells costs more than a handful of vectorized comparisons). Returns None when
    there are too many candidates or the candidates do not account for every value.
    """
    if value_domain is None:
        if n_present == 0:
            return None
        lo = float(np.fmin.reduce(matrix, axis=None))
        hi = float(np.fmax.reduce(matrix, axis=None))
        if not (lo == math.floor(lo) and hi - lo < _FEW_VALUES):
            return None
        candidates = np.arange(lo, hi + 1.0)
    else:
        if value_domain.size > _FEW_VALUES:
            return None
        candidates = value_domain
    table = np.empty((matrix.shape[1], candidates.size), dtype=np.float64)
    for c, value in enumerate(candidates.tolist()):
        table[:, c] = np.count_nonzero(matrix == value, axis=0)
    if int(table.sum()) != n_present:
        return None  # non-integer values, or values outside the domain
    if value_domain is None:
        used = table.sum(axis=0) > 0
        return table[:, used], candidates[used]
    return table, candidates


def _coincidences(
    unit: NDArray[np.int64], code: NDArray[np.int64], n_units: int, n_codes: int
) -> NDArray[np.float64]:
    """The coincidence matrix ``o`` (``n_codes`` square) from one (unit, code) pair per value.

    A dense units x codes table when it is small enough, else sparse (unit, code) cells.
    """
    if n_units * n_codes <= _DENSE_CELLS:
        counts = np.bincount(unit * n_codes + code, minlength=n_units * n_codes)
        return _coincidences_from_table(counts.reshape(n_units, n_codes).astype(np.float64))
    m = np.bincount(unit, minlength=n_units)
    keep = m[unit] >= 2
    unit, code = unit[keep], code[keep]
    inv = np.zeros(n_units, dtype=np.float64)
    pairable = m >= 2
    inv[pairable] = 1.0 / (m[pairable] - 1)
    cells, n_uc = np.unique(unit * n_codes + code, return_counts=True)
    cell_unit, cell_code = np.divmod(cells, n_codes)
    first, second = pairs_within_groups(
        np.bincount(cell_unit, minlength=n_units)[np.unique(cell_unit)]
    )
    weight = n_uc[first] * n_uc[second] * inv[cell_unit[first]]
    sparse_o: NDArray[np.float64] = (
        np.bincount(
            cell_code[first] * n_codes + cell_code[second], weights=weight, minlength=n_codes**2
        )
        .reshape(n_codes, n_codes)
        .astype(np.float64)
    )
    # A cell with itself: n_uc^2 - n_uc ordered pairs of its equal values.
    diag = np.bincount(cell_code, weights=(n_uc * n_uc - n_uc) * inv[cell_unit], minlength=n_codes)
    sparse_o[np.diag_indices(n_codes)] += diag
    return sparse_o


def pairs_within_groups(sizes: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """All ordered pairs ``(i, j)``, ``i != j``, of elements laid out contiguously by group."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    starts = np.cumsum(sizes) - sizes
    group = np.repeat(np.arange(sizes.size), sizes)
    per = sizes[group]
    i = np.repeat(np.arange(total), per)
    offsets = np.arange(i.size) - np.repeat(np.cumsum(per) - per, per)
    j = starts[group][i] + offsets
    keep = i != j
    return i[keep], j[keep]


def _metric_matrix(
    metric: Metric | ArrayLike, domain: NDArray[np.float64], n_c: NDArray[np.float64]
) -> NDArray[np.float64]:
    k = domain.size
    if isinstance(metric, str):
        if metric == "nominal":
            return 1.0 - np.eye(k)
        if metric == "interval":
            diff = domain[:, None] - domain[None, :]
            return diff * diff
        if metric == "ratio":
            total = domain[:, None] + domain[None, :]
            diff = domain[:, None] - domain[None, :]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(total != 0, diff / np.where(total != 0, total, 1.0), 0.0)
            return ratio * ratio
        if metric == "ordinal":
            # delta_ck = (sum_{g between c and k, inclusive} n_g - (n_c + n_k) / 2)^2
            cumulative = np.concatenate(([0.0], np.cumsum(n_c)))
            index = np.arange(k)
            lo = np.minimum(index[:, None], index[None, :])
            hi = np.maximum(index[:, None], index[None, :])
            between = cumulative[hi + 1] - cumulative[lo]
            value: NDArray[np.float64] = between - (n_c[:, None] + n_c[None, :]) / 2
            return value * value
        raise ValueError(f"unknown metric {metric!r}; use nominal, ordinal, interval or ratio")
    matrix = np.asarray(metric, dtype=np.float64)
    if matrix.shape != (k, k):
        raise ValueError(
            f"the distance matrix must be {k} x {k} (the value domain), got {matrix.shape}"
        )
    return matrix


def krippendorff_alpha(
    data: ArrayLike,
    *,
    metric: Metric | ArrayLike = "nominal",
    value_domain: ArrayLike | None = None,
) -> float:
    """Krippendorff's alpha of a coders x units matrix, for any metric; fully vectorized.

    ``data[i, u]`` is the value coder ``i`` gave unit ``u``, ``nan`` where they gave none (the
    layout of the ``krippendorff`` package). The coincidence matrix comes from a table of value
    counts per unit (one ``bincount``) and a matrix product, so a million values take a few
    hundredths of a second; the formula is in the module docstring.

    Args:
        data: the coders x units matrix.
        metric: ``"nominal"`` (``delta = [c != k]``), ``"ordinal"`` (Krippendorff's rank
            metric, ``(sum_{g=c..k} n_g - (n_c + n_k) / 2)^2``), ``"interval"``
            (``(c - k)^2``), ``"ratio"`` (``((c - k) / (c + k))^2``), or a square distance
            matrix over ``value_domain``.
        value_domain: the possible values, in order; defaults to the sorted distinct values.
            With a distance matrix, row ``i`` is ``value_domain[i]``.

    Returns:
        alpha, or ``nan`` when undefined (no unit with two values, or no expected
        disagreement).

    Raises:
        ValueError: ``data`` is not a numeric 2-D matrix; a value outside ``value_domain``; an
            unknown metric or a distance matrix of the wrong shape.
    """
    try:
        matrix = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"data must be numeric with nan for missing: {error}") from error
    if matrix.ndim != 2:
        raise ValueError(f"data must be a coders x units matrix, got shape {matrix.shape}")
    missing = np.isnan(matrix)
    n_present = matrix.size - int(np.count_nonzero(missing))
    domain_given = (
        None if value_domain is None else np.asarray(value_domain, dtype=np.float64).reshape(-1)
    )
    few = _few_value_counts(matrix, domain_given, n_present)
    if few is not None:
        table, domain = few
        o = _coincidences_from_table(table)
    else:
        _, unit = np.nonzero(~missing)
        values = matrix[~missing]
        if domain_given is None:
            domain, code = _encode_values(values)
        else:
            domain = domain_given
            order = np.argsort(domain, kind="stable")
            position = np.clip(np.searchsorted(domain[order], values), 0, max(domain.size - 1, 0))
            if domain.size == 0 or np.any(domain[order][position] != values):
                raise ValueError("data holds a value that is not in value_domain")
            code = order[position]
        o = _coincidences(
            unit.astype(np.int64), code.astype(np.int64), matrix.shape[1], domain.size
        )
    n_c = o.sum(axis=1)
    n = float(n_c.sum())
    if n <= 1:
        return float("nan")
    delta = _metric_matrix(metric, domain, n_c)
    observed = float(np.sum(o * delta))
    expected = float(n_c @ delta @ n_c - np.dot(n_c, np.diag(delta)))
    if expected == 0:
        return float("nan")
    return 1.0 - (n - 1) * observed / expected


# --- geometry alpha --------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignItem:
    """One item of a campaign, for campaign-level metrics.

    Attributes:
        responses: its responses.
        image_size: ``(width, height)``, or None.
        consensus: its consensus objects, if already computed (else computed when needed).
    """

    responses: Sequence[ResponseObjects]
    image_size: tuple[int, int] | None = None
    consensus: Sequence[ConsensusObject] | None = None


@dataclass(frozen=True)
class GeometryUnit:
    """One unit of geometry alpha: one object of one item, as each response saw it.

    ``values[r]`` is response ``r``'s object (of ``label``), or None if it drew nothing there.
    """

    item: int
    label: str
    values: tuple[Annotation | None, ...]


def geometry_units(
    items: Sequence[CampaignItem],
    classes: Mapping[str, ClassSpec],
    *,
    match_threshold: float = DEFAULT_MATCH_THRESHOLD,
) -> list[GeometryUnit]:
    """How objects become alpha's units: one unit per cluster of matched objects.

    Each item's objects are clustered class by class exactly as for consensus
    (`quality.geometry_consensus`, step 1, responses in response-id order, without weights or
    quorum). A cluster is a unit; every response of the item gives it one value: its object in
    the cluster, or "nothing" (None). So a miss or an extra object is a disagreement with
    the others, as in the per-item agreement. Items with fewer than two responses give no
    pairable unit and are left out.
    """
    check_threshold(match_threshold)
    units: list[GeometryUnit] = []
    for number, item in enumerate(items):
        responses = item.responses
        if len(responses) < 2:
            continue
        prepared = prepare_item(responses, classes, image_size=item.image_size)
        order = sorted(range(len(responses)), key=lambda r: (responses[r].response_id, r))
        for cluster in cluster_objects(prepared, order, match_threshold):
            values: list[Annotation | None] = [None] * len(responses)
            for i in cluster:
                values[int(prepared.response[i])] = prepared.objects[i]
            label = prepared.objects[cluster[0]].label
            units.append(GeometryUnit(number, label, tuple(values)))
    return units


def _bounds_with_margin(objects: Sequence[Annotation], spec: ClassSpec) -> NDArray[np.float64]:
    """``(n, 4)`` boxes outside of which an object's similarity to anything is (near) zero."""
    geometry = spec.geometry
    out = np.empty((len(objects), 4), dtype=np.float64)
    # A Gaussian similarity exp(-d^2 / (2 t^2)) is below _NEGLIGIBLE once d > t * reach.
    reach = math.sqrt(2.0 * math.log(1.0 / _NEGLIGIBLE))
    for n, obj in enumerate(objects):
        if geometry == "box":
            corners = box_corners(np.array([box_params(obj)]))[0]
            out[n] = (*corners.min(axis=0), *corners.max(axis=0))
        elif geometry == "polygon":
            pts = points_array(obj)
            out[n] = (*pts.min(axis=0), *pts.max(axis=0))
        elif geometry == "mask":
            runs, (height, _) = mask_runs(obj, None)
            x, y, w, h = runs_bbox(runs, height)
            out[n] = (x, y, x + w, y + h)
        elif geometry == "polyline":
            pts = points_array(obj)
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            kappa = spec.sigmas[0] if spec.sigmas else POLYLINE_KAPPA
            # d >= the gap between bounding boxes (every point of one line is at least that
            # far from the other), and L <= max(1, D_a, D_b).
            margin = reach * kappa * max(1.0, float(np.hypot(*(hi - lo))))
            out[n] = (*(lo - margin), *(hi + margin))
        else:  # keypoints
            k = keypoints_array(obj, None)
            labeled = k[:, 2] > 0
            if not labeled.any():
                out[n] = (0.0, 0.0, 0.0, 0.0)
                continue
            pts = k[labeled, :2]
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            k_max = 2.0 * (max(spec.sigmas) if spec.sigmas else DEFAULT_KEYPOINT_SIGMA)
            # d_i >= the gap, and s^2 <= max(1, D_a^2 / 2, D_b^2 / 2).
            scale = max(1.0, float(np.hypot(*(hi - lo))) / math.sqrt(2.0))
            margin = reach * k_max * scale
            out[n] = (*(lo - margin), *(hi + margin))
    return out


def _mask_iou_any_size(a: Annotation, b: Annotation) -> float:
    runs_a, size_a = mask_runs(a, None)
    runs_b, size_b = mask_runs(b, None)
    if size_a == size_b:
        return runs_iou(runs_a, runs_b)
    # Masks of images of different sizes: compare them pixel by pixel from the top-left corner.
    mask_a, mask_b = rle_decode(a.data["rle"]), rle_decode(b.data["rle"])
    h, w = min(size_a[0], size_b[0]), min(size_a[1], size_b[1])
    inter = int(np.count_nonzero(mask_a[:h, :w] & mask_b[:h, :w]))
    union = int(mask_a.sum()) + int(mask_b.sum()) - inter
    return 1.0 if union == 0 else inter / union


def _sum_pairwise_similarity(objects: Sequence[Annotation], spec: ClassSpec) -> float:
    """``sum_{i < j} sim(objects[i], objects[j])`` over all pairs, across items.

    Only pairs whose (margin-widened) bounding boxes meet can be similar, so candidate pairs
    come from an R-tree (``shapely.STRtree``) instead of all ``n^2`` pairs.
    """
    n = len(objects)
    if n < 2:
        return 0.0
    if spec.geometry == "tag":
        return n * (n - 1) / 2
    bounds = _bounds_with_margin(objects, spec)
    boxes = shapely.box(bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3])
    tree = shapely.STRtree(boxes)
    left, right = tree.query(boxes, predicate="intersects")
    keep = left < right
    ii, jj = left[keep], right[keep]
    if ii.size == 0:
        return 0.0
    if spec.geometry == "box":
        params = np.array([box_params(o) for o in objects], dtype=np.float64)
        return float(box_iou_pairs(params[ii], params[jj]).sum())
    if spec.geometry == "keypoints":
        arrays = [keypoints_array(o, len(spec.sigmas) or None) for o in objects]
        if len({k.shape[0] for k in arrays}) > 1:
            raise ValueError(f"class {spec.name!r}: objects have different numbers of keypoints")
        stack = np.stack(arrays)
        sigmas = (
            np.asarray(spec.sigmas, dtype=np.float64)
            if spec.sigmas
            else np.full(stack.shape[1], DEFAULT_KEYPOINT_SIGMA)
        )
        return float(oks_pairs(stack[ii], stack[jj], sigmas).sum())
    if spec.geometry == "polygon":
        points = [points_array(o) for o in objects]
        shapes = np.array([polygon_shape(p) for p in points], dtype=object)
        areas = shapely.area(shapes)
        inter = shapely.area(shapely.intersection(shapes[ii], shapes[jj]))
        union = areas[ii] + areas[jj] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
        iou = np.clip(iou, 0.0, 1.0)
        same = np.array(
            [
                np.array_equal(points[i], points[j])
                for i, j in zip(ii.tolist(), jj.tolist(), strict=True)
            ]
        )
        iou[same] = 1.0
        return float(iou.sum())
    if spec.geometry == "mask":
        return math.fsum(
            _mask_iou_any_size(objects[i], objects[j])
            for i, j in zip(ii.tolist(), jj.tolist(), strict=True)
        )
    kappa = spec.sigmas[0] if spec.sigmas else POLYLINE_KAPPA
    lines = [points_array(o) for o in objects]
    return math.fsum(
        polyline_similarity(lines[i], lines[j], kappa)
        for i, j in zip(ii.tolist(), jj.tolist(), strict=True)
    )


def geometry_alpha(
    items: Sequence[CampaignItem],
    classes: Mapping[str, ClassSpec],
    *,
    match_threshold: float = DEFAULT_MATCH_THRESHOLD,
) -> float:
    """Krippendorff's alpha of object annotations, with the distance ``1 - similarity``.

    Units are the clusters of matched objects (`geometry_units`). The values are objects, or
    "nothing" for a response that drew nothing in the cluster, with

        delta(x, y) = 1 - similarity(x, y)     (two objects; 1 if their classes differ),
        delta(x, nothing) = 1,    delta(nothing, nothing) = 0,

    so misses and extras count as total disagreement, and matched objects as much as their
    geometry differs. Every value is distinct, so the coincidence matrix is never built: with
    ``m_u`` the values of unit ``u``, ``n`` all pairable values and ``n_0`` the "nothing"s,

        D_o = (1 / n) sum_u (1 / (m_u - 1)) sum_{i != j in u} delta(v_i, v_j),
        D_e = (1 / (n (n - 1))) [n (n - 1) - n_0 (n_0 - 1) - sum_{i != j objects} sim(v_i, v_j)],

    the expected term pairing every value with every other across the whole campaign, as the
    method prescribes (objects of different items are compared in pixel coordinates, which is
    what makes chance agreement small). Only pairs whose bounding boxes meet can be similar
    (for the Gaussian similarities, whose boxes meet once widened to where the similarity
    falls below 1e-17), so those pairs are found with an R-tree instead of all ``n^2``.

    Returns:
        alpha, or ``nan`` when undefined (no unit with two values, or no expected disagreement).

    Raises:
        ValueError: malformed responses (see `quality.matching.prepare_item`).
    """
    alpha = GeometryAlpha(classes, match_threshold=match_threshold)
    alpha.add(items)
    return alpha.value()


class GeometryAlpha:
    """`geometry_alpha` accumulated over items given in batches (a campaign read in chunks).

    Each batch's units are clustered and their observed disagreement summed at once; what is
    kept across batches is what the expected term needs: the counts, and every matched object
    of a class with a geometry (for a tag class only its count, since all tags of a class are
    alike). ``value()`` is then exactly ``geometry_alpha`` of all the items together, up to the
    rounding of summing per batch.
    """

    def __init__(
        self, classes: Mapping[str, ClassSpec], *, match_threshold: float = DEFAULT_MATCH_THRESHOLD
    ) -> None:
        check_threshold(match_threshold)
        self._classes = classes
        self._threshold = match_threshold
        self._observed: list[float] = []  # one sum per batch
        self._n = 0
        self._nothing = 0
        self._objects: dict[str, list[Annotation]] = {}
        self._tags: Counter[str] = Counter()

    def add(self, items: Sequence[CampaignItem]) -> None:
        """Take one batch of items (raises ValueError on malformed responses, as the function)."""
        observed: list[float] = []
        for unit in geometry_units(items, self._classes, match_threshold=self._threshold):
            present = [v for v in unit.values if v is not None]
            m = len(unit.values)
            nothing = m - len(present)
            self._n += m
            self._nothing += nothing
            spec = self._classes[unit.label]
            if spec.geometry == "tag":
                self._tags[unit.label] += len(present)
            else:
                self._objects.setdefault(unit.label, []).extend(present)
            within = 2.0 * len(present) * nothing
            if len(present) > 1:
                item = items[unit.item]
                sim = similarity_matrix(present, spec, image_size=item.image_size)
                k = len(present)
                within += float(k * (k - 1) - (sim.sum() - np.trace(sim)))
            observed.append(within / (m - 1))
        self._observed.append(math.fsum(observed))

    def value(self) -> float:
        """Alpha of every item added so far, or ``nan`` when undefined."""
        n, n_nothing = self._n, self._nothing
        if n <= 1:
            return float("nan")
        similar = math.fsum(
            [
                *(
                    _sum_pairwise_similarity(objects, self._classes[label])
                    for label, objects in self._objects.items()
                ),
                *(count * (count - 1) / 2 for count in self._tags.values()),
            ]
        )
        expected = n * (n - 1) - n_nothing * (n_nothing - 1) - 2.0 * similar
        if expected <= 0:
            return float("nan")
        return 1.0 - (n - 1) * math.fsum(self._observed) / expected


# --- Cohen's kappa matrix --------------------------------------------------------------------


@dataclass(frozen=True)
class KappaMatrix:
    """Pairwise Cohen's kappa between annotators.

    Attributes:
        annotators: sorted annotator ids, the row and column order.
        kappa: ``(A, A)`` symmetric; ``nan`` on the diagonal, where two annotators share fewer
            than 2 items, or where kappa is undefined (both used one and the same label).
        shared: ``(A, A)`` number of items both labeled (diagonal: items each labeled).
    """

    annotators: tuple[Any, ...]
    kappa: NDArray[np.float64]
    shared: NDArray[np.int64]


def cohen_kappa_matrix(
    task_ids: ArrayLike, annotator_ids: ArrayLike, labels: ArrayLike
) -> KappaMatrix:
    """Cohen's kappa of every pair of annotators over the items both labeled, vectorized.

    For annotators ``a`` and ``b`` with ``N`` shared items, ``N_agree`` of them with the same
    label, and ``S = sum_c count_a(c) count_b(c)`` over those items,

        kappa = (N N_agree - S) / (N^2 - S)

    (`quality.agreement_metrics.cohen_kappa` for one pair). All co-labeled pairs are generated
    at once (every ordered pair of answers within a task), so the cost is linear in the
    answers times the annotators per task, whatever the number of annotators.

    Reference: J. Cohen (1960), "A coefficient of agreement for nominal scales".

    Raises:
        ValueError: arrays of different lengths or not 1-D; an annotator who labeled a task
            twice.
    """
    tasks = np.asarray(task_ids)
    workers = np.asarray(annotator_ids)
    values = np.asarray(labels)
    if not (tasks.ndim == workers.ndim == values.ndim == 1):
        raise ValueError("task ids, annotator ids and labels must be one-dimensional")
    if not (tasks.size == workers.size == values.size):
        raise ValueError(
            f"task ids, annotator ids and labels must have the same length, got {tasks.size}, "
            f"{workers.size} and {values.size}"
        )
    annotators, worker = np.unique(workers, return_inverse=True)
    _, task = np.unique(tasks, return_inverse=True)
    _, label = np.unique(values, return_inverse=True)
    worker, task, label = (x.reshape(-1).astype(np.int64) for x in (worker, task, label))
    n_workers = annotators.size
    n_labels = int(label.max()) + 1 if label.size else 0
    if np.unique(task * max(n_workers, 1) + worker).size != task.size:
        raise ValueError("an annotator labeled the same task twice; keep one answer per task")
    per_worker = np.bincount(worker, minlength=n_workers)
    order = np.argsort(task, kind="stable")
    worker, task, label = worker[order], task[order], label[order]
    sizes = np.bincount(task)
    sizes = sizes[sizes > 0]
    i, j = pairs_within_groups(sizes)
    kappa = np.full((n_workers, n_workers), np.nan)
    shared = np.zeros((n_workers, n_workers), dtype=np.int64)
    shared[np.diag_indices(n_workers)] = per_worker
    if i.size == 0:
        return KappaMatrix(tuple(annotators.tolist()), kappa, shared)
    wa, wb = worker[i], worker[j]
    forward = wa < wb
    wa, wb, la, lb = wa[forward], wb[forward], label[i][forward], label[j][forward]
    pair = wa * n_workers + wb
    pair_ids, pair = np.unique(pair, return_inverse=True)
    pair = pair.reshape(-1)
    n = np.bincount(pair).astype(np.float64)
    agree = np.bincount(pair, weights=(la == lb)).astype(np.float64)
    # S = sum_c count_a(c) count_b(c), from the sparse (pair, label) counts of each side.
    keys_a, count_a = np.unique(pair * n_labels + la, return_counts=True)
    keys_b, count_b = np.unique(pair * n_labels + lb, return_counts=True)
    common, at_a, at_b = np.intersect1d(keys_a, keys_b, assume_unique=True, return_indices=True)
    chance = np.bincount(
        common // n_labels, weights=count_a[at_a] * count_b[at_b], minlength=pair_ids.size
    )
    denominator = n * n - chance
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where((n >= 2) & (denominator != 0), (n * agree - chance) / denominator, np.nan)
    a_idx, b_idx = np.divmod(pair_ids, n_workers)
    kappa[a_idx, b_idx] = value
    kappa[b_idx, a_idx] = value
    shared[a_idx, b_idx] = n.astype(np.int64)
    shared[b_idx, a_idx] = n.astype(np.int64)
    return KappaMatrix(tuple(annotators.tolist()), kappa, shared)


# --- agreement with the consensus ------------------------------------------------------------


@dataclass(frozen=True)
class AnnotatorAgreement:
    """An annotator's mean agreement with the consensus over the items they answered."""

    annotator_id: str
    mean: float
    items: int


_CONSENSUS: Final = "\x00consensus"


def annotator_consensus_agreement(
    items: Sequence[CampaignItem],
    classes: Mapping[str, ClassSpec],
    *,
    multi_label: bool = False,
    match_threshold: float = DEFAULT_MATCH_THRESHOLD,
    quorum: float = 0.5,
    weights: Mapping[str, float] | None = None,
) -> dict[str, AnnotatorAgreement]:
    """Each annotator's mean agreement with the consensus, over the items they answered.

    Per item, each response is scored against the consensus as if the consensus were one more
    response: the pair agreement ``A(response, consensus)`` of `quality.matching` (Hungarian
    matching by class, matched similarity times attribute agreement over the objects of
    both). For single-label classification that is 1 when the annotator chose the consensus
    label and 0 otherwise, i.e. their accuracy against the majority. The consensus includes
    the annotator's own answer, as majority-vote accuracy usually does.

    Items without a precomputed ``consensus`` get one from `quality.geometry_consensus.consensus`
    with ``quorum``, ``weights`` and ``multi_label``.

    Returns:
        annotator id -> `AnnotatorAgreement`, sorted by annotator id.
    """
    check_threshold(match_threshold)
    scores: dict[str, list[float]] = {}
    for item in items:
        if not item.responses:
            continue
        agreed = item.consensus
        if agreed is None:
            agreed = consensus(
                item.responses,
                classes,
                image_size=item.image_size,
                weights=weights,
                quorum=quorum,
                multi_label=multi_label,
            )
        reference = ResponseObjects(
            _CONSENSUS,
            _CONSENSUS,
            [
                Annotation(_CONSENSUS, _CONSENSUS, i, o.label, o.geometry, o.data, o.attributes)
                for i, o in enumerate(agreed)
            ],
        )
        everyone = [*item.responses, reference]
        prepared = prepare_item(everyone, classes, image_size=item.image_size)
        last = len(everyone) - 1
        for r, response in enumerate(item.responses):
            pair = pair_agreement(r, last, everyone, prepared, match_threshold=match_threshold)
            scores.setdefault(response.annotator_id, []).append(pair.score)
    return {
        annotator: AnnotatorAgreement(annotator, math.fsum(s) / len(s), len(s))
        for annotator, s in sorted(scores.items())
    }
