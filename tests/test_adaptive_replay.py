"""The adaptive-redundancy benchmark's replay (``bench.adaptive_redundancy``), on a synthetic crowd
where it can be checked: what its re-open rule guarantees when a pass ends, and that the oracle
ceiling knows what no online policy can.

The crowd: 120 two-class tasks, each answered by all of 12 workers, most of them poor (accuracy
0.55 to 0.65) and a few good. Early tasks stop on the prior's estimates (0.7 for everyone), which
are too kind to most of this crowd.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from bench.adaptive_redundancy import (
    OnlineSkill,
    OracleSkill,
    Replay,
    Setting,
    adaptive,
    arrival,
)
from quality import confusion_posterior

ACCURACIES = [0.55, 0.55, 0.6, 0.6, 0.6, 0.65, 0.65, 0.65, 0.9, 0.9, 0.95, 0.95]
TASKS = 120
TARGET = 0.95


def _crowd(seed: int = 4) -> Replay:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, TASKS)
    workers = np.tile(np.arange(len(ACCURACIES)), TASKS)
    right = rng.random(len(workers)) < np.asarray(ACCURACIES)[workers]
    labels = np.where(
        right, np.repeat(truth, len(ACCURACIES)), 1 - np.repeat(truth, len(ACCURACIES))
    )
    return Replay(
        name="synthetic",
        n_classes=2,
        n_workers=len(ACCURACIES),
        task_ids=[f"t{n}" for n in range(TASKS)],
        starts=np.arange(0, len(workers) + 1, len(ACCURACIES), dtype=np.int64),
        workers=workers.astype(np.int64),
        labels=labels.astype(np.int64),
        truth=truth.astype(np.int64),
        repeats_dropped=0,
    )


def _stopped_below_target(reopen: bool) -> tuple[list[int], float]:
    """Tasks whose pass ended "stop" (at the target) but whose confidence, under the estimates
    from all the answers taken, is below it with answers left; and the reopenings per task."""
    replay = _crowd()
    order = arrival(replay, 0)
    found: list[int] = []

    def check(_: OnlineSkill, ended: dict[int, str], per_task: NDArray[np.int64]) -> None:
        # The estimates from every answer the pass took (what a refit at the end sees).
        taken = [(t, p) for t in range(TASKS) for p in order.answer_order[t][: per_task[t]]]
        skill = OnlineSkill(replay, online_prior=False)
        skill.refit(
            [t for t, _ in taken],
            [int(replay.workers[p]) for _, p in taken],
            [int(replay.labels[p]) for _, p in taken],
        )
        classes = ["0", "1"]
        for task, how in ended.items():
            if how != "stop" or per_task[task] >= len(order.answer_order[task]):
                continue
            positions = order.answer_order[task][: per_task[task]]
            labels = [classes[x] for x in replay.labels[positions].tolist()]
            matrices = [skill.confusion_lists[w] for w in replay.workers[positions].tolist()]
            if max(confusion_posterior(labels, matrices, classes).values()) < TARGET:
                found.append(task)

    setting = Setting(TARGET, 2, posterior="confusion", reopen=reopen)
    outcome = adaptive(replay, order, setting, refit_every=10, at_end=check)
    return found, outcome.reopened


def test_without_the_re_check_tasks_stay_stopped_on_estimates_since_revised() -> None:
    stale, reopened = _stopped_below_target(reopen=False)
    assert stale and reopened == 0


def test_with_it_no_task_ends_stopped_below_the_target_of_the_final_estimates() -> None:
    stale, reopened = _stopped_below_target(reopen=True)
    assert stale == [] and reopened > 0


def test_the_oracle_knows_each_worker_from_every_answer_and_learns_nothing_more() -> None:
    replay = _crowd()
    oracle = OracleSkill(replay)
    diagonal = [float(np.mean(np.diagonal(m))) for m in oracle.confusion]
    # Fitted on all 120 answers of each worker: the good ones stand out from the poor ones.
    assert min(diagonal[8:]) > 0.8 > max(diagonal[:8])
    before = [row[:] for row in oracle.confusion_lists[0]]
    oracle.refit([0, 1], [0, 1], [1, 1])
    assert oracle.confusion_lists[0] == before
