"""The consensus of one item's object annotations: cluster, vote, fuse.

Tags. Decided exactly like a classification item, by `quality.classification.majority_vote`:
with ``multi_label`` each tag is in the consensus when a strict (weighted) majority of the
responses gave it; otherwise the plurality tag wins, ties going to ``class_order``. (When the
ontology also has other geometry, a single-label response without a tag votes for "no tag".)
``quorum`` does not apply to tags, so classification campaigns behave as before. A tag's
confidence is its vote share.

Other geometry, class by class:

1. Cluster. The responses are taken in a fixed order (higher weight first, then response id,
   so the input order does not matter). The first response's objects open one cluster each;
   each later response's objects are assigned to the clusters by the Hungarian algorithm on
   average linkage (the mean similarity of the object to the cluster's members), a pair being
   allowed only at ``match_threshold`` or above; an object left over opens a new cluster. A
   cluster thus holds at most one object per response.
2. Quorum. With ``W`` the total weight of all responses (the empty ones included: they saw
   nothing there), a cluster is kept when ``sum of its responses' weights / W >= quorum``:
   objects seen by fewer than a quorum are dropped.
3. Fuse the members' geometry (weights ``w`` are the members' annotator weights):

   * box: weighted mean of centre, width, height and angle. A rotated box ``(w, h, t)`` is the
     box ``(h, w, t + 90)`` and ``(w, h, t + 180)``; each member is first rewritten in the form
     whose angle is closest to the first member's, so that averaging does not mix them.
   * polygon: pixel voting. The members are rasterized on a common grid over their union
     bounding box (clipped to the image), at a resolution of at least 1 px and up to 1/8 px so
     that the grid is about 256 cells across (sub-pixel accuracy on small objects); a cell is
     in the consensus when members of at least half the members' weight cover it, and the
     voted raster is traced back to a polygon (`quality.raster.vectorize_largest`: marching
     squares, largest component, holes filled, Douglas-Peucker at 0.35 cells).
   * mask: pixel voting on the masks' own pixels, same rule; the result is RLE with list counts.
   * keypoints: per point, a vote on visibility (labeled if the members that labeled it weigh
     at least as much as those who did not; then 2 "visible" unless the "hidden" votes weigh
     more), and the weighted median of x and y over the members that labeled it (the median,
     not the mean, so one misplaced point does not drag the consensus away).
   * polyline: each member is resampled at the same number of points, evenly by arc length,
     and reversed if it was drawn the other way from the first member; the consensus is the
     weighted median point by point, simplified by Douglas-Peucker (0.5 px at most).

   When every member has the same geometry, that geometry is the consensus as is (and not,
   say, a re-rasterized copy of a polygon). If voting leaves nothing (possible only with
   barely overlapping members), the member most similar to the others is the consensus.
4. Attributes: per attribute, the (weighted) majority of the members. An attribute is given
   when the members that give it weigh at least half; its value is the weighted plurality
   value (ties: the earlier member in the fixed order), or for ``multi`` attributes the options
   chosen by a strict majority of those members, in order of first appearance.

Each `ConsensusObject` carries ``confidence = (weight share of its responses) x (weighted mean
similarity of its members to it)`` and the ids of the responses and objects it came from.
Objects come out in the order of the first (in the fixed order) response that drew them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import shapely
from numpy.typing import NDArray

from quality.base import TIE_RTOL
from quality.classification import Vote, majority_vote
from quality.matching import (
    DEFAULT_MATCH_THRESHOLD,
    ItemObjects,
    agreement_of,
    check_threshold,
    match_block,
    prepare_item,
    response_weights,
)
from quality.objects import (
    Annotation,
    ClassSpec,
    ConsensusObject,
    ItemAgreement,
    ResponseObjects,
)
from quality.raster import rasterize_polygon, vectorize_largest
from quality.rle import rle_decode, rle_encode
from quality.similarity import (
    arc_samples,
    box_iou_pairs,
    keypoints_array,
    points_array,
    polyline_length,
    similarity_matrix,
)

__all__ = [
    "ItemAssessment",
    "assess_item",
    "cluster_objects",
    "consensus",
    "consensus_of",
    "majority_attributes",
    "weighted_median",
]

RASTER_CELLS: Final = 256
"""Polygon pixel voting aims for a grid this many cells across the objects' bounding box."""
MAX_RASTER_SCALE: Final = 8.0
"""...but never finer than 1/8 px."""
TRACE_TOLERANCE: Final = 0.35
"""Douglas-Peucker tolerance, in grid cells, when tracing a voted raster back to a polygon."""
POLYLINE_MAX_SAMPLES: Final = 1000
_NO_TAG: Final = "\x00no tag"  # cannot be a class name, so never collides with one


