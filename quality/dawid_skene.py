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
    their real ones. The imaginary tasks' classes follow the class shares of the initial
    majority vote ``T0``, smoothed like ``rho``: ``rho0_c = (sum_t T0[t, c] + b) / (n_tasks +
    n_classes * b)``. So each row gets pseudo-counts in proportion to the real answers it can
    expect, and the prior weighs the same against the data in every row (a rare class's row is
    not flattened). The imaginary answers are correct with probability ``prior_diagonal + (1 -
    prior_diagonal) / n_classes``, otherwise uniformly random::

        a[c, k] = prior_strength * n_classes * rho0_c
                  * (prior_diagonal * [c = k] + (1 - prior_diagonal) / n_classes).

    A worker's estimate thus starts as a better-than-chance generalist and moves to their own
    confusion matrix as their answers accumulate; with hundreds of answers the prior is
    negligible. The defaults (``prior_strength=1``: one imaginary answer per class;
    ``prior_diagonal=0.7``: about 85% imaginary accuracy with two classes, 78% with four) are
    fixed for all data. They were chosen from a small grid, on simulated crowds with many
    low-volume workers and spammers (where the prior gains 2-5 points over plain Dawid-Skene and
    majority vote) and on five public crowd datasets (``bench/crowd_accuracy.py``), where every
    setting near these lands within a few tasks of plain Dawid-Skene: on those, the prior is a
    safeguard rather than a gain.

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
        n_classes = encoded.n_classes
        gold_index, gold_label = _gold_indices(encoded, gold)
        em = _EM(encoded, gold_index, gold_label)

        # Initial posteriors: the majority-vote shares (as `MajorityVote`), gold tasks clamped.
        # Class-major layout (classes x tasks) throughout: see `_EM`.
        votes = np.stack(
            [
                np.bincount(em.task_of_answer, weights=em.labels == c, minlength=em.n_tasks)
                for c in range(n_classes)
            ]
        )
        posteriors = votes / votes.sum(axis=0)
        em.clamp_gold(posteriors)

        # The initial class shares, smoothed like the class priors: a class that no answer
        # supports still gets a (small) diagonal-leaning prior row, else its unregularized row
        # could take over the answers of a class that does occur.
        rho0 = (posteriors.sum(axis=1) + self.class_prior) / (
            em.n_tasks + n_classes * self.class_prior
        )
        prior_mean = np.full((n_classes, n_classes), (1.0 - self.prior_diagonal) / n_classes)
        prior_mean[np.diag_indices(n_classes)] += self.prior_diagonal
        # a[c, k]: pseudo-counts of the confusion rows, fixed for the whole fit (so EM is a
        # plain MAP-EM whose objective cannot decrease).
        pseudo = self.prior_strength * n_classes * rho0[:, None] * prior_mean

        history: list[float] = []
        n_answers = len(encoded.labels)
        for _ in range(self.max_iter):
            errors = em.confusion_matrices(posteriors, pseudo)
            class_counts = posteriors.sum(axis=1) + self.class_prior
            priors = np.maximum(class_counts / class_counts.sum(), _FLOOR)
            priors /= priors.sum()
            posteriors, log_evidence = em.posteriors(errors, priors)
            objective = log_evidence + float(np.sum(pseudo * np.log(errors)))
            objective += self.class_prior * float(np.sum(np.log(priors)))
            history.append(objective)
            if len(history) > 1 and abs(history[-1] - history[-2]) <= self.tol * n_answers:
                break

        self.tasks_ = encoded.tasks
        self.workers_ = encoded.workers
        self.n_classes_ = n_classes
        self.probas_ = np.ascontiguousarray(posteriors.T)
        self.priors_ = priors
        self.errors_ = errors
        self.loglikelihoods_ = history
        self.n_iter_ = len(history)
        self.n_gold_ = len(gold_index)
        self.labels_ = np.argmax(tied_with_max(self.probas_), axis=1).astype(np.int64)
        return self

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


