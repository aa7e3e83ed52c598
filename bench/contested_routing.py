"""Routing contested images to trusted annotators (``redundancy.route_contested``), replayed on
the public crowds of ``../shared/data/crowd``.

``python -m bench.contested_routing`` writes ``bench/results/contested_routing.json``.

Why a protocol of its own
=========================
``bench.adaptive_redundancy`` replays each task's answers in a random order: who answers next is
chance, so it measures when to stop, not who should answer. Routing chooses who answers next, so
this benchmark replays **annotators**, the way Quorum's annotators pull work:

* The arrivals are every answer of the dataset in a random order (per seed), each standing for
  its annotator asking for a task: an annotator arrives as often as they answered.
* The policy gives the arrival one of the open tasks this annotator answered in the dataset
  (their real answer is then revealed), or nothing. Tasks are ranked in a random order per seed
  (Quorum's ordinals); a policy takes the lowest-ranked task it may give.
* When the arrivals run out, tasks still open take their remaining answers in file order until
  they stop: routing's hold expires and whoever is left answers (``released`` counts those).

Policies, all under the same arrivals:

* ``fixed k``: the lowest-ranked open task with fewer than k answers (every task ends with
  min(k, its answers), as in the other benchmark's fixed curve).
* ``adaptive``: the stop rule of Quorum's adaptive redundancy, target 0.99, at least 2
  answers, each annotator's online confusion matrix (``OnlineSkill`` of the other benchmark,
  refitted every ``refit_every_tasks`` decided tasks); no re-check, in either arm.
* ``route``: the same stop rule, and the routing of ``services.task_assignment``: an annotator
  rated at least the answer-weighted average of the last refit (or not rated yet) gets the
  lowest-ranked **contested** task (past the minimum, below the target) before fresh ones; the
  others get fresh tasks only, and are turned away when none of theirs is left.

Each is scored as in ``bench.adaptive_redundancy`` (Quorum's default method on the answers taken,
over the tasks with a truth). Policies are compared with that module's rule (``compare``: the
largest fixed k the policy matches or beats, pooled over seeds; ``per_seed`` alone), and
``route_vs_adaptive`` gives the answers routing saves over the same stop rule and the accuracy
it costs or gains, pooled and per seed.

Caveats: the hold never ends before the arrivals do (in Quorum it ends after ``route_hold``), so
this is routing at its most patient; turned-away arrivals cost nothing here, while in Quorum an
annotator who finds no work may leave. The policy was fixed before this benchmark's first run,
after a scratch version of it on two to four seeds per dataset.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.adaptive_redundancy import (
    DATASETS,
    LARGE,
    LARGE_SEEDS,
    MEANINGFUL_MEDIAN,
    REFITS,
    SEEDS,
    SMALL_DATASETS,
    OnlineSkill,
    Outcome,
    Replay,
    compare,
    final_labels,
    per_seed,
    prepare,
    summarize,
)
from bench.crowd_accuracy import crowd_dir
from bench.results_dir import code_version, machine, results_dir
from quality import confusion_posterior, redundancy_decision

TARGET = 0.99
MIN_ANNOTATORS = 2
Policy = Literal["fixed", "adaptive", "route"]


@dataclass(frozen=True)
class PullOutcome:
    outcome: Outcome
    turned_away: int  # arrivals given nothing while a contested task of theirs was open (route)
    released: int  # answers taken after the arrivals ran out (route only)


class Pull:
    """One pass of a policy over one seed's arrivals."""

    def __init__(
        self, replay: Replay, seed: int, policy: Policy, k: int | None, refit_every: int
    ) -> None:
        self.r, self.policy, self.k, self.refit_every = replay, policy, k, refit_every
        rng = np.random.default_rng(seed)
        self.rank = np.empty(replay.n_tasks, dtype=np.int64)
        self.rank[rng.permutation(replay.n_tasks)] = np.arange(replay.n_tasks)
        self.arrivals: list[int] = replay.workers[rng.permutation(len(replay.workers))].tolist()
        self.task_of = np.repeat(np.arange(replay.n_tasks), replay.available())
        # Each annotator's answers (positions), lowest-ranked task first.
        self.mine: dict[int, list[int]] = collections.defaultdict(list)
        for position in np.argsort(self.rank[self.task_of], kind="stable").tolist():
            self.mine[int(replay.workers[position])].append(position)
        self.cursor: dict[int, int] = collections.defaultdict(int)
        # Contested tasks' answers not taken yet, by annotator (route only).
        self.contested: dict[int, set[int]] = collections.defaultdict(set)
        self.used = np.zeros(len(replay.workers), dtype=bool)
        self.count = np.zeros(replay.n_tasks, dtype=np.int64)
        self.closed = np.zeros(replay.n_tasks, dtype=bool)
        self.labels: dict[int, list[str]] = collections.defaultdict(list)
        self.who: dict[int, list[int]] = collections.defaultdict(list)
        self.taken: list[int] = []
        self.fit: tuple[list[int], list[int], list[int]] = ([], [], [])
        self.skill = OnlineSkill(replay, online_prior=False)
        self.rated = np.zeros(replay.n_workers)  # answers each annotator was last fitted on
        self.decided = 0
        self.classes = [str(c) for c in range(replay.n_classes)]

    def _limit(self, task: int) -> int:
        available = int(self.r.starts[task + 1] - self.r.starts[task])
        return min(self.k, available) if self.policy == "fixed" and self.k else available

    def _fresh(self, worker: int) -> int | None:
        """The worker's lowest-ranked answer whose task may take it (route: a fresh task)."""
        answers, i = self.mine[worker], self.cursor[worker]
        while i < len(answers):
            position = answers[i]
            task = int(self.task_of[position])
            if not (
                self.used[position]
                or self.closed[task]
                or (self.policy == "route" and self.count[task] >= MIN_ANNOTATORS)
            ):
                break
            i += 1  # used, closed or contested now: never fresh again (no re-opening here)
        self.cursor[worker] = i
        return answers[i] if i < len(answers) else None

    def _trusted(self, worker: int) -> bool:
        if not self.rated[worker]:
            return True  # not estimated yet
        bar = float(self.rated @ self.skill.accuracy) / float(self.rated.sum())
        return bool(self.skill.accuracy[worker] >= bar - 1e-9)

    def _close(self, task: int) -> None:
        self.closed[task] = True
        for position in range(int(self.r.starts[task]), int(self.r.starts[task + 1])):
            self.contested[int(self.r.workers[position])].discard(position)
        self.decided += 1
        if self.policy != "fixed" and self.decided % self.refit_every == 0:
            self.skill.refit(*self.fit)
            self.rated = np.bincount(
                np.asarray(self.fit[1], dtype=np.int64), minlength=self.r.n_workers
            ).astype(float)

    def _take(self, position: int) -> None:
        task, worker = int(self.task_of[position]), int(self.r.workers[position])
        label = int(self.r.labels[position])
        self.used[position] = True
        self.count[task] += 1
        self.contested[worker].discard(position)
        self.taken.append(position)
        for column, value in zip(self.fit, (task, worker, label), strict=True):
            column.append(value)
        self.labels[task].append(self.classes[label])
        self.who[task].append(worker)
        if self.policy == "fixed":
            if self.count[task] >= self._limit(task):
                self._close(task)
            return
        matrices = [self.skill.confusion_lists[w] for w in self.who[task]]
        confidence = max(confusion_posterior(self.labels[task], matrices, self.classes).values())
        most = self._limit(task)
        decision = redundancy_decision(
            confidence, int(self.count[task]), min(MIN_ANNOTATORS, most), most, TARGET
        )
        if decision != "more":
            self._close(task)
        elif self.policy == "route" and self.count[task] == MIN_ANNOTATORS:
            for other in range(int(self.r.starts[task]), int(self.r.starts[task + 1])):
                if not self.used[other]:
                    self.contested[int(self.r.workers[other])].add(other)

    def run(self) -> PullOutcome:
        turned_away = released = 0
        for worker in self.arrivals:
            held = self.policy == "route" and bool(self.contested[worker])
            if held and self._trusted(worker):
                position: int | None = min(
                    self.contested[worker], key=lambda p: int(self.rank[self.task_of[p]])
                )
            else:
                position = self._fresh(worker)
            if position is None:
                turned_away += held  # a contested task of theirs was open, but not for them
                continue
            self._take(position)
        for task in np.argsort(self.rank).tolist():  # the hold is over: whoever is left
            for position in range(int(self.r.starts[task]), int(self.r.starts[task + 1])):
                if self.closed[task]:
                    break
                if not self.used[position]:
                    self._take(position)
                    released += 1
        outcome = final_labels(self.r, np.asarray(self.taken, dtype=np.int64), self.count)
        return PullOutcome(outcome, turned_away, released)