def _at_least(value: float, bound: float) -> bool:
    """``value >= bound`` up to `TIE_RTOL`: float weights must not make ties order-dependent."""
    return value >= bound - TIE_RTOL * abs(bound)


def _weighted_mean(values: NDArray[np.float64], weights: NDArray[np.float64]) -> float:
    """Weighted mean; a plain mean when the weights sum to zero."""
    total = float(weights.sum())
    if total > 0:
        return float(np.dot(weights, values) / total)
    return float(values.mean())


def weighted_median(values: NDArray[np.float64], weights: NDArray[np.float64]) -> float:
    """The weighted median: the value where the cumulative weight reaches half the total.

    When it reaches exactly half (up to `TIE_RTOL`) the two middle values are averaged, so with
    equal weights this is ``numpy.median``. Zero total weight counts every value equally.
    """
    order = np.argsort(values, kind="stable")
    v = values[order]
    w = weights[order]
    if not w.sum() > 0:
        w = np.ones_like(w)
    cumulative = np.cumsum(w)
    half = cumulative[-1] / 2
    k = int(np.searchsorted(cumulative, half - TIE_RTOL * half, side="left"))
    k = min(k, v.size - 1)
    if k + 1 < v.size and math.isclose(cumulative[k], half, rel_tol=TIE_RTOL, abs_tol=0.0):
        return float((v[k] + v[k + 1]) / 2)
    return float(v[k])


def _key(value: Any) -> Any:
    """A hashable stand-in for an attribute value (lists compare as tuples)."""
    if isinstance(value, list | tuple):
        return ("__seq__", tuple(_key(v) for v in value))
    if isinstance(value, dict):
        return ("__map__", tuple(sorted((str(k), _key(v)) for k, v in value.items())))
    try:
        hash(value)
    except TypeError:
        return ("__repr__", repr(value))
    return value


def majority_attributes(
    members: Sequence[Annotation], weights: Sequence[float], kinds: Mapping[str, str]
) -> dict[str, Any]:
    """The majority value of each attribute over ``members`` (see the module docstring)."""
    if all(not m.attributes for m in members):
        return {}
    w = list(weights) if math.fsum(weights) > 0 else [1.0] * len(members)
    total = math.fsum(w)
    names: list[str] = []
    for m in members:
        names.extend(n for n in m.attributes if n not in names)
    out: dict[str, Any] = {}
    for name in names:
        present = [
            (m.attributes[name], wm)
            for m, wm in zip(members, w, strict=True)
            if m.attributes.get(name) is not None
        ]
        present_weight = math.fsum(wm for _, wm in present)
        if not present or not _at_least(present_weight, total / 2):
            continue
        kind = kinds.get(name)
        is_multi = kind == "multi" or (
            kind is None and all(isinstance(v, list | tuple) for v, _ in present)
        )
        if is_multi:
            option_weight: dict[Any, list[float]] = {}
            first: dict[Any, Any] = {}
            for value, wm in present:
                options = value if isinstance(value, list | tuple | set) else [value]
                for option in dict.fromkeys(options):
                    option_weight.setdefault(_key(option), []).append(wm)
                    first.setdefault(_key(option), option)
            chosen = []
            for key, ws in option_weight.items():
                share = math.fsum(ws) / present_weight if present_weight > 0 else 0.0
                if share > 0.5 and not math.isclose(share, 0.5, rel_tol=TIE_RTOL, abs_tol=0.0):
                    chosen.append(first[key])
            out[name] = chosen
        else:
            mass: dict[Any, list[float]] = {}
            original: dict[Any, Any] = {}
            for value, wm in present:
                mass.setdefault(_key(value), []).append(wm)
                original.setdefault(_key(value), value)
            sums = {key: math.fsum(ws) for key, ws in mass.items()}
            best = max(sums.values())
            # dicts keep insertion order: the first value (in the fixed order) among the tied.
            winner = next(key for key, s in sums.items() if _at_least(s, best))
            out[name] = original[winner]
    return out