class _EM:
    """The two EM steps over one answers table, as gathers and grouped sums over all answers.

    Arrays are class-major, ``(n_classes, n_tasks)`` for posteriors and ``(n_classes,
    n_answers)`` for per-answer terms: every step then runs over long contiguous rows, which is
    several times faster than ``(n_answers, n_classes)`` with its short rows. Answers are
    sorted by task once, so that the gathers of task posteriors read memory in order. There is a
    Python loop over classes, never over tasks, workers or answers.
    """

    __slots__ = (
        "buffer",
        "gold_index",
        "gold_label",
        "labels",
        "n_tasks",
        "n_workers",
        "pair",
        "task_of_answer",
    )

    def __init__(
        self,
        encoded: EncodedAnswers,
        gold_index: NDArray[np.int64],
        gold_label: NDArray[np.int64],
    ) -> None:
        by_task = np.argsort(encoded.task_index, kind="stable")
        self.task_of_answer = encoded.task_index[by_task]
        self.labels = encoded.labels[by_task]
        # pair[i] = w * K + k: which (worker, answer) the i-th answer is; it indexes the
        # flattened confusion tables.
        self.pair = encoded.worker_index[by_task] * encoded.n_classes + self.labels
        self.n_tasks = len(encoded.tasks)
        self.n_workers = len(encoded.workers)
        self.gold_index = gold_index
        self.gold_label = gold_label
        # One per-answer scratch row per class, reused by every E-step.
        self.buffer = np.empty((encoded.n_classes, len(self.labels)))

    def clamp_gold(self, posteriors: NDArray[np.float64]) -> None:
        if len(self.gold_index):
            posteriors[:, self.gold_index] = 0.0
            posteriors[self.gold_label, self.gold_index] = 1.0

    def confusion_matrices(
        self, posteriors: NDArray[np.float64], pseudo: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """M-step: MAP confusion matrices ``(workers, true, observed)`` from the posteriors."""
        n_classes = posteriors.shape[0]
        size = self.n_workers * n_classes
        # Each answer's task posterior (in the reused scratch rows).
        per_answer = self.buffer
        for c in range(n_classes):
            np.take(posteriors[c], self.task_of_answer, out=per_answer[c])
        # counts[c, w * K + k] = n_w[c, k], the expected answers k of w on class-c tasks.
        counts = np.stack(
            [
                np.bincount(self.pair, weights=per_answer[c], minlength=size)
                for c in range(n_classes)
            ]
        )
        cells = counts.reshape(n_classes, self.n_workers, n_classes).transpose(1, 0, 2) + pseudo
        np.maximum(cells, _FLOOR, out=cells)
        errors: NDArray[np.float64] = cells / cells.sum(axis=2, keepdims=True)
        return errors

    def posteriors(
        self, errors: NDArray[np.float64], priors: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], float]:
        """E-step: task posteriors and the log-likelihood ``sum_t log p(answers of t)``."""
        n_classes = len(priors)
        # log_table[c, w * K + k] = log pi_w[c, k].
        log_table = np.log(errors).transpose(1, 0, 2).reshape(n_classes, -1)
        for c in range(n_classes):
            np.take(log_table[c], self.pair, out=self.buffer[c])
        # Sum of logs per task, not a product of probabilities: the product underflows.
        log_joint = np.stack(
            [
                np.bincount(self.task_of_answer, weights=row, minlength=self.n_tasks)
                for row in self.buffer
            ]
        )
        log_joint += np.log(priors)[:, None]
        shift = log_joint.max(axis=0)
        scaled = np.exp(log_joint - shift)
        total = scaled.sum(axis=0)
        posteriors: NDArray[np.float64] = scaled / total
        log_evidence = np.log(total) + shift
        if len(self.gold_index):
            # A gold task's class is observed: its term is the joint of its class and answers.
            log_evidence[self.gold_index] = log_joint[self.gold_label, self.gold_index]
            self.clamp_gold(posteriors)
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
