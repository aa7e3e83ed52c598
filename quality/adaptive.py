r"""Adaptive redundancy: ask for another answer only while an item's label is still uncertain.

The one-coin model (the one-parameter special case of Dawid & Skene 1979): annotator
``i`` has one accuracy ``a_i``; on an item of true class ``c`` they answer ``c`` with
probability ``a_i`` and each of the other ``K - 1`` classes with probability
``(1 - a_i) / (K - 1)``, independently of the other annotators. The posterior of the item's
class given the answers ``l_1 .. l_n`` is then

    P(z = c | l) ∝ p_c * prod_i [a_i if l_i = c else (1 - a_i) / (K - 1)]

and, dividing every class by the same ``prod_i (1 - a_i) / (K - 1)``,

    log P(z = c | l) = log p_c + sum_{i: l_i = c} w_i + const,
    w_i = log((K - 1) a_i / (1 - a_i)),

so the most probable class is the weighted majority vote with weights ``w_i``
(`vote_weight`), which is the optimal weighted majority under this model (Nitzan & Paroush
1982; Li & Yu 2014, "Error Rate Bounds and Iterative Weighted Majority Voting for
Crowdsourcing").

An item workflow uses the four functions together: `smoothed_accuracy` turns an annotator's
track record into an accuracy that does not over-trust a handful of answers,
`one_coin_posterior` gives the confidence of the leading class after each answer, and
`redundancy_decision` says whether to stop, ask one more annotator, or escalate to an expert.
``bench/adaptive_redundancy.py`` measures, on real crowd answers replayed in arrival order, how
many answers this saves against a fixed number per item.

Pure functions: no I/O, no randomness, no state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ACCURACY_CLIP",
    "CONFUSION_PRIOR_STRENGTH",
    "FUTILITY_EPSILON",
    "Decision",
    "confusion_posterior",
    "expected_confidence_gain",
    "is_futile",
    "one_coin_matrix",
    "one_coin_posterior",
    "redundancy_decision",
    "shrunk_confusions",
    "smoothed_accuracy",
    "vote_weight",
]

ACCURACY_CLIP = 1e-3
"""Accuracies are clipped into ``[ACCURACY_CLIP, 1 - ACCURACY_CLIP]``.

