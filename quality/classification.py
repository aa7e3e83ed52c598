"""Per-item agreement and consensus for classification answers.

Two layers:

* `item_agreement` and `majority_vote` work on one item's `Vote` objects (string labels, a
  handful of votes). They are what the campaign workflow calls when an item's answers are in.
* `MajorityVote` aggregates a whole answers table at once with numpy (integer class codes), with
  the crowd-kit style contract of `quality.base.ClassificationAggregator`.

Weights, where accepted, map an annotator (worker) id to a non-negative weight, e.g. an accuracy
estimated on gold items. Every annotator that voted must have a weight: a silent default would
hide a missing skill estimate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from quality.base import (
    TIE_RTOL,
    AnswersLike,
    ClassificationAggregator,
    encode_answers,
    tied_with_max,
)

__all__ = [
    "ConsensusResult",
    "MajorityVote",
    "Vote",
    "item_agreement",
    "jaccard",
    "majority_vote",
]


@dataclass(frozen=True, slots=True)
class Vote:
    """One annotator's answer to one item.

    For single-label classification ``labels`` holds exactly one label; for multi-label it holds
    any number, including none ("none of these apply").
    """

    annotator_id: str
    labels: frozenset[str]
    response_id: str

    def __post_init__(self) -> None:
        labels: object = self.labels
        if isinstance(labels, str):
            # frozenset("cat") would silently become {"c", "a", "t"}.
            raise TypeError("Vote.labels must be a set of labels, not a single string")
        if not isinstance(labels, frozenset):
            if not isinstance(labels, Iterable):
                raise TypeError(f"Vote.labels must be a set of labels, got {type(labels)}")
            object.__setattr__(self, "labels", frozenset(labels))

    @classmethod
    def single(cls, annotator_id: str, label: str, response_id: str) -> Self:
        """A single-label vote."""
        return cls(annotator_id, frozenset((label,)), response_id)


@dataclass(frozen=True, slots=True)
class ConsensusResult:
    """The consensus of one item.

    Attributes:
        labels: the consensus labels in ontology (``class_order``) order; one label for
            single-label items, zero or more for multi-label items.
        confidence: in [0, 1]; see `majority_vote` for its definition.
        support: response ids of the votes that agree with the consensus, in input order.
        tie: True when the outcome was decided by a tie rule rather than by a majority.
    """

    labels: tuple[str, ...]
    confidence: float
    support: tuple[str, ...]
    tie: bool


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity ``|a & b| / |a | b|``; two empty sets are identical, so 1.0."""
    union = len(a | b)
    if union == 0:
        return 1.0
    return len(a & b) / union


def _check_votes(votes: Sequence[Vote], *, multi_label: bool) -> None:
    if not votes:
        raise ValueError("no votes: agreement and consensus are undefined for an unanswered item")
    if not multi_label:
        for vote in votes:
            if len(vote.labels) != 1:
                raise ValueError(
                    f"single-label vote {vote.response_id!r} has {len(vote.labels)} labels, "
                    "expected exactly one"
                )


def _vote_weights(votes: Sequence[Vote], weights: Mapping[str, float] | None) -> list[float]:
    if weights is None:
        return [1.0] * len(votes)
    result: list[float] = []
    for vote in votes:
        try:
            weight = float(weights[vote.annotator_id])
        except KeyError:
            raise ValueError(f"no weight for annotator {vote.annotator_id!r}") from None
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(
                f"weight of annotator {vote.annotator_id!r} must be finite and >= 0, got {weight}"
            )
        result.append(weight)
    if sum(result) <= 0:
        raise ValueError("the votes' weights sum to zero: no annotator counts")
    return result


def _label_shares(votes: Sequence[Vote], vote_weights: Sequence[float]) -> dict[str, float]:
    """Weighted share of the votes that contain each label (a vote may contain several)."""
    total = math.fsum(vote_weights)
    mass: dict[str, list[float]] = {}
    for vote, weight in zip(votes, vote_weights, strict=True):
        for label in vote.labels:
            mass.setdefault(label, []).append(weight)
    # fsum: exact sums, so equal vote masses compare equal whatever the vote order.
    return {label: math.fsum(ws) / total for label, ws in mass.items()}


