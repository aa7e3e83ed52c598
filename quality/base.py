"""Shared contract for classification aggregators (majority vote, later Dawid-Skene).

The contract follows crowd-kit (``crowdkit/aggregation/base``) and scikit-learn: the constructor
takes hyperparameters only, ``fit`` learns from an answers table and returns ``self``, and
everything learned is stored in attributes whose names end in ``_``.

An answers table is three parallel 1-D arrays (or sequences) of equal length: task ids, worker
ids and integer class codes ``0 .. n_classes - 1``. Task and worker ids may be any values that
``numpy.unique`` can sort (ints or strings, not a mix). Row ``i`` of the probabilities returned by
``predict_proba`` belongs to task ``tasks_[i]``; ``tasks_`` is sorted.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "TIE_RTOL",
    "AnswersLike",
    "ClassificationAggregator",
    "EncodedAnswers",
    "encode_answers",
    "tied_with_max",
]

AnswersLike = tuple[ArrayLike, ArrayLike, ArrayLike]
"""``(task_ids, worker_ids, labels)``: three parallel 1-D arrays or sequences."""

TIE_RTOL = 1e-9
"""Scores within this relative distance of the best score count as tied with it.

With integer vote counts ties are exact, but with float weights ``0.1 + 0.2`` and ``0.3`` differ
in the last bit, and the winner would then depend on summation order, i.e. on the order in which
answers arrived. Treating near-equal scores as a tie keeps the result order-independent.
"""


def tied_with_max(scores: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Mask of the scores that tie with the maximum of their row (last axis), see `TIE_RTOL`."""
    best = scores.max(axis=-1, keepdims=True)
    mask: NDArray[np.bool_] = scores >= best - TIE_RTOL * np.abs(best)
    return mask


class EncodedAnswers:
    """An answers table with tasks and workers replaced by dense indices.

    Attributes:
        tasks: sorted unique task ids; ``task_index`` points into it.
        workers: sorted unique worker ids; ``worker_index`` points into it.
        task_index, worker_index, labels: one int64 entry per answer.
        n_classes: number of classes (columns of the probability matrix).
    """

    __slots__ = ("labels", "n_classes", "task_index", "tasks", "worker_index", "workers")

    def __init__(
        self,
        tasks: NDArray[Any],
        task_index: NDArray[np.int64],
        workers: NDArray[Any],
        worker_index: NDArray[np.int64],
        labels: NDArray[np.int64],
        n_classes: int,
    ) -> None:
        self.tasks = tasks
        self.task_index = task_index
        self.workers = workers
        self.worker_index = worker_index
        self.labels = labels
        self.n_classes = n_classes


def _as_1d(values: ArrayLike, name: str) -> NDArray[Any]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def encode_answers(answers: AnswersLike, n_classes: int | None = None) -> EncodedAnswers:
    """Validate an answers table and encode its tasks and workers as dense indices.

    Args:
        answers: ``(task_ids, worker_ids, labels)``, three parallel 1-D arrays or sequences.
        n_classes: the number of classes; ``None`` infers ``max(labels) + 1``.

    Raises:
        ValueError: on an empty table, arrays of unequal length, non-integer labels, or labels
            outside ``0 .. n_classes - 1``.
    """
    if len(answers) != 3:
        raise ValueError("answers must be three parallel arrays: (task_ids, worker_ids, labels)")
    tasks = _as_1d(answers[0], "task ids")
    workers = _as_1d(answers[1], "worker ids")
    raw_labels = _as_1d(answers[2], "labels")
    if not len(tasks) == len(workers) == len(raw_labels):
        raise ValueError(
            "task ids, worker ids and labels must have the same length, got "
            f"{len(tasks)}, {len(workers)} and {len(raw_labels)}"
        )
    if len(tasks) == 0:
        raise ValueError("answers is empty: there is nothing to aggregate")
    if raw_labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer class codes, got dtype {raw_labels.dtype}")
    labels = raw_labels.astype(np.int64, copy=False)
    if labels.min() < 0:
        raise ValueError("labels must be non-negative class codes")
    max_label = int(labels.max())
    if n_classes is None:
        n_classes = max_label + 1
    elif n_classes < 1:
        raise ValueError(f"n_classes must be positive, got {n_classes}")
    elif max_label >= n_classes:
        raise ValueError(f"label {max_label} is out of range for n_classes={n_classes}")
    unique_tasks, task_index = np.unique(tasks, return_inverse=True)
    unique_workers, worker_index = np.unique(workers, return_inverse=True)
    return EncodedAnswers(
        tasks=unique_tasks,
        # numpy 2.0/2.1 shaped the inverse like the input; flatten to be safe across versions.
        task_index=task_index.reshape(-1).astype(np.int64, copy=False),
        workers=unique_workers,
        worker_index=worker_index.reshape(-1).astype(np.int64, copy=False),
        labels=labels,
        n_classes=n_classes,
    )


class ClassificationAggregator(ABC):
    """Base class: infer one class per task from many workers' integer labels.

    Subclasses implement `fit` and `predict_proba`; `predict`, `fit_predict` and
    `fit_predict_proba` follow from them.

    Learned attributes (set by ``fit``):
        tasks_: sorted unique task ids, the row order of every per-task output.
        workers_: sorted unique worker ids.
        n_classes_: number of classes, the column count of ``predict_proba()``.
    """

    tasks_: NDArray[Any]
    workers_: NDArray[Any]
    n_classes_: int

    @abstractmethod
    def fit(self, answers: AnswersLike) -> Self:
        """Learn from ``(task_ids, worker_ids, labels)`` and return ``self``."""

    @abstractmethod
    def predict_proba(self) -> NDArray[np.float64]:
        """Return a ``(len(tasks_), n_classes_)`` matrix of class probabilities; rows sum to 1."""

    def predict(self) -> NDArray[np.int64]:
        """Return the most probable class per task, aligned with ``tasks_``.

        Ties (within `TIE_RTOL`) go to the lowest class index, so the result is deterministic.
        """
        # argmax over a boolean mask returns the first True, i.e. the lowest tied class index.
        labels: NDArray[np.int64] = np.argmax(tied_with_max(self.predict_proba()), axis=1)
        return labels.astype(np.int64, copy=False)

    def fit_predict(self, answers: AnswersLike) -> NDArray[np.int64]:
        """``fit(answers)`` then ``predict()``."""
        return self.fit(answers).predict()

    def fit_predict_proba(self, answers: AnswersLike) -> NDArray[np.float64]:
        """``fit(answers)`` then ``predict_proba()``."""
        return self.fit(answers).predict_proba()