def _routing_gain(adaptive: Sequence[PullOutcome], route: Sequence[PullOutcome]) -> dict[str, Any]:
    def answers(o: Outcome) -> float:
        return o.answers / o.scored

    pairs = list(zip(adaptive, route, strict=True))
    fewer = [1 - answers(r.outcome) / answers(a.outcome) for a, r in pairs]
    gained = [r.outcome.accuracy - a.outcome.accuracy for a, r in pairs]
    pooled_a = sum(a.outcome.answers for a in adaptive)
    pooled_r = sum(r.outcome.answers for r in route)
    correct_a = sum(a.outcome.correct for a in adaptive)
    correct_r = sum(r.outcome.correct for r in route)
    scored = sum(a.outcome.scored for a in adaptive)
    return {
        "fewer_answers": round(1 - pooled_r / pooled_a, 4),
        "accuracy_change": round((correct_r - correct_a) / scored, 4),
        "per_seed_fewer_answers": [round(f, 4) for f in fewer],
        "per_seed_accuracy_change": [round(g, 4) for g in gained],
        "median_fewer_answers": round(statistics.median(fewer), 4),
        "seeds_more_accurate_or_equal": sum(g >= 0 for g in gained),
        "seeds": len(fewer),
    }


def evaluate(replay: Replay, seeds: Sequence[int]) -> dict[str, Any]:
    available = replay.available()
    scored = replay.truth >= 0
    median = float(np.median(available[scored]))
    refit_every = max(10, math.ceil(replay.n_tasks / REFITS))
    if replay.n_tasks > LARGE:
        seeds = seeds[:LARGE_SEEDS]

    def runs(policy: Policy, k: int | None = None) -> list[PullOutcome]:
        return [Pull(replay, s, policy, k, refit_every).run() for s in seeds]

    started = time.perf_counter()
    fixed = {k: runs("fixed", k) for k in range(1, int(available.max()) + 1)}
    fixed_entries = [{"k": k, **summarize([o.outcome for o in out])} for k, out in fixed.items()]
    fixed_per_seed = [
        [{"k": k, **summarize([out[i].outcome])} for k, out in fixed.items()]
        for i in range(len(seeds))
    ]
    policies: dict[str, Any] = {}
    outcomes: dict[str, list[PullOutcome]] = {}
    for policy in ("adaptive", "route"):
        out = outcomes[policy] = runs(policy)
        entry = summarize([o.outcome for o in out])
        entry["comparison"] = compare(entry, fixed_entries)
        entry["per_seed"] = per_seed([o.outcome for o in out], fixed_per_seed)
        entry["turned_away_per_arrival"] = round(
            sum(o.turned_away for o in out) / (len(out) * len(replay.workers)), 4
        )
        entry["released_per_task"] = round(
            sum(o.released for o in out) / (len(out) * replay.n_tasks), 4
        )
        policies[policy] = entry
    gain = _routing_gain(outcomes["adaptive"], outcomes["route"])
    print(
        f"  {replay.name}: adaptive {policies['adaptive']['answers_per_task']} answers/task at "
        f"{policies['adaptive']['accuracy']}, route {policies['route']['answers_per_task']} at "
        f"{policies['route']['accuracy']} ({time.perf_counter() - started:.0f} s)",
        file=sys.stderr,
        flush=True,
    )
    return {
        "tasks": replay.n_tasks,
        "tasks_scored": int(scored.sum()),
        "workers": replay.n_workers,
        "seeds": list(seeds),
        "meaningful": median >= MEANINGFUL_MEDIAN,
        "refit_every_tasks": refit_every,
        "fixed": fixed_entries,
        "adaptive": policies["adaptive"],
        "route": policies["route"],
        "route_vs_adaptive": gain,
    }


