"""Dawid-Skene truth inference with Dirichlet priors, and the registry of consensus methods.

`DawidSkene` estimates one confusion matrix per worker and the class priors by EM, vectorized
with numpy over the whole answers table. `make_aggregator` builds a method by name;
`DEFAULT_METHOD` is the one Quorum uses when nobody chooses (see `bench/crowd_accuracy.py` for
how it compares with majority vote and crowd-kit on five public crowd datasets).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from quality.base import (
    AnswersLike,
    ClassificationAggregator,
    EncodedAnswers,
    encode_answers,
    tied_with_max,
)
from quality.classification import MajorityVote

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "DawidSkene",
    "make_aggregator",
]

_FLOOR = 1e-10
"""Smallest probability an estimated confusion cell or class prior may take (as crowd-kit).

Only reached without a prior (``prior_strength=0``, plain maximum likelihood) or for a class that
no answer supports: a zero would make one contradicting answer infinitely costly, and a task
whose every class is impossible would have no posterior at all.
"""


class DawidSkene(ClassificationAggregator):
    r"""Dawid-Skene confusion-matrix model, fitted by EM with Dirichlet priors (MAP).

    Model (Dawid & Skene 1979): task ``t`` has a hidden true class ``z_t`` drawn from the class
    priors ``rho``; worker ``w`` who sees a task of class ``c`` answers ``k`` with probability
    ``pi_w[c, k]`` (row ``c`` of the worker's confusion matrix), independently of the other
    answers. The posterior of a task's class is then

        P(z_t = c | answers) ∝ rho_c * prod_{answers (t, w, k)} pi_w[c, k].

    EM alternates two closed-form steps, starting from the majority-vote shares ``T``:

    * M-step, with ``n_w[c, k] = sum_{answers (t, w, k)} T[t, c]`` the expected number of times
      ``w`` answered ``k`` on a task of class ``c``::

          pi_w[c, k] = (n_w[c, k] + a[c, k]) / sum_k' (n_w[c, k'] + a[c, k'])
          rho_c      = (sum_t T[t, c] + b) / (n_tasks + n_classes * b)

    * E-step: ``T[t, c] = P(z_t = c | answers)`` by the formula above, summed in log space and
      normalized with the log-sum-exp shift: a product of hundreds of probabilities underflows
      float64, and the shift keeps the largest term of each row at exp(0) = 1.

    These are the maximum a posteriori (MAP) estimates under Dirichlet priors
    ``pi_w[c, :] ~ Dir(a[c, :] + 1)`` and ``rho ~ Dir(b + 1)``: ``a`` and ``b`` act as
    pseudo-counts. Every iteration increases the log posterior

        J = sum_t log sum_c rho_c prod pi_w[c, k]  +  sum_{w,c,k} a[c, k] log pi_w[c, k]
            + b sum_c log rho_c,

    which is recorded in ``loglikelihoods_``; EM stops when it changes by at most
    ``tol * n_answers`` or after ``max_iter`` iterations.

    The prior on the confusion rows (why and what). Plain Dawid-Skene (maximum likelihood, ``a =
    0``) trusts a worker who gave two answers that matched the consensus as a perfect worker:
    their confusion row becomes ``[1, 0, ...]`` and their next answer overrides several honest
    workers. On crowds with many low-volume workers this makes Dawid-Skene lose to majority vote.
    The prior credits every worker with ``prior_strength * n_classes`` imaginary answers before
    their real ones: the imaginary tasks' classes follow the class shares of the initial majority
    vote ``rho0`` (so a rare class's row, which a worker sees rarely, is regularized
    proportionally less), and they were answered correctly with probability
    ``prior_diagonal + (1 - prior_diagonal) / n_classes``, otherwise uniformly at random::

        a[c, k] = prior_strength * n_classes * rho0_c
                  * (prior_diagonal * [c = k] + (1 - prior_diagonal) / n_classes).

    A worker's estimate thus starts as a better-than-chance generalist and moves to their own
    confusion matrix as their answers accumulate; with hundreds of answers the prior is
    negligible. The defaults (``prior_strength=1``: one imaginary answer per class;
    ``prior_diagonal=0.7``: about 85% imaginary accuracy with two classes, 78% with four) were
    chosen once, for all data sets, from five public crowd data sets and simulations; see
    ``bench/crowd_accuracy.py``.

    Gold (honeypot) tasks: ``fit(answers, gold={task: class})`` clamps those tasks' posteriors to
    their known class at every step, so they calibrate the workers' confusion matrices.

    Deterministic: no randomness; ties in ``predict`` go to the lowest class index.

    Reference: A. P. Dawid and A. M. Skene (1979), "Maximum Likelihood Estimation of Observer
    Error-Rates Using the EM Algorithm", Journal of the Royal Statistical Society, Series C
    (Applied Statistics) 28(1), 20-28, https://doi.org/10.2307/2346806.

    Args:
        n_classes: number of classes; ``None`` infers ``max(labels) + 1``.
        prior_strength: imaginary answers per class credited to each worker (``>= 0``; 0 is plain
            maximum-likelihood Dawid-Skene).
        prior_diagonal: in [0, 1], how strongly the imaginary answers lean to the diagonal (0:
            uniformly random answers, 1: always correct).
        class_prior: Dirichlet pseudo-count ``b`` added to each class when estimating ``rho``
            (``>= 0``).
        max_iter: maximum number of EM iterations (``>= 1``).
        tol: stop when the log posterior changes by at most ``tol`` per answer (``>= 0``).

    Learned attributes:
        tasks_, workers_, n_classes_: see `quality.base.ClassificationAggregator`.
        probas_: ``(n_tasks, n_classes)`` posterior class probabilities; rows sum to 1.
        labels_: most probable class per task (ties: lowest class index).
        priors_: ``(n_classes,)`` class priors ``rho``.
        errors_: ``(n_workers, n_classes, n_classes)`` confusion matrices; ``errors_[w, c, k]``
            is the probability that worker ``workers_[w]`` answers ``k`` on a task of true class
            ``c`` (rows sum to 1).
        loglikelihoods_: log posterior ``J`` after each iteration (non-decreasing).
        n_iter_: number of EM iterations run.
        n_gold_: number of tasks clamped to a gold label.
    """

    probas_: NDArray[np.float64]
    labels_: NDArray[np.int64]
    priors_: NDArray[np.float64]
    errors_: NDArray[np.float64]
    loglikelihoods_: list[float]
    n_iter_: int
    n_gold_: int

    def __init__(
        self,
        n_classes: int | None = None,
        *,
        prior_strength: float = 1.0,
        prior_diagonal: float = 0.7,
        class_prior: float = 1.0,
        max_iter: int = 500,
        tol: float = 1e-7,
    ) -> None:
        self.n_classes = n_classes
        self.prior_strength = prior_strength
        self.prior_diagonal = prior_diagonal
        self.class_prior = class_prior
        self.max_iter = max_iter
        self.tol = tol

    def _check_hyperparameters(self) -> None:
        if not (np.isfinite(self.prior_strength) and self.prior_strength >= 0):
            raise ValueError(f"prior_strength must be finite and >= 0, got {self.prior_strength}")
        if not 0.0 <= self.prior_diagonal <= 1.0:
            raise ValueError(f"prior_diagonal must be in [0, 1], got {self.prior_diagonal}")
        if not (np.isfinite(self.class_prior) and self.class_prior >= 0):
            raise ValueError(f"class_prior must be finite and >= 0, got {self.class_prior}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be at least 1, got {self.max_iter}")
        if not self.tol >= 0:
            raise ValueError(f"tol must be >= 0, got {self.tol}")

    def fit(self, answers: AnswersLike, gold: Mapping[Any, int] | None = None) -> Self:
        """Run EM on ``(task_ids, worker_ids, labels)``.

        Args:
            answers: parallel 1-D arrays or sequences; labels are integer class codes. Every
                answer counts, so a worker who answered a task twice is counted twice.
            gold: optional known class per task id (honeypots). Those tasks' posteriors are
                clamped to their class; gold tasks without any answer are ignored.

        Raises:
            ValueError: on a malformed answers table (see `quality.base.encode_answers`), a bad
                hyperparameter, or a gold label that is not a class code ``0 .. n_classes - 1``.
        """
        self._check_hyperparameters()
        encoded = encode_answers(answers, self.n_classes)
        n_tasks, n_workers, n_classes = len(encoded.tasks), len(encoded.workers), encoded.n_classes
        gold_index, gold_label = _gold_indices(encoded, gold)
        layout = _Layout(encoded)

        # Initial posteriors: the majority-vote shares (as `MajorityVote`), gold tasks clamped.
        votes = np.bincount(
            encoded.task_index * n_classes + encoded.labels, minlength=n_tasks * n_classes
        ).reshape(n_tasks, n_classes)
        posteriors = votes / votes.sum(axis=1, keepdims=True)
        posteriors[gold_index] = 0.0
        posteriors[gold_index, gold_label] = 1.0

        rho0 = posteriors.mean(axis=0)
        prior_mean = np.full((n_classes, n_classes), (1.0 - self.prior_diagonal) / n_classes)
        prior_mean[np.diag_indices(n_classes)] += self.prior_diagonal
        # a[c, k]: pseudo-counts of the confusion rows, fixed for the whole fit (so EM is a
        # plain MAP-EM whose objective cannot decrease).
        pseudo = self.prior_strength * n_classes * rho0[:, None] * prior_mean

        history: list[float] = []
        n_answers = len(encoded.labels)
        for _ in range(self.max_iter):
            errors, priors = self._m_step(layout, posteriors, pseudo, n_workers)
            posteriors, objective = _e_step(layout, errors, priors, gold_index, gold_label)
            objective += float(np.sum(pseudo * np.log(errors)))
            objective += self.class_prior * float(np.sum(np.log(priors)))
            history.append(objective)
            if len(history) > 1 and abs(history[-1] - history[-2]) <= self.tol * n_answers:
                break

        self.tasks_ = encoded.tasks
        self.workers_ = encoded.workers
        self.n_classes_ = n_classes
        self.probas_ = posteriors
        self.priors_ = priors
        self.errors_ = errors
        self.loglikelihoods_ = history
        self.n_iter_ = len(history)
        self.n_gold_ = len(gold_index)
        self.labels_ = np.argmax(tied_with_max(posteriors), axis=1).astype(np.int64)
        return self

    def _m_step(
        self,
        layout: _Layout,
        posteriors: NDArray[np.float64],
        pseudo: NDArray[np.float64],
        n_workers: int,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """MAP confusion matrices ``(workers, true, observed)`` and class priors."""
        n_classes = posteriors.shape[1]
        # counts[w * K + k, c] = n_w[c, k]: one segmented sum over the answers sorted by
        # (worker, label), instead of a Python loop over workers.
        sums = np.add.reduceat(posteriors[layout.task_by_pair], layout.pair_starts, axis=0)
        counts = np.zeros((n_workers * n_classes, n_classes))
        counts[layout.pairs] = sums
        cells = counts.reshape(n_workers, n_classes, n_classes).transpose(0, 2, 1) + pseudo
        np.maximum(cells, _FLOOR, out=cells)
        errors: NDArray[np.float64] = cells / cells.sum(axis=2, keepdims=True)
        class_counts = posteriors.sum(axis=0) + self.class_prior
        priors: NDArray[np.float64] = np.maximum(class_counts / class_counts.sum(), _FLOOR)
        priors /= priors.sum()
        return errors, priors

    def predict_proba(self) -> NDArray[np.float64]:
        """Posterior class probabilities, ``(len(tasks_), n_classes_)``; rows sum to 1."""
        return self.probas_

    def predict(self) -> NDArray[np.int64]:
        """The most probable class per task, aligned with ``tasks_`` (ties: lowest index)."""
        return self.labels_

    def worker_accuracy(self) -> dict[Any, float]:
        """Expected accuracy of each worker: ``sum_c priors_[c] * errors_[w, c, c]``.

        The probability that the worker's answer on a random task is the true class. Beware that
        a worker who always gives the most common class scores that class's prior here; use
        `worker_spammer_score` to find answers that carry no information.
        """
        diagonal = np.diagonal(self.errors_, axis1=1, axis2=2)
        accuracy = diagonal @ self.priors_
        return dict(zip(self.workers_.tolist(), accuracy.tolist(), strict=True))

    def worker_spammer_score(self) -> dict[Any, float]:
        """How much each worker's answers depend on the true class, in [0, 1].

        Raykar & Yu (2012, JMLR 13, "Eliciting Expert Labels ... Ranking Annotators for
        Crowdsourced Labeling Tasks"): the mean squared distance between the rows of the
        confusion matrix,

            S_w = 1 / (K (K - 1)) sum_{c < c'} sum_k (pi_w[c, k] - pi_w[c', k])^2,

        which is 0 when every row is the same (random answers, or always the same answer: a
        spammer) and 1 for a perfect worker; with two classes it is ``(sensitivity +
        specificity - 1)^2``. 0 for every worker when there is a single class.
        """
        n_classes = self.n_classes_
        if n_classes < 2:
            return dict.fromkeys(self.workers_.tolist(), 0.0)
        rows = self.errors_
        # sum_{c<c'} |r_c - r_c'|^2 = K sum_c |r_c|^2 - |sum_c r_c|^2 (no K x K pair loop).
        total = n_classes * np.sum(rows * rows, axis=(1, 2)) - np.sum(rows.sum(axis=1) ** 2, 1)
        score = np.clip(total / (n_classes * (n_classes - 1)), 0.0, 1.0)
        return dict(zip(self.workers_.tolist(), score.tolist(), strict=True))


class _Layout:
    """Answer orderings computed once per fit, so each EM step is a gather and a segmented sum.

    * by task: ``pair_by_task[i]`` is the (worker, label) pair id ``w * K + k`` of the i-th
      answer in task order, and ``task_starts`` where each task's answers begin.
    * by (worker, label) pair: ``task_by_pair[i]`` is the task of the i-th answer in pair order,
      ``pairs`` the distinct pair ids and ``pair_starts`` where each begins.
    """

    __slots__ = ("n_tasks", "pair_by_task", "pair_starts", "pairs", "task_by_pair", "task_starts")

    def __init__(self, encoded: EncodedAnswers) -> None:
        pair = encoded.worker_index * encoded.n_classes + encoded.labels
        by_task = np.argsort(encoded.task_index, kind="stable")
        sorted_tasks = encoded.task_index[by_task]
        self.n_tasks = len(encoded.tasks)
        self.pair_by_task = pair[by_task]
        # Every task id in 0 .. n_tasks - 1 has at least one answer (the ids are dense).
        self.task_starts = np.flatnonzero(np.r_[True, sorted_tasks[1:] != sorted_tasks[:-1]])
        by_pair = np.argsort(pair, kind="stable")
        sorted_pairs = pair[by_pair]
        self.task_by_pair = encoded.task_index[by_pair]
        self.pair_starts = np.flatnonzero(np.r_[True, sorted_pairs[1:] != sorted_pairs[:-1]])
        self.pairs = sorted_pairs[self.pair_starts]


def _e_step(
    layout: _Layout,
    errors: NDArray[np.float64],
    priors: NDArray[np.float64],
    gold_index: NDArray[np.int64],
    gold_label: NDArray[np.int64],
) -> tuple[NDArray[np.float64], float]:
    """Task posteriors and the data log-likelihood ``sum_t log p(answers of t)``."""
    n_workers, n_classes, _ = errors.shape
    # log_by_pair[w * K + k, c] = log pi_w[c, k]: row per (worker, answer), column per class.
    log_by_pair = np.log(errors).transpose(0, 2, 1).reshape(n_workers * n_classes, n_classes)
    # Sum of logs per task, not a product of probabilities: the product underflows.
    log_joint = np.add.reduceat(log_by_pair[layout.pair_by_task], layout.task_starts, axis=0)
    log_joint += np.log(priors)
    shift = log_joint.max(axis=1, keepdims=True)
    scaled = np.exp(log_joint - shift)
    total = scaled.sum(axis=1, keepdims=True)
    posteriors: NDArray[np.float64] = scaled / total
    log_evidence = np.log(total[:, 0]) + shift[:, 0]
    if len(gold_index):
        # A gold task's class is observed: its term is the joint of its class and answers.
        log_evidence[gold_index] = log_joint[gold_index, gold_label]
        posteriors[gold_index] = 0.0
        posteriors[gold_index, gold_label] = 1.0
    return posteriors, float(log_evidence.sum())


def _gold_indices(
    encoded: EncodedAnswers, gold: Mapping[Any, int] | None
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Task indices and class codes of the gold tasks that have answers."""
    empty = np.zeros(0, dtype=np.int64)
    if not gold:
        return empty, empty
    indices: list[int] = []
    labels: list[int] = []
    tasks = encoded.tasks
    for task, label in gold.items():
        if isinstance(label, bool) or not isinstance(label, int | np.integer):
            raise ValueError(f"gold label of task {task!r} must be an integer class code")
        if not 0 <= int(label) < encoded.n_classes:
            raise ValueError(
                f"gold label {label} of task {task!r} is out of range for "
                f"n_classes={encoded.n_classes}"
            )
        try:
            position = int(np.searchsorted(tasks, task))
        except (TypeError, ValueError):
            continue  # an id of another type than the answers' task ids: not among them
        if position < len(tasks) and tasks[position] == task:
            indices.append(position)
            labels.append(int(label))
    return np.asarray(indices, dtype=np.int64), np.asarray(labels, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Method registry
# --------------------------------------------------------------------------------------------

METHODS: Mapping[str, Callable[[], ClassificationAggregator]] = {
    "majority_vote": MajorityVote,
    "dawid_skene": DawidSkene,
    # Plain maximum-likelihood Dawid-Skene (no confusion prior, no class pseudo-count), as in
    # the 1979 paper and crowd-kit: kept for comparison, not recommended.
    "dawid_skene_mle": lambda: DawidSkene(prior_strength=0.0, class_prior=0.0),
}
"""Consensus methods by name; each value builds a fresh aggregator with default settings."""

DEFAULT_METHOD = "dawid_skene"
"""The method Quorum uses when none is chosen: `DawidSkene` with its default priors."""


def make_aggregator(name: str) -> ClassificationAggregator:
    """A new aggregator for a method name from `METHODS`.

    Raises:
        ValueError: the name is not a known method (the message lists the known ones).
    """
    try:
        factory = METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown consensus method {name!r}; choose one of {', '.join(sorted(METHODS))}"
        ) from None
    return factory()
