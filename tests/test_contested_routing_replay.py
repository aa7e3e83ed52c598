"""The routing benchmark's pull replay (``bench.contested_routing``) on the synthetic crowd of
``tests/test_adaptive_replay.py`` (12 workers answer every task; 4 good, 8 poor): fixed k ends
where the other benchmark's does, and routing gives contested tasks to the good workers."""

from __future__ import annotations

import pytest

from bench.contested_routing import Pull
from tests.test_adaptive_replay import ACCURACIES, _crowd

GOOD = {w for w, accuracy in enumerate(ACCURACIES) if accuracy >= 0.9}


@pytest.mark.parametrize("k", [1, 3, 12])
def test_fixed_k_under_pull_gives_every_task_k_answers(k: int) -> None:
    pull = Pull(_crowd(), 0, "fixed", k, refit_every=10)
    result = pull.run()
    assert set(pull.count.tolist()) == {k}
    assert (result.turned_away, result.released) == (0, 0)
    assert len(pull.taken) == len(set(pull.taken))  # no answer taken twice


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_routing_sends_contested_tasks_to_the_good_workers(seed: int) -> None:
    def run(policy: str) -> tuple[float, float, float]:
        pull = Pull(_crowd(), seed, policy, None, refit_every=10)  # type: ignore[arg-type]
        outcome = pull.run().outcome
        # The answers past the first two of each task: the contested tasks' answers.
        extra = [w for task in range(pull.r.n_tasks) for w in pull.who[task][2:]]
        good = sum(w in GOOD for w in extra) / len(extra)
        return good, outcome.answers / outcome.scored, outcome.accuracy

    good_a, answers_a, accuracy_a = run("adaptive")
    good_r, answers_r, accuracy_r = run("route")
    assert good_a < 0.45  # a third of the crowd is good: about their share, unrouted
    assert good_r > 0.6
    assert answers_r < 0.85 * answers_a and accuracy_r >= accuracy_a