def item_agreement(
    votes: Sequence[Vote],
    *,
    multi_label: bool,
    weights: Mapping[str, float] | None = None,
) -> float:
    """How much one item's votes agree, in [0, 1].

    Single-label: the (weighted) share of the votes that back the plurality label,

        agreement = max_c sum_{v: label(v) = c} w_v / sum_v w_v

    so 3 of 3 agreeing gives 1.0, 2 of 3 gives 0.667 and 2 of 4 gives 0.5. This is chosen over
    pairwise agreement (the per-item term of Fleiss' kappa, which gives 1/3 for 2 of 3) because an
    operator reads "0.67" as "2 of 3 agree", and it is the same number as the single-label
    consensus confidence of `majority_vote`. Its floor is ``1 / len(votes)`` (every vote
    different), not 0.

    Multi-label: the mean Jaccard similarity over all pairs of votes,

        agreement = sum_{i<j} w_i w_j J(L_i, L_j) / sum_{i<j} w_i w_j,
        J(A, B) = |A & B| / |A | B|   (two empty sets count as 1.0),

    which is 1.0 only when every annotator chose the same set and gives partial credit for
    overlapping sets. Without weights every pair counts the same.

    One vote gives 1.0: nobody disagrees.

    Args:
        votes: the item's votes.
        multi_label: whether a vote may contain any number of labels.
        weights: optional non-negative weight per annotator id; every voter must have one.

    Raises:
        ValueError: no votes; a single-label vote without exactly one label; a missing, negative
            or non-finite weight; weights that are all zero (all pair weights, for multi-label).
    """
    _check_votes(votes, multi_label=multi_label)
    vote_weights = _vote_weights(votes, weights)
    if len(votes) == 1:
        return 1.0
    if not multi_label:
        return max(_label_shares(votes, vote_weights).values())
    numerator: list[float] = []
    denominator: list[float] = []
    for (vote_a, w_a), (vote_b, w_b) in combinations(zip(votes, vote_weights, strict=True), 2):
        numerator.append(w_a * w_b * jaccard(vote_a.labels, vote_b.labels))
        denominator.append(w_a * w_b)
    pair_mass = math.fsum(denominator)
    if pair_mass <= 0:
        raise ValueError("at most one vote has a non-zero weight: there is no pair to compare")
    # min(): guard the float ratio against landing a hair above 1.
    return min(1.0, math.fsum(numerator) / pair_mass)


def _ontology_rank(class_order: Sequence[str], used: Iterable[str]) -> dict[str, int]:
    rank: dict[str, int] = {}
    for position, label in enumerate(class_order):
        if label in rank:
            raise ValueError(f"class_order lists {label!r} twice")
        rank[label] = position
    unknown = sorted(set(used) - rank.keys())
    if unknown:
        raise ValueError(f"labels {unknown} are not in class_order (the ontology)")
    return rank


def majority_vote(
    votes: Sequence[Vote],
    *,
    multi_label: bool,
    class_order: Sequence[str],
    weights: Mapping[str, float] | None = None,
) -> ConsensusResult:
    """The (weighted) majority consensus of one item.

    Single-label: the label with the largest total vote weight wins, and

        confidence = weight of the winner's votes / total weight

    (equal to `item_agreement`). When several labels share the top weight (within
    `quality.base.TIE_RTOL`), the one that comes first in ``class_order`` wins and ``tie`` is
    True. ``support`` lists the votes for the winner.

    Multi-label: each label is decided on its own. A label is in the consensus when its weighted
    share, ``sum_{v: c in L_v} w_v / sum_v w_v``, is a strict majority (> 0.5). The consensus may
    be empty. ``tie`` is True when some label has a share of exactly 0.5: the strict rule leaves
    it out, so the outcome for that label rests on the tie rule, not on a majority. Then

        confidence = mean share of the chosen labels            if any label is chosen,
        confidence = 1 - max share of the rejected labels       if none is (1.0 if no vote
                                                                 named any label),

    i.e. how strongly the voters backed what was chosen, or, for an empty consensus, how strongly
    they backed "nothing" against the best alternative. ``support`` lists the votes whose label
    set equals the consensus exactly.

    Args:
        votes: the item's votes.
        multi_label: whether a vote may contain any number of labels.
        class_order: the ontology's labels in order: the tie-break and the order of
            ``ConsensusResult.labels``.
        weights: optional non-negative weight per annotator id; every voter must have one.

    Raises:
        ValueError: no votes; a single-label vote without exactly one label; a voted label that
            is not in ``class_order`` (a label outside the ontology is a data error upstream, and
            guessing its rank would make the tie-break arbitrary); a label listed twice in
            ``class_order``; a missing, negative or non-finite weight; all weights zero.
    """
    _check_votes(votes, multi_label=multi_label)
    vote_weights = _vote_weights(votes, weights)
    shares = _label_shares(votes, vote_weights)
    rank = _ontology_rank(class_order, shares)

    if not multi_label:
        best = max(shares.values())
        tied = [label for label, share in shares.items() if share >= best - TIE_RTOL * best]
        winner = min(tied, key=rank.__getitem__)
        support = tuple(v.response_id for v in votes if winner in v.labels)
        return ConsensusResult(
            labels=(winner,), confidence=shares[winner], support=support, tie=len(tied) > 1
        )

    chosen: list[str] = []
    rejected: list[str] = []
    tie = False
    for label, share in shares.items():
        if math.isclose(share, 0.5, rel_tol=TIE_RTOL, abs_tol=0.0):
            tie = True
            rejected.append(label)
        elif share > 0.5:
            chosen.append(label)
        else:
            rejected.append(label)
    chosen.sort(key=rank.__getitem__)
    if chosen:
        confidence = math.fsum(shares[label] for label in chosen) / len(chosen)
    elif rejected:
        confidence = 1.0 - max(shares[label] for label in rejected)
    else:
        confidence = 1.0
    consensus = frozenset(chosen)
    support = tuple(v.response_id for v in votes if v.labels == consensus)
    return ConsensusResult(labels=tuple(chosen), confidence=confidence, support=support, tie=tie)