def run(datasets: Sequence[str], seeds: Sequence[int]) -> tuple[Path, dict[str, Any]]:
    root = crowd_dir()
    results: dict[str, Any] = {}
    for name in datasets:
        if not (root / name / "answers.csv").is_file():
            continue
        print(f"{name}:", file=sys.stderr, flush=True)
        results[name] = evaluate(prepare(name, root), seeds)
    output = {
        "benchmark": "contested_routing",
        "command": "python -m bench.contested_routing " + " ".join(sys.argv[1:]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine("quorum", "numpy", "scipy"),
        "code": code_version(),
        "protocol": "pull replay: arrivals are the dataset's answers in a random order (one per "
        "answer, standing for its annotator asking for work); the policy gives each arrival one "
        "of the open tasks they answered, or nothing; tasks still open when the arrivals run "
        "out take their remaining answers (the hold expires)",
        "stop_rule": f"confusion posterior, target {TARGET}, min {MIN_ANNOTATORS}, online "
        "estimates, no re-check (both arms)",
        "trust": "estimated accuracy at least the answer-weighted average of the last refit, or "
        "not estimated yet",
        "comparison_rule": "bench.adaptive_redundancy.compare (largest fixed k matched or beaten, "
        "pooled over seeds) and per_seed; route_vs_adaptive: pooled and per-seed answers saved "
        "by routing over the same stop rule, and the accuracy change",
        "results": results,
    }
    path = results_dir() / "contested_routing.json"
    path.write_text(json.dumps(output, indent=2) + "\n")
    return path, output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.contested_routing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--datasets", nargs="+", choices=DATASETS)
    parser.add_argument("--seeds", type=int, default=SEEDS, help="number of arrival orders")
    parser.add_argument("--small", action="store_true", help="one seed, the small datasets")
    args = parser.parse_args(argv)
    datasets = args.datasets or list(SMALL_DATASETS if args.small else DATASETS)
    seeds = [0] if args.small else list(range(args.seeds))
    path, output = run(datasets, seeds)
    for name, r in output["results"].items():
        gain = r["route_vs_adaptive"]
        a, rt = r["adaptive"]["comparison"], r["route"]["comparison"]
        print(
            f"{name}: routing takes {gain['fewer_answers']:.1%} fewer answers than the same stop "
            f"rule (accuracy {gain['accuracy_change']:+.2%}); vs fixed k: adaptive "
            f"{a['reduction']} (k={a['k_ref']}), route {rt['reduction']} (k={rt['k_ref']})"
            + ("" if r["meaningful"] else " (not meaningful: too few answers per task)")
        )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
