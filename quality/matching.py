"""Per-item agreement of object annotations: match objects across responses, then score.

Matching. Two responses' objects are matched class by class with the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``), maximizing the total geometric similarity
(`quality.similarity`). Objects of different classes never match, and a pair only counts as
matched when its similarity reaches ``match_threshold`` (0.5 by default, COCO's usual IoU and
OKS threshold for a true positive), so two boxes on neighbouring objects are not "matched with
IoU 0.1".

Pair agreement. For responses ``a`` and ``b`` with ``n_a`` and ``n_b`` objects and the matched
pairs ``M``,

    A(a, b) = sum_{(i, j) in M} s_ij q_ij / (n_a + n_b - |M|),

where ``s_ij`` is the geometric similarity of the pair and ``q_ij`` their attribute agreement
(`quality.similarity.attribute_agreement`, 1 without attributes). The denominator counts every
object of either response once, matched pairs as one: it is the Jaccard index of the two object
sets with each matched pair weighted by how well it agrees. So an object that only one of them
drew (a miss, an extra, or a class disagreement, since objects of different classes do not
match) costs as much as a matched pair that agrees not at all, and ``A = 1`` exactly when both
drew the same objects, identically, with the same attributes. Two empty responses agree (1.0).

Item agreement. With annotator weights ``w`` (all 1 by default),

    score = sum_{a < b} w_a w_b A(a, b) / sum_{a < b} w_a w_b,

the (weighted) mean pair agreement; one response gives 1.0. For tags, ``A(a, b)`` is exactly
the Jaccard index of the two tag sets, so a multi-label classification scores exactly as
`quality.classification.item_agreement` (mean pairwise Jaccard).

Single-label classification (every class a tag and ``multi_label`` false) is the one special
case. There ``A(a, b)`` is 1 when two responses chose the same class and 0 otherwise, and the
mean over pairs would be Fleiss' per-item agreement (1/3 for "2 of 3 agree"), while
classification campaigns gate on the plurality share (2/3). The plurality share is the same
pair matrix read differently: it is the agreement of the most central response,

    score = max_a sum_b w_b A(a, b) / sum_b w_b,      A(a, a) = 1,

since a response in the plurality agrees with exactly the plurality's votes. That is what this
case returns, so it equals `quality.classification.item_agreement` to the last bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

from quality.objects import (
    Annotation,
    ClassSpec,
    ItemAgreement,
    PairAgreement,
    ResponseObjects,
)
from quality.similarity import (
    attribute_agreement,
    box_iou_matrix,
    box_params_array,
    similarity_matrix,
)

__all__ = [
    "DEFAULT_MATCH_THRESHOLD",
    "ItemObjects",
    "agreement_of",
    "item_agreement",
    "match_block",
    "pair_agreement",
    "prepare_item",
]

DEFAULT_MATCH_THRESHOLD: Final = 0.5


@dataclass(frozen=True)
class ItemObjects:
    """All objects of one item's responses, validated, with their similarity matrix.

    Attributes:
        objects: every object, response by response, in input order.
        response: the input position of each object's response.
        sim: ``(n, n)`` similarities, exactly symmetric, 1 on the diagonal and 0 between
            objects of different classes, so matching on it is class-aware by construction.
        by_response: object indices of each response, by input position; a response's
            objects are contiguous, so each is a ``range``.
        by_label: object indices of each class present, in object order.
        specs: the class of each label present.
        box_params: ``(n, 5)`` rows ``(cx, cy, w, h, angle)`` for boxes (nan for other
            objects), or None when the item has no box.
    """

    objects: list[Annotation]
    response: NDArray[np.int64]
    sim: NDArray[np.float64]
    by_response: list[range]
    by_label: dict[str, NDArray[np.int64]]
    specs: dict[str, ClassSpec]
    box_params: NDArray[np.float64] | None = None


def check_threshold(match_threshold: float) -> None:
    if not (0.0 < match_threshold <= 1.0):
        raise ValueError(f"match_threshold must be in (0, 1], got {match_threshold}")


def response_weights(
    responses: Sequence[ResponseObjects], weights: Mapping[str, float] | None
) -> list[float]:
    """One weight per response, that of its annotator; all 1.0 without ``weights``."""
    if weights is None:
        return [1.0] * len(responses)
    out: list[float] = []
    for response in responses:
        try:
            weight = float(weights[response.annotator_id])
        except KeyError:
            raise ValueError(f"no weight for annotator {response.annotator_id!r}") from None
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(
                f"weight of annotator {response.annotator_id!r} must be finite and >= 0, "
                f"got {weight}"
            )
        out.append(weight)
    return out


def prepare_item(
    responses: Sequence[ResponseObjects],
    classes: Mapping[str, ClassSpec],
    *,
    image_size: tuple[int, int] | None,
) -> ItemObjects:
    """Validate an item's responses and compute the similarity of every pair of objects.

    Boxes of all classes are parsed and compared in one vectorized pass (they are the
    high-volume case); other classes get one `similarity_matrix` each.

    Raises:
        ValueError: an object whose class is not in ``classes``, whose geometry is not its
            class's, whose response or annotator id is not its response's, or whose data is
            malformed; a response id given twice; an image size that is not positive.
    """
    if image_size is not None and (
        len(image_size) != 2 or image_size[0] <= 0 or image_size[1] <= 0
    ):
        raise ValueError(f"image_size must be (width, height) > 0, got {image_size!r}")
    seen: set[str] = set()
    objects: list[Annotation] = []
    owner: list[int] = []
    by_response: list[range] = []
    by_label_lists: dict[str, list[int]] = {}
    for position, response in enumerate(responses):
        if response.response_id in seen:
            raise ValueError(f"response {response.response_id!r} is given twice")
        seen.add(response.response_id)
        start = len(objects)
        for obj in response.objects:
            if obj.response_id != response.response_id or obj.annotator_id != response.annotator_id:
                raise ValueError(
                    f"object {obj.index} of response {response.response_id!r} names response "
                    f"{obj.response_id!r} by {obj.annotator_id!r}"
                )
            spec = classes.get(obj.label)
            if spec is None:
                raise ValueError(
                    f"object {obj.index} of response {obj.response_id!r} has class "
                    f"{obj.label!r}, which is not in the ontology"
                )
            if obj.geometry != spec.geometry:
                raise ValueError(
                    f"object {obj.index} of response {obj.response_id!r} is a {obj.geometry}, "
                    f"but class {spec.name!r} is drawn as {spec.geometry}"
                )
            by_label_lists.setdefault(obj.label, []).append(len(objects))
            objects.append(obj)
            owner.append(position)
        by_response.append(range(start, len(objects)))
    n = len(objects)
    by_label = {label: np.asarray(ix, dtype=np.int64) for label, ix in by_label_lists.items()}
    specs = {label: classes[label] for label in by_label}
    box_labels = [label for label in by_label if specs[label].geometry == "box"]
    box_params: NDArray[np.float64] | None = None
    if len(box_labels) == len(by_label) and n:
        # Only boxes: one matrix for all, zeroed between classes.
        box_params = box_params_array(objects)
        codes = np.empty(n, dtype=np.int64)
        for code, label in enumerate(box_labels):
            codes[by_label[label]] = code
        sim = box_iou_matrix(box_params, box_params)
        sim = np.where(codes[:, None] == codes[None, :], sim, 0.0)
        if box_params[:, 4].any():  # shapely's intersections: mirror to be exactly symmetric
            upper = np.triu(sim, 1)
            sim = upper + upper.T + np.eye(n)
    else:
        sim = np.eye(n, dtype=np.float64)
        for label, ix in by_label.items():
            block = similarity_matrix([objects[i] for i in ix], specs[label], image_size=image_size)
            sim[np.ix_(ix, ix)] = block
        if box_labels:
            box_params = np.full((n, 5), np.nan)
            for label in box_labels:
                ix = by_label[label]
                box_params[ix] = box_params_array([objects[i] for i in ix])
    return ItemObjects(
        objects=objects,
        response=np.asarray(owner, dtype=np.int64),
        sim=sim,
        by_response=by_response,
        by_label=by_label,
        specs=specs,
        box_params=box_params,
    )


def match_block(sub: NDArray[np.float64], threshold: float) -> list[tuple[int, int, float]]:
    """Hungarian matching of the rows to the columns of ``sub``; pairs below threshold dropped.

    Returns ``(row, col, similarity)`` triples, in row order.
    """
    if sub.size == 0:
        return []
    valid = sub >= threshold
    r, c = np.nonzero(valid)  # row-major: r is sorted
    if r.size == 0:
        return []
    r_list, c_list = r.tolist(), c.tolist()
    if len(set(r_list)) != len(r_list) or len(set(c_list)) != len(c_list):
        # Some object has two candidates: solve the assignment. Below-threshold pairs weigh 0,
        # so they never displace a valid pair in the optimum. (Otherwise every valid pair is
        # in the optimum and no solver is needed.)
        r, c = linear_sum_assignment(np.where(valid, sub, 0.0), maximize=True)
        keep = valid[r, c]
        r, c = r[keep], c[keep]
        r_list, c_list = r.tolist(), c.tolist()
    return list(zip(r_list, c_list, sub[r, c].tolist(), strict=True))


def pair_agreement(
    a: int,
    b: int,
    responses: Sequence[ResponseObjects],
    item: ItemObjects,
    *,
    match_threshold: float = DEFAULT_MATCH_THRESHOLD,
) -> PairAgreement:
    """Match the objects of responses ``a`` and ``b`` (input positions) and score the pair."""
    objects = item.objects
    rows, cols = item.by_response[a], item.by_response[b]
    found = [
        (rows.start + i, cols.start + j, v)
        for i, j, v in match_block(
            item.sim[rows.start : rows.stop, cols.start : cols.stop], match_threshold
        )
    ]
    matches: list[tuple[int, int, float]] = []
    attribute_scores: list[float] = []
    numerator: list[float] = []
    for i, j, s in found:
        obj_a, obj_b = objects[i], objects[j]
        q = (
            1.0
            if not obj_a.attributes and not obj_b.attributes
            else attribute_agreement(
                obj_a.attributes, obj_b.attributes, item.specs[obj_a.label].attribute_kinds
            )
        )
        matches.append((obj_a.index, obj_b.index, s))
        attribute_scores.append(q)
        numerator.append(s * q)
    resp_a, resp_b = responses[a], responses[b]
    n_a, n_b = len(resp_a.objects), len(resp_b.objects)
    denominator = n_a + n_b - len(matches)
    score = 1.0 if denominator == 0 else min(1.0, math.fsum(numerator) / denominator)
    matched_a = {m[0] for m in matches}
    matched_b = {m[1] for m in matches}
    return PairAgreement(
        annotator_a=resp_a.annotator_id,
        annotator_b=resp_b.annotator_id,
        score=score,
        matches=tuple(matches),
        unmatched_a=tuple(sorted(o.index for o in resp_a.objects if o.index not in matched_a)),
        unmatched_b=tuple(sorted(o.index for o in resp_b.objects if o.index not in matched_b)),
        response_a=resp_a.response_id,
        response_b=resp_b.response_id,
        attribute_scores=tuple(attribute_scores),
    )


def is_single_label_classification(classes: Mapping[str, ClassSpec], multi_label: bool) -> bool:
    return not multi_label and all(spec.geometry == "tag" for spec in classes.values())


def item_agreement(
    responses: Sequence[ResponseObjects],
    classes: Mapping[str, ClassSpec],
    *,
    image_size: tuple[int, int] | None,
    multi_label: bool = False,
    weights: Mapping[str, float] | None = None,
    match_threshold: float = DEFAULT_MATCH_THRESHOLD,
) -> ItemAgreement:
    """How much one item's responses agree, in [0, 1], with the matches behind it.

    See the module docstring for the matching, the pair agreement ``A(a, b)`` and the item
    score (mean pair agreement; the plurality share for single-label classification).

    Args:
        responses: the item's responses, each possibly empty.
        classes: the ontology, class name -> `ClassSpec`.
        image_size: ``(width, height)``, or None; masks must have this size.
        multi_label: whether a response may carry several tags.
        weights: optional non-negative weight per annotator id; every annotator must have one.
        match_threshold: the similarity a pair of objects needs to match, in (0, 1].

    Returns:
        `ItemAgreement` with the score and one `PairAgreement` per pair of responses, in input
        order.

    Raises:
        ValueError: no responses; malformed objects (see `prepare_item`); a missing, negative
            or non-finite weight, or weights that leave no pair (or, single-label, no vote)
            with positive weight; a threshold outside (0, 1].
    """
    check_threshold(match_threshold)
    if not responses:
        raise ValueError("no responses: agreement is undefined for an unanswered item")
    w = response_weights(responses, weights)
    item = prepare_item(responses, classes, image_size=image_size)
    return agreement_of(item, responses, classes, w, multi_label, match_threshold)


def agreement_of(
    item: ItemObjects,
    responses: Sequence[ResponseObjects],
    classes: Mapping[str, ClassSpec],
    w: Sequence[float],
    multi_label: bool,
    match_threshold: float,
) -> ItemAgreement:
    """`item_agreement` on an already prepared item, with one weight per response."""
    n = len(responses)
    index_pairs = list(combinations(range(n), 2))
    pairs = tuple(
        pair_agreement(a, b, responses, item, match_threshold=match_threshold)
        for a, b in index_pairs
    )
    if is_single_label_classification(classes, multi_label):
        total = math.fsum(w)
        if total <= 0:
            raise ValueError("the responses' weights sum to zero: no annotator counts")
        agree = [[1.0 if a == b else 0.0 for b in range(n)] for a in range(n)]
        for (a, b), pair in zip(index_pairs, pairs, strict=True):
            agree[a][b] = agree[b][a] = pair.score
        score = max(math.fsum(w[b] * agree[a][b] for b in range(n)) / total for a in range(n))
        return ItemAgreement(score=min(1.0, score), pairs=pairs)
    if n == 1:
        return ItemAgreement(score=1.0, pairs=())
    numerator: list[float] = []
    denominator: list[float] = []
    for (a, b), pair in zip(index_pairs, pairs, strict=True):
        numerator.append(w[a] * w[b] * pair.score)
        denominator.append(w[a] * w[b])
    pair_mass = math.fsum(denominator)
    if pair_mass <= 0:
        raise ValueError("at most one response has a non-zero weight: there is no pair to compare")
    return ItemAgreement(score=min(1.0, math.fsum(numerator) / pair_mass), pairs=pairs)