An accuracy of exactly 1 would make one contradicting answer infinitely unlikely (a log of 0):
one slip by a "perfect" annotator would then be impossible to outvote. The clip caps the weight
of one answer at ``log(999 (K - 1))``, about 6.9 nats for two classes.
"""

Decision = Literal["stop", "more", "escalate"]
"""What to do with an item after an answer: finalize it, ask one more annotator, or send it
to an expert because the most annotators allowed have answered and it is still uncertain."""


def _clipped(accuracy: float, what: str) -> float:
    value = float(accuracy)
    if math.isnan(value):
        raise ValueError(f"{what} is NaN")
    return min(max(value, ACCURACY_CLIP), 1.0 - ACCURACY_CLIP)


def _class_index(
    classes: Sequence[str],
    labels: Sequence[str],
    per_answer: Sequence[object],
    what: str,
    model: str,
) -> dict[str, int]:
    """Each class's position, after checking the classes and that every answer has its
    ``what`` (an accuracy, a confusion matrix)."""
    if len(classes) < 2:
        raise ValueError(f"{model} needs at least two classes, got {len(classes)}")
    index = {name: position for position, name in enumerate(classes)}
    if len(index) != len(classes):
        raise ValueError(f"classes repeat: {list(classes)}")
    if len(labels) != len(per_answer):
        raise ValueError(
            f"labels and {what} must have the same length, got {len(labels)} and {len(per_answer)}"
        )
    return index


def one_coin_posterior(
    labels: Sequence[str],
    accuracies: Sequence[float],
    classes: Sequence[str],
    prior: Sequence[float] | None = None,
) -> dict[str, float]:
    """The posterior of an item's true class under the one-coin model (see the module doc).

    Args:
        labels: the answers, one class name per annotator.
        accuracies: ``accuracies[i]`` is the one-coin accuracy of the annotator who answered
            ``labels[i]``; clipped into ``[1e-3, 1 - 1e-3]`` (see `ACCURACY_CLIP`). An accuracy
            below chance (``1 / K``) is allowed: that annotator's answer then counts against its
            class.
        classes: the classes, in the order of the result's keys (at least two, no repeats).
        prior: optional class probabilities ``p_c`` aligned with ``classes`` (non-negative,
            normalized here); the default is uniform.

    Returns:
        ``{class: probability}`` for every class in ``classes`` order; the values sum to 1. With
        no answers it is the (normalized) prior.

    Raises:
        ValueError: fewer than two classes or a repeated class; ``labels`` and ``accuracies`` of
            different lengths; a label that is not in ``classes`` (the message names it); a NaN
            accuracy; a prior of the wrong length, with a negative or non-finite value, or
            summing to zero.
    """
    index = _class_index(classes, labels, accuracies, "accuracies", "the one-coin model")
    n_classes = len(classes)

    log_joint = _log_prior(prior, n_classes)

    if labels:
        codes = np.empty(len(labels), dtype=np.int64)
        for i, label in enumerate(labels):
            try:
                codes[i] = index[label]
            except KeyError:
                raise ValueError(
                    f"label {label!r} (answer {i}) is not one of the classes {list(classes)}"
                ) from None
        clipped = np.asarray(
            [_clipped(a, f"accuracy {i}") for i, a in enumerate(accuracies)], dtype=np.float64
        )
        # Sums of logs, not products: dozens of answers would underflow a product. Each answer
        # adds log((1 - a) / (K - 1)) to every class, and log a instead of it to its own class.
        log_wrong = np.log((1.0 - clipped) / (n_classes - 1))
        log_joint = log_joint + float(log_wrong.sum())
        log_joint += np.bincount(codes, weights=np.log(clipped) - log_wrong, minlength=n_classes)

    # Log-sum-exp shift: the largest term becomes exp(0) = 1, so nothing underflows to 0/0.
    scaled = np.exp(log_joint - log_joint.max())
    posterior = scaled / scaled.sum()
    return dict(zip(classes, posterior.tolist(), strict=True))


def _log_prior(prior: Sequence[float] | None, n_classes: int) -> np.ndarray:
    if prior is None:
        return np.zeros(n_classes)
    weights = np.asarray(prior, dtype=np.float64)
    if weights.shape != (n_classes,):
        raise ValueError(f"prior must have one value per class ({n_classes}), got {len(prior)}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(f"prior values must be finite and >= 0, got {list(prior)}")
    total = float(weights.sum())
    if total <= 0:
        raise ValueError("prior values sum to zero: no class is possible")
    with np.errstate(divide="ignore"):
        # A class with prior 0 gets log 0 = -inf and stays impossible whatever the answers.
        return np.log(weights / total)


def confusion_posterior(
    labels: Sequence[str],
    confusions: Sequence[Sequence[Sequence[float]]],
    classes: Sequence[str],
    prior: Sequence[float] | None = None,
) -> dict[str, float]:
    """The posterior of an item's true class under the Dawid-Skene (confusion-matrix) model.

        P(z = c | l) ∝ rho_c * prod_i pi_i[c, l_i],

    with ``pi_i`` the confusion matrix of the annotator who answered ``l_i`` (row = true class,
    column = answered class). Unlike `one_coin_posterior`, an annotator may be reliable on one
    class and poor on another, and may confuse two particular classes: an answer for a class
    that the annotator also gives often on other classes weighs less. With every ``pi_i`` the
    one-coin matrix (``a_i`` on the diagonal, ``(1 - a_i) / (K - 1)`` elsewhere) it equals
    `one_coin_posterior`.

    Args:
        labels: the answers, one class name per annotator.
        confusions: ``confusions[i]`` is the ``K x K`` confusion matrix of the annotator who
            answered ``labels[i]``, rows and columns in ``classes`` order. Rows are normalized
            here (they need not sum to 1, but must be finite, >= 0 and not all zero). Entries
            are floored at `ACCURACY_CLIP` (after normalizing) so that one answer never makes
            a class impossible.
        classes: the classes, in the order of the result's keys (at least two, no repeats).
        prior: optional class probabilities ``rho_c`` aligned with ``classes`` (non-negative,
            normalized here); the default is uniform.

    Returns:
        ``{class: probability}`` in ``classes`` order, summing to 1; the normalized prior when
        there are no answers.

    Raises:
        ValueError: fewer than two classes or a repeated class; ``labels`` and ``confusions``
            of different lengths; a label not in ``classes``; a matrix that is not ``K x K``,
            has a negative or non-finite entry, or a row summing to zero; a bad prior (as in
            `one_coin_posterior`).
    """
    index = _class_index(classes, labels, confusions, "confusions", "the model")
    n_classes = len(classes)
    log_joint = _log_prior(prior, n_classes)
    for i, (label, matrix) in enumerate(zip(labels, confusions, strict=True)):
        try:
            code = index[label]
        except KeyError:
            raise ValueError(
                f"label {label!r} (answer {i}) is not one of the classes {list(classes)}"
            ) from None
        pi = np.asarray(matrix, dtype=np.float64)
        if pi.shape != (n_classes, n_classes):
            raise ValueError(
                f"confusion matrix {i} must be {n_classes} x {n_classes}, got shape {pi.shape}"
            )
        if not np.all(np.isfinite(pi)) or np.any(pi < 0):
            raise ValueError(f"confusion matrix {i} has a negative or non-finite entry")
        rows = pi.sum(axis=1)
        if np.any(rows <= 0):
            raise ValueError(f"confusion matrix {i} has a row summing to zero")
        column = np.maximum(pi[:, code] / rows, ACCURACY_CLIP)
        log_joint = log_joint + np.log(column)
    scaled = np.exp(log_joint - log_joint.max())
    posterior = scaled / scaled.sum()
    return dict(zip(classes, posterior.tolist(), strict=True))


def expected_confidence_gain(
    posterior: Sequence[float], confusion: Sequence[Sequence[float]], answers: int = 1
) -> float:
    """How much ``answers`` more answers are expected to raise the confidence of the decision.

        gain = sum_{k_1..k_h} max_c p_c prod_j pi[c, k_j] - max_c p_c,   h = answers,

    with ``p`` the current posterior and ``pi`` the confusion matrix (row = true class) of the
    next annotators, e.g. the population average when who answers next is unknown. The first
    term is the expected probability that the decision taken after the ``h`` answers is right
    (the answers ``k_1..k_h`` have probability ``sum_c p_c prod_j pi[c, k_j]``), the second
    the probability that the current decision is right: the value of information of ``h``
    answers, in accuracy (the expected confidence after them minus the confidence now). It is
    ``>= 0``, and it is exactly 0 when no possible sequence of ``h`` answers can change the
    leading class (then the expected posterior of that class after them is its current
    value, a martingale).

    Args:
        posterior: the current class probabilities (normalized here).
        confusion: a ``K x K`` matrix, rows normalized here.
        answers: the look-ahead ``h`` (``>= 1``); the cost grows as ``K ** h``.

    Raises:
        ValueError: mismatched shapes, negative or non-finite values, a zero row or total, or
            ``answers < 1``.
    """
    if answers < 1:
        raise ValueError(f"answers must be >= 1, got {answers}")
    p = np.asarray(posterior, dtype=np.float64)
    pi = np.asarray(confusion, dtype=np.float64)
    n_classes = p.shape[0] if p.ndim == 1 else -1
    if p.ndim != 1 or n_classes < 2 or pi.shape != (n_classes, n_classes):
        raise ValueError(
            f"posterior must have K >= 2 values and confusion be K x K, got shapes {p.shape} "
            f"and {pi.shape}"
        )
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(pi))) or np.any(p < 0) or np.any(pi < 0):
        raise ValueError("posterior and confusion must be finite and >= 0")
    rows = pi.sum(axis=1)
    if p.sum() <= 0 or np.any(rows <= 0):
        raise ValueError("the posterior and every confusion row must have a positive total")
    p = p / p.sum()
    pi = pi / rows[:, None]
    # sequences[c, s]: P(the h answers are sequence s | z = c), sequences in row-major order.
    sequences = np.ones((n_classes, 1))
    for _ in range(answers):
        sequences = (sequences[:, :, None] * pi[:, None, :]).reshape(n_classes, -1)
    joint = p[:, None] * sequences  # P(z = c, the answers are s)
    return max(0.0, float(joint.max(axis=0).sum() - p.max()))


def vote_weight(accuracy: float, n_classes: int) -> float:
    """The optimal weighted-majority weight of an annotator under the one-coin model.

        w = max(0, log((K - 1) a / (1 - a))),   a clipped into [1e-3, 1 - 1e-3],

    the log-likelihood ratio that one answer adds to its class (see the module doc). It is 0
    at chance (``a = 1 / K``); an annotator below chance also gets 0 rather than a negative
    weight, since a weighted vote cannot count an answer against its class (the full
    `one_coin_posterior` does).

    Raises:
        ValueError: ``n_classes`` below 2, or a NaN accuracy.
    """
    if n_classes < 2:
        raise ValueError(f"the one-coin model needs at least two classes, got {n_classes}")
    a = _clipped(accuracy, "accuracy")
    return max(0.0, math.log((n_classes - 1) * a / (1.0 - a)))


def smoothed_accuracy(
    correct: float,
    total: float,
    prior_accuracy: float = 0.7,
    prior_strength: float = 2.0,
) -> float:
    """An annotator's accuracy as the posterior mean under a Beta prior.

        a = (correct + s * p) / (total + s),

    the mean of ``Beta(correct + s p, total - correct + s (1 - p))``: the prior is worth ``s``
    imaginary answers of which a share ``p`` is correct. An annotator with no track record gets
    ``p``; two right answers out of two give ``(2 + 1.4) / 4 = 0.85`` with the defaults, not 1;
    with hundreds of answers the prior is negligible. ``correct`` may be fractional (an expected
    count, e.g. from Dawid-Skene posteriors).

    Args:
        correct: answers that were right (``0 <= correct <= total``).
        total: answers judged.
        prior_accuracy: ``p``, the accuracy assumed before any answer, in [0, 1].
        prior_strength: ``s``, its weight in answers (``>= 0``; 0 is the raw share).

    Raises:
        ValueError: a negative or non-finite count, ``correct > total``, ``prior_accuracy``
            outside [0, 1], a negative ``prior_strength``, or ``total + prior_strength == 0``.
    """
    if not (math.isfinite(correct) and math.isfinite(total)) or correct < 0 or total < 0:
        raise ValueError(f"correct and total must be finite and >= 0, got {correct}, {total}")
    if correct > total:
        raise ValueError(f"correct ({correct}) exceeds total ({total})")
    if not 0.0 <= prior_accuracy <= 1.0:
        raise ValueError(f"prior_accuracy must be in [0, 1], got {prior_accuracy}")
    if not (math.isfinite(prior_strength) and prior_strength >= 0):
        raise ValueError(f"prior_strength must be finite and >= 0, got {prior_strength}")
    if total + prior_strength == 0:
        raise ValueError("no answers and no prior (prior_strength=0): the accuracy is undefined")
    return (correct + prior_strength * prior_accuracy) / (total + prior_strength)


def redundancy_decision(
    confidence: float,
    n_answers: int,
    min_annotators: int,
    max_annotators: int,
    target_confidence: float,
) -> Decision:
    """Stop, ask one more annotator, or escalate, after an item's ``n_answers``-th answer.

    In order:

    * ``"more"`` while ``n_answers < min_annotators``, whatever the confidence;
    * ``"stop"`` when ``confidence >= target_confidence``;
    * ``"more"`` while ``n_answers < max_annotators``;
    * ``"escalate"`` otherwise: as many annotators as allowed have answered and the item is
      still below the target.

    Args:
        confidence: the probability of the leading class, e.g. the largest value of
            `one_coin_posterior`, in [0, 1].
        n_answers: answers received so far (``>= 0``).
        min_annotators: answers needed before the item may stop (``>= 1``).
        max_annotators: the most annotators the item may have (``>= min_annotators``).
        target_confidence: the confidence at which to stop, in (0, 1].

    Raises:
        ValueError: a value outside the ranges above, or a NaN confidence.
    """
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence must be in [0, 1], got {confidence}")
    if n_answers < 0:
        raise ValueError(f"n_answers must be >= 0, got {n_answers}")
    if min_annotators < 1:
        raise ValueError(f"min_annotators must be >= 1, got {min_annotators}")
    if max_annotators < min_annotators:
        raise ValueError(
            f"max_annotators ({max_annotators}) is below min_annotators ({min_annotators})"
        )
    if not 0.0 < target_confidence <= 1.0:
        raise ValueError(f"target_confidence must be in (0, 1], got {target_confidence}")
    if n_answers < min_annotators:
        return "more"
    if confidence >= target_confidence:
        return "stop"
    if n_answers < max_annotators:
        return "more"
    return "escalate"


CONFUSION_PRIOR_STRENGTH = 2.0
"""Pseudo-answers per row that shrink a worker's confusion matrix towards the population's."""

FUTILITY_EPSILON = 1e-9
"""An expected confidence gain at or below this is none: no next answer can change the decision."""


def one_coin_matrix(accuracy: float, n_classes: int) -> NDArray[np.float64]:
    """The confusion matrix of a one-coin annotator: ``accuracy`` on the diagonal, the rest
    spread evenly over the other classes (rows = true class)."""
    a = _clipped(accuracy, "accuracy")
    matrix = np.full((n_classes, n_classes), (1.0 - a) / (n_classes - 1))
    np.fill_diagonal(matrix, a)
    return matrix


def shrunk_confusions(
    posteriors: NDArray[np.float64],
    workers: NDArray[np.int64],
    labels: NDArray[np.int64],
    n_workers: int,
    previous_population: NDArray[np.float64],
    strength: float = CONFUSION_PRIOR_STRENGTH,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each worker's confusion matrix and the population's, from a fit's answer posteriors.

    ``posteriors[i]`` is the fit's P(class of answer i's task = c). The expected counts
    ``n_w[c, k] = sum over w's answers k of posteriors[i, c]`` are pooled into the population
    matrix (plus ``strength`` x ``previous_population``), and each worker's counts are shrunk
    towards it by ``strength`` pseudo-answers per row (hierarchical smoothing: a worker with few
    answers looks like the average worker). Rows sum to 1. Returns ``(confusions, population)``
    with shapes ``(n_workers, K, K)`` and ``(K, K)``."""
    k = posteriors.shape[1]
    counts = np.zeros((n_workers, k, k))
    for c in range(k):
        np.add.at(counts[:, c, :], (workers, labels), posteriors[:, c])
    pooled = counts.sum(axis=0) + strength * previous_population
    population = pooled / pooled.sum(axis=1, keepdims=True)
    smoothed = counts + strength * population
    return smoothed / smoothed.sum(axis=2, keepdims=True), population


def is_futile(
    confidence: float,
    previous_confidence: float,
    posterior: Sequence[float],
    population: Sequence[Sequence[float]],
    look_ahead: int = 1,
) -> bool:
    """Whether more answers are pointless for an item still below its target: the last answer
    did not raise the confidence (the item is contested), and no ``look_ahead`` more answers
    from an average annotator could change the leading class."""
    return (
        confidence <= previous_confidence
        and expected_confidence_gain(posterior, population, look_ahead) <= FUTILITY_EPSILON
    )