class MajorityVote(ClassificationAggregator):
    """(Weighted) majority vote over a whole answers table, vectorized with numpy.

    Model: each answer is a vote for one class; the score of class ``k`` on task ``t`` is

        s_tk = sum_{answers (t, w, k)} weight_w,      p_tk = s_tk / sum_k' s_tk'

    and the predicted class is ``argmax_k p_tk``, ties (within `quality.base.TIE_RTOL`) going to
    the lowest class index. Every answer counts, so a worker who answered a task twice votes
    twice. Same model as crowd-kit's ``MajorityVote`` with ``skills`` as weights, but without
    pandas and with a deterministic tie-break instead of a random one.

    Args:
        n_classes: number of classes; ``None`` infers ``max(labels) + 1``. Give it when some class
            may never have been chosen, so that ``predict_proba`` still has its column.

    Learned attributes:
        tasks_: sorted unique task ids (row order of every per-task output).
        workers_: sorted unique worker ids.
        n_classes_: number of classes.
        probas_: ``(n_tasks, n_classes)`` weighted vote shares; rows sum to 1.
        labels_: predicted class per task.
        ties_: per task, whether the top share was shared by several classes.
    """

    def __init__(self, n_classes: int | None = None) -> None:
        self.n_classes = n_classes

    probas_: NDArray[np.float64]
    labels_: NDArray[np.int64]
    ties_: NDArray[np.bool_]

    def fit(self, answers: AnswersLike, weights: Mapping[Any, float] | None = None) -> Self:
        """Count the (weighted) votes per task and class.

        Args:
            answers: ``(task_ids, worker_ids, labels)``, parallel 1-D arrays or sequences;
                labels are integer class codes.
            weights: optional non-negative weight per worker id; every worker must have one.

        Raises:
            ValueError: on a malformed answers table (see `quality.base.encode_answers`), a
                missing, negative or non-finite weight, or a task whose votes all weigh zero.
        """
        encoded = encode_answers(answers, self.n_classes)
        n_tasks, n_classes = len(encoded.tasks), encoded.n_classes
        answer_weights: NDArray[np.float64] | None = None
        if weights is not None:
            per_worker = np.empty(len(encoded.workers), dtype=np.float64)
            for i, worker in enumerate(encoded.workers.tolist()):
                try:
                    per_worker[i] = weights[worker]
                except KeyError:
                    raise ValueError(f"no weight for worker {worker!r}") from None
            if not np.all(np.isfinite(per_worker)) or np.any(per_worker < 0):
                raise ValueError("worker weights must be finite and >= 0")
            answer_weights = per_worker[encoded.worker_index]
        # One flat bin per (task, class): bincount does the whole group-by in one pass.
        flat = encoded.task_index * n_classes + encoded.labels
        counts = np.bincount(flat, weights=answer_weights, minlength=n_tasks * n_classes)
        scores = counts.astype(np.float64, copy=False).reshape(n_tasks, n_classes)
        totals = scores.sum(axis=1, keepdims=True)
        if np.any(totals <= 0):
            bad = encoded.tasks[np.flatnonzero(totals[:, 0] <= 0)[0]]
            raise ValueError(f"all votes on task {bad!r} weigh zero")

        self.tasks_ = encoded.tasks
        self.workers_ = encoded.workers
        self.n_classes_ = n_classes
        self.probas_ = scores / totals
        tied = tied_with_max(self.probas_)
        # argmax over a boolean mask returns the first True: the lowest tied class index.
        self.labels_ = np.argmax(tied, axis=1).astype(np.int64)
        self.ties_ = np.count_nonzero(tied, axis=1) > 1
        return self

    def predict_proba(self) -> NDArray[np.float64]:
        """Weighted vote shares, ``(len(tasks_), n_classes_)``; rows sum to 1."""
        return self.probas_

    def predict(self) -> NDArray[np.int64]:
        """The majority class per task, aligned with ``tasks_`` (ties: lowest class index)."""
        return self.labels_