# --- fusing one cluster's geometry -----------------------------------------------------------


def _same_data(members: Sequence[Annotation]) -> bool:
    first = members[0].data
    return all(m.data == first for m in members[1:])


def _plain(value: Any) -> Any:
    """A JSON-ready deep copy (lists, dicts, Python numbers)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _medoid(sim: NDArray[np.float64], weights: NDArray[np.float64]) -> int:
    """The member with the largest weighted similarity to the others (first on ties)."""
    scores = sim @ weights
    return int(np.argmax(scores >= scores.max() - TIE_RTOL * abs(scores.max())))


def _fuse_polygon(
    members: Sequence[Annotation],
    w: NDArray[np.float64],
    image_size: tuple[int, int] | None,
) -> dict[str, Any] | None:
    points = [points_array(m) for m in members]
    stacked = np.vstack(points)
    lo = stacked.min(axis=0)
    hi = stacked.max(axis=0)
    if image_size is not None:
        lo = np.maximum(lo, 0.0)
        hi = np.minimum(hi, np.asarray(image_size, dtype=np.float64))
    if not (hi[0] > lo[0] and hi[1] > lo[1]):
        return None  # no area, or entirely outside the image
    extent = float(max(hi[0] - lo[0], hi[1] - lo[1]))
    scale = min(MAX_RASTER_SCALE, max(1.0, RASTER_CELLS / extent))
    origin = np.floor(lo)
    cols = math.ceil((hi[0] - origin[0]) * scale)
    rows = math.ceil((hi[1] - origin[1]) * scale)
    votes = np.zeros((rows, cols), dtype=np.float64)
    for pts, wm in zip(points, w, strict=True):
        votes += wm * rasterize_polygon((pts - origin) * scale, (rows, cols))
    inside = votes >= w.sum() / 2 * (1 - TIE_RTOL)
    ring = vectorize_largest(inside, TRACE_TOLERANCE)
    if ring is None:
        return None
    xy = origin + (ring + 0.5) / scale
    return {"points": xy.tolist()}


def _fuse_mask(
    members: Sequence[Annotation],
    w: NDArray[np.float64],
    image_size: tuple[int, int] | None,
) -> dict[str, Any] | None:
    decoded = [rle_decode(m.data["rle"]) for m in members]
    if len({d.shape for d in decoded}) > 1:
        raise ValueError("masks of one item have different sizes")
    votes = np.zeros(decoded[0].shape, dtype=np.float64)
    for mask, wm in zip(decoded, w, strict=True):
        votes += wm * mask
    inside = votes >= w.sum() / 2 * (1 - TIE_RTOL)
    if not inside.any():
        return None
    return {"rle": rle_encode(inside)}


def _fuse_keypoints(
    members: Sequence[Annotation], w: NDArray[np.float64], spec: ClassSpec
) -> dict[str, Any]:
    n_points = len(spec.sigmas) if spec.sigmas else None
    k = np.stack([keypoints_array(m, n_points) for m in members])  # (m, P, 3)
    out: list[list[float | int]] = []
    for p in range(k.shape[1]):
        v = k[:, p, 2]
        labeled = v > 0
        w_labeled = float(w[labeled].sum())
        w_unlabeled = float(w[~labeled].sum())
        if not labeled.any() or not _at_least(w_labeled, w_unlabeled):
            out.append([0.0, 0.0, 0])
            continue
        visible = 2 if _at_least(float(w[v == 2].sum()), float(w[v == 1].sum())) else 1
        x = weighted_median(k[labeled, p, 0], w[labeled])
        y = weighted_median(k[labeled, p, 1], w[labeled])
        out.append([x, y, visible])
    return {"points": out}


def _fuse_polyline(members: Sequence[Annotation], w: NDArray[np.float64]) -> dict[str, Any]:
    lines = [points_array(m) for m in members]
    longest = max(polyline_length(line) for line in lines)
    n = int(
        min(POLYLINE_MAX_SAMPLES, max(max(line.shape[0] for line in lines), math.ceil(longest) + 1))
    )
    n = max(n, 2)
    samples = np.stack([arc_samples(line, n - 1) for line in lines])  # (m, n, 2)
    reference = samples[0]
    for i in range(1, samples.shape[0]):
        forward = np.abs(samples[i] - reference).sum()
        backward = np.abs(samples[i, ::-1] - reference).sum()
        if backward < forward:
            samples[i] = samples[i, ::-1]
    median = np.array(
        [
            [weighted_median(samples[:, j, 0], w), weighted_median(samples[:, j, 1], w)]
            for j in range(n)
        ]
    )
    tolerance = min(0.5, 0.01 * max(longest, 1e-9))
    simplified = shapely.simplify(shapely.LineString(median), tolerance, preserve_topology=False)
    coords = np.asarray(shapely.get_coordinates(simplified), dtype=np.float64)
    if coords.shape[0] < 2:
        coords = median[[0, -1]]
    return {"points": coords.tolist()}


def _fuse_boxes(
    params: NDArray[np.float64], clusters: list[list[int]], w_obj: NDArray[np.float64]
) -> tuple[NDArray[np.float64], list[bool], list[float]]:
    """Fuse box clusters, vectorized over all of them.

    ``params`` and ``w_obj`` cover all of the item's objects; clusters hold indices into them.
    Returns each cluster's ``(cx, cy, w, h, angle)``, whether all its members were the same
    box, and the weighted mean IoU of its members with it.
    """
    n_clusters = len(clusters)
    rows_list = [c for c, members in enumerate(clusters) for _ in members]
    cols_list = [i for members in clusters for i in members]
    rows = np.array(rows_list)
    cols = np.array(cols_list)
    first_of_row = np.array([clusters[c][0] for c in rows_list])
    members = params[cols]
    reference = params[first_of_row]
    # One row of normalized member weights per cluster (equal weights if they sum to 0).
    mix = np.zeros((n_clusters, cols.size))
    mix[rows, np.arange(cols.size)] = w_obj[cols]
    row_sum = mix.sum(axis=1)
    if not row_sum.all():
        mix[rows, np.arange(cols.size)] = np.where(row_sum[rows] > 0, w_obj[cols], 1.0)
        row_sum = mix.sum(axis=1)
    mix /= row_sum[:, None]
    aligned = members
    rotated = bool(members[:, 4].any())
    if rotated:
        # Rewrite each box as (w, h, t + 90 k), swapping w and h for odd k, with the k that
        # brings its angle closest to its cluster's first member.
        turns = np.round((reference[:, 4] - members[:, 4]) / 90.0)
        odd = np.mod(turns, 2) == 1
        aligned = np.column_stack(
            (
                members[:, 0],
                members[:, 1],
                np.where(odd, members[:, 3], members[:, 2]),
                np.where(odd, members[:, 2], members[:, 3]),
                members[:, 4] + 90.0 * turns,
            )
        )
    fused = mix @ aligned
    if rotated:
        fused[:, 4] = np.mod(fused[:, 4], 360.0)
    # Exactly the members' box when they all drew the same one (a mean of equal floats can be
    # off in the last bit).
    differs = (members != reference).any(axis=1)
    identical = [True] * n_clusters
    for r in rows[differs].tolist():
        identical[r] = False
    for c, same in enumerate(identical):
        if same:
            fused[c] = params[clusters[c][0]]
    fit = mix @ box_iou_pairs(fused[rows], members)
    result: list[float] = fit.tolist()
    return fused, identical, result


# --- clustering ------------------------------------------------------------------------------


def cluster_objects(
    item: ItemObjects,
    order: Sequence[int],
    threshold: float,
    eligible: NDArray[np.bool_] | None = None,
) -> list[list[int]]:
    """Sequential average-linkage clustering of an item's objects (module docstring, step 1).

    Clusters are lists of object indices, in the fixed response ``order``. Similarities are 0
    between classes and a join needs a mean similarity of at least ``threshold`` > 0, so every
    cluster holds one class. ``eligible`` restricts the objects clustered.
    """
    n = len(item.objects)
    clusters: list[list[int]] = []
    # membership[c, i] = 1 when object i is in cluster c; there are at most n clusters.
    membership = np.zeros((n, n))
    sizes = np.zeros(n)
    for r in order:
        span = item.by_response[r]
        if eligible is None or eligible[span.start : span.stop].all():
            objs = np.arange(span.start, span.stop)
            columns = item.sim[:, span.start : span.stop]
        else:
            objs = np.arange(span.start, span.stop)[eligible[span.start : span.stop]]
            columns = item.sim[:, objs]
        if objs.size == 0:
            continue
        taken: set[int] = set()
        k = len(clusters)
        if k:
            # The same Hungarian step as item agreement, on cluster-to-object linkage.
            linkage = (membership[:k] @ columns) / sizes[:k, None]
            for c, j, _ in match_block(linkage, threshold):
                clusters[c].append(int(objs[j]))
                membership[c, objs[j]] = 1.0
                sizes[c] += 1
                taken.add(j)
        for j, o in enumerate(objs.tolist()):
            if j not in taken:
                membership[len(clusters), o] = 1.0
                sizes[len(clusters)] = 1
                clusters.append([o])
    return clusters


# --- tags ------------------------------------------------------------------------------------


def _tag_consensus(
    responses: Sequence[ResponseObjects],
    classes: Mapping[str, ClassSpec],
    item: ItemObjects,
    rank: Sequence[str],
    weights: Mapping[str, float] | None,
    w: Sequence[float],
    multi_label: bool,
) -> list[tuple[list[int], float]]:
    """``(tag object indices in the fixed order, confidence)`` of each consensus tag."""
    tag_labels = [label for label, spec in item.specs.items() if spec.geometry == "tag"]
    if not tag_labels:
        return []
    pure = all(spec.geometry == "tag" for spec in classes.values())
    tags_of: list[dict[str, int]] = [{} for _ in responses]
    for label in tag_labels:
        for i in item.by_label[label].tolist():
            tags_of[int(item.response[i])].setdefault(label, i)
    votes: list[Vote] = []
    order = list(rank)
    for response, tags in zip(responses, tags_of, strict=True):
        labels = frozenset(tags)
        if not multi_label and not pure:
            if len(labels) > 1:
                raise ValueError(
                    f"response {response.response_id!r} gives {len(labels)} tags, but the "
                    "ontology is single-label"
                )
            labels = labels or frozenset((_NO_TAG,))
        votes.append(Vote(response.annotator_id, labels, response.response_id))
    if not multi_label and not pure:
        order.append(_NO_TAG)
    result = majority_vote(votes, multi_label=multi_label, class_order=order, weights=weights)
    total = math.fsum(w)
    out = []
    for label in result.labels:
        if label == _NO_TAG:
            continue
        positions = [r for r, tags in enumerate(tags_of) if label in tags]
        positions.sort(key=lambda r: (-w[r], responses[r].response_id, r))
        members = [tags_of[r][label] for r in positions]
        if multi_label:
            share = math.fsum(w[r] for r in positions) / total
        else:
            share = result.confidence
        out.append((members, share))
    return out


# --- the entry point -------------------------------------------------------------------------


def consensus(
    responses: Sequence[ResponseObjects],
    classes: Mapping[str, ClassSpec],
    *,
    image_size: tuple[int, int] | None,
    weights: Mapping[str, float] | None = None,
    quorum: float = 0.5,
    multi_label: bool = False,
    class_order: Sequence[str] = (),
    match_threshold: float = DEFAULT_MATCH_THRESHOLD,
) -> list[ConsensusObject]:
    """The consensus objects of one item (the method is in the module docstring).

    Args:
        responses: the item's responses, each possibly empty.
        classes: the ontology, class name -> `ClassSpec`.
        image_size: ``(width, height)``, or None; polygon voting is clipped to it, and masks
            must have this size. Without it polygons are voted over their union bounding box.
        weights: optional non-negative weight per annotator id (e.g. an accuracy estimate);
            every annotator must have one. They weigh votes, quorum shares and averages.
        quorum: the weight share of the responses that must have drawn an object for it to be
            kept, in [0, 1].
        multi_label: whether a response may carry several tags.
        class_order: the ontology's class order, for tag ties; defaults to ``classes``' order.
        match_threshold: the similarity an object needs to join a cluster, in (0, 1].

    Returns:
        The consensus objects; empty when nobody drew anything that reached the quorum.

    Raises:
        ValueError: no responses; malformed objects (see `quality.matching.prepare_item`);
            a missing, negative or non-finite weight, or all weights zero; ``quorum`` outside
            [0, 1]; ``match_threshold`` outside (0, 1]; a tag label not in ``class_order``;
            a single-label response with several tags.
    """
    w = _check_consensus_input(responses, weights, quorum, match_threshold)
    item = prepare_item(responses, classes, image_size=image_size)
    return consensus_of(
        item,
        responses,
        classes,
        w,
        image_size=image_size,
        weights=weights,
        quorum=quorum,
        multi_label=multi_label,
        class_order=class_order,
        match_threshold=match_threshold,
    )


def _check_consensus_input(
    responses: Sequence[ResponseObjects],
    weights: Mapping[str, float] | None,
    quorum: float,
    match_threshold: float,
) -> list[float]:
    check_threshold(match_threshold)
    if not (0.0 <= quorum <= 1.0):
        raise ValueError(f"quorum must be in [0, 1], got {quorum}")
    if not responses:
        raise ValueError("no responses: consensus is undefined for an unanswered item")
    w = response_weights(responses, weights)
    if math.fsum(w) <= 0:
        raise ValueError("the responses' weights sum to zero: no annotator counts")
    return w


def consensus_of(
    item: ItemObjects,
    responses: Sequence[ResponseObjects],
    classes: Mapping[str, ClassSpec],
    w: Sequence[float],
    *,
    image_size: tuple[int, int] | None,
    weights: Mapping[str, float] | None,
    quorum: float,
    multi_label: bool,
    class_order: Sequence[str],
    match_threshold: float,
) -> list[ConsensusObject]:
    """`consensus` on an already prepared item, with one weight per response."""
    total = math.fsum(w)
    rank = list(class_order) if class_order else list(classes)
    objects = item.objects
    order = sorted(range(len(responses)), key=lambda r: (-w[r], responses[r].response_id, r))
    position = [0] * len(responses)
    for p, r in enumerate(order):
        position[r] = p
    found: list[tuple[tuple[int, int], ConsensusObject]] = []
    owner_of = item.response.tolist()
    w_of = [w[r] for r in owner_of]  # each object's weight: its response's

    def emit(members: list[int], data: Mapping[str, Any], confidence: float) -> None:
        # ``members`` are object indices in the fixed order; support lists them in input order.
        first = objects[members[0]]
        in_input_order = sorted((owner_of[i], i) for i in members)
        attributes: dict[str, Any] = {}
        if any(objects[i].attributes for i in members):
            attributes = majority_attributes(
                [objects[i] for i in members],
                [w_of[i] for i in members],
                item.specs[first.label].attribute_kinds,
            )
        obj = ConsensusObject(
            label=first.label,
            geometry=first.geometry,
            data=data,
            attributes=attributes,
            confidence=min(1.0, max(0.0, confidence)),
            support=tuple(responses[r].response_id for r, _ in in_input_order),
            members=tuple((objects[i].response_id, objects[i].index) for _, i in in_input_order),
        )
        found.append(((position[owner_of[members[0]]], first.index), obj))

    for members, share in _tag_consensus(responses, classes, item, rank, weights, w, multi_label):
        emit(members, {}, share)

    eligible = [o.geometry != "tag" for o in objects]
    if any(eligible):
        clusters = cluster_objects(
            item, order, match_threshold, None if all(eligible) else np.asarray(eligible)
        )
        shares = [math.fsum(w_of[i] for i in c) / total for c in clusters]
        kept = [(c, sh) for c, sh in zip(clusters, shares, strict=True) if _at_least(sh, quorum)]
        boxes = [(c, sh) for c, sh in kept if objects[c[0]].geometry == "box"]
        if boxes and item.box_params is not None:
            fused_boxes, identical, fits = _fuse_boxes(
                item.box_params, [c for c, _ in boxes], np.asarray(w_of)
            )
            for k, (c, share) in enumerate(boxes):
                if identical[k]:
                    ref = objects[c[0]].data
                    x, y, bw, bh = (float(ref[key]) for key in ("x", "y", "w", "h"))
                    angle = float(fused_boxes[k, 4])
                else:
                    cx, cy, bw, bh, angle = fused_boxes[k].tolist()
                    x, y = cx - bw / 2, cy - bh / 2
                data = {"x": x, "y": y, "w": bw, "h": bh, "angle": angle}
                emit(c, data, share * fits[k])
        for c, share in kept:
            first = objects[c[0]]
            if first.geometry == "box":
                continue
            spec = item.specs[first.label]
            drawn = [objects[i] for i in c]
            cw = np.asarray([w_of[i] for i in c])
            fused = _fuse(spec, drawn, cw, item.sim[np.ix_(c, c)], image_size)
            probe = Annotation("", "", -1, first.label, spec.geometry, fused)
            sims = similarity_matrix([probe, *drawn], spec, image_size=image_size)[0, 1:]
            emit(c, fused, share * _weighted_mean(sims, cw))

    found.sort(key=lambda entry: entry[0])
    return [obj for _, obj in found]


def _fuse(
    spec: ClassSpec,
    members: Sequence[Annotation],
    w: NDArray[np.float64],
    sim: NDArray[np.float64],
    image_size: tuple[int, int] | None,
) -> dict[str, Any]:
    """The fused geometry data of one cluster of a non-box, non-tag class."""
    if _same_data(members):
        data = _plain(members[0].data)
        if spec.geometry == "mask":
            data["rle"] = rle_encode(rle_decode(members[0].data["rle"]))
        return dict(data)
    weights = w if w.sum() > 0 else np.ones_like(w)
    fused: dict[str, Any] | None
    if spec.geometry == "polygon":
        fused = _fuse_polygon(members, weights, image_size)
    elif spec.geometry == "mask":
        fused = _fuse_mask(members, weights, image_size)
    elif spec.geometry == "keypoints":
        fused = _fuse_keypoints(members, weights, spec)
    elif spec.geometry == "polyline":
        fused = _fuse_polyline(members, weights)
    else:  # pragma: no cover - boxes and tags are handled by the caller
        raise ValueError(f"no fusion for geometry {spec.geometry!r}")
    if fused is None:
        medoid = members[_medoid(sim, weights)]
        fused = _plain(medoid.data)
        if spec.geometry == "mask":
            fused["rle"] = rle_encode(rle_decode(medoid.data["rle"]))
    return fused


@dataclass(frozen=True)
class ItemAssessment:
    """An item's agreement and consensus, from one pass over its objects."""

    agreement: ItemAgreement
    consensus: list[ConsensusObject]


def assess_item(
    responses: Sequence[ResponseObjects],
    classes: Mapping[str, ClassSpec],
    *,
    image_size: tuple[int, int] | None,
    weights: Mapping[str, float] | None = None,
    quorum: float = 0.5,
    multi_label: bool = False,
    class_order: Sequence[str] = (),
    match_threshold: float = DEFAULT_MATCH_THRESHOLD,
) -> ItemAssessment:
    """`quality.matching.item_agreement` and `consensus` of one item at once.

    The same results as the two calls with the same arguments (``weights`` weigh both), but the
    objects are validated and their similarities computed once instead of twice, which is most
    of the cost for boxes.
    """
    w = _check_consensus_input(responses, weights, quorum, match_threshold)
    item = prepare_item(responses, classes, image_size=image_size)
    return ItemAssessment(
        agreement=agreement_of(item, responses, classes, w, multi_label, match_threshold),
        consensus=consensus_of(
            item,
            responses,
            classes,
            w,
            image_size=image_size,
            weights=weights,
            quorum=quorum,
            multi_label=multi_label,
            class_order=class_order,
            match_threshold=match_threshold,
        ),
    )
