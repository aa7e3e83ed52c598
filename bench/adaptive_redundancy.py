"""Adaptive redundancy on real crowds: answers saved against a fixed number per task.

The goal of issue #7: at least 30% fewer answers than a fixed number of annotators per task,
at equal accuracy. Measured by replaying the real answers of the public crowd datasets under
``<repo>/../shared/data/crowd`` (see its README) as if they arrived one at a time.

Arrival order. For each seed, the tasks are processed in a random order, and each task's
answers arrive in a random order. Both policies see the same order.

Adaptive policy (`quality.adaptive`). Answers of a task are taken one at a time. After each
one, the task's confidence is the largest value of `one_coin_posterior` of the answers taken so
far, and `redundancy_decision` says stop, take one more, or escalate. ``max_annotators`` is the
number of answers the dataset has for the task, so an escalated task has used them all and is
still below the target (in production it would go to an expert; here it keeps the default
method's label). The annotators' accuracies are **estimated online, only from the answers
already taken**: every ``refit_every`` tasks, Quorum's Dawid-Skene (`quality.DawidSkene` with
its default priors) is refitted on all the answers taken so far; an annotator's accuracy is
then ``smoothed_accuracy(worker_accuracy * n, n)`` with ``n`` their answers in that fit.
Annotators not in the last fit get ``smoothed_accuracy(0, 0)``, the prior accuracy 0.7.
Neither the unused answers nor the truth is ever read. When every task is done, the final
labels are Quorum's default method (`quality.DEFAULT_METHOD`) on the answers taken.

The class prior of the posterior is uniform. The first design took the refit's class priors
(``priors_``); the JSON keeps that variant at the default setting (``class_prior: "online"``).
It feeds on itself: answers taken adaptively over-represent the tasks whose first answers
agreed, the estimated prior leans to the class those answers favour, which stops more tasks
on that class. On bluebirds (whose workers are nearly at chance on one class) it drifted to
0.82 / 0.18 where the truth is 0.56 / 0.44.

Fixed policy. For k = 1 .. the most answers any task has: the first ``min(k, available)``
answers of each task in the same arrival order, labelled by the same default method.

Scoring: accuracy over the tasks that have a truth and at least one answer; answers per task
are averaged over the same tasks (and reported over all tasks too). Everything is averaged
over the seeds (10; 5 on the two datasets of over 5,000 tasks, where one pass takes minutes
and the seeds differ less); the spread over seeds is recorded.

Comparison rule (no tolerance). At the default setting, ``k_ref`` is the largest k such that
the adaptive run's mean accuracy is at least the fixed policy's mean accuracy for **every**
k' <= k. So the adaptive run matches or beats fixed k_ref and every smaller k, and fixed
k_ref + 1 (if there is one) is strictly more accurate than it. The headline is

    reduction = 1 - adaptive answers per task / fixed k_ref answers per task,

and the goal is met when ``reduction >= 0.30``. If the adaptive run is less accurate than
fixed k = 1, there is no k_ref and no reduction. For reference the JSON also gives the
reduction against k_ref + 1, the fixed k that first beats the adaptive run (not the headline:
that fixed policy is more accurate), and against the fixed policy that mixes k and k + 1
answers per task (at random) so as to reach the adaptive accuracy exactly: the linear
interpolation of the fixed curve (``reduction_vs_interpolated_fixed``). Neither replaces the
headline.

Repeated (task, worker) pairs (only s_rel has them, 1,570 rows): a platform does not send the
same task to the same annotator twice, and the one-coin posterior assumes independent
annotators, so only the first answer of each pair (in file order) is replayed.

A dataset is called meaningful for the goal when its scored tasks have a median of at least 5
available answers: with 3 (d_product), a policy that needs 2 answers to confirm a label can
save at most a third against k = 3, and nothing against k = 2.

Run: ``python -m bench.adaptive_redundancy`` (about half an hour, mostly s_rel) ->
``bench/results/adaptive_redundancy.json`` and a Markdown table on stdout. ``--small`` (one
seed, three datasets, the default setting only) is what ``make bench`` runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.crowd_accuracy import crowd_dir, load
from bench.results_dir import results_dir
from quality import (
    DEFAULT_METHOD,
    DawidSkene,
    make_aggregator,
    one_coin_posterior,
    redundancy_decision,
    smoothed_accuracy,
)

DATASETS = ("bluebirds", "dog", "d_product", "d_possent", "s_rel")
SMALL_DATASETS = ("bluebirds", "dog", "d_possent")
TARGETS = (0.9, 0.95, 0.99)
MIN_ANNOTATORS = (1, 2)
SEEDS = 10
LARGE = 5_000
"""Datasets with more tasks than this get at most ``LARGE_SEEDS`` seeds."""
LARGE_SEEDS = 5
PRIOR_ACCURACY = 0.7
PRIOR_STRENGTH = 2.0
GOAL = 0.30
REFITS = 50
"""About this many Dawid-Skene refits per pass: ``refit_every = max(10, ceil(tasks / 50))``."""
MEANINGFUL_MEDIAN = 5


@dataclass(frozen=True)
class Replay:
    """One dataset, encoded: answers grouped by task, dense task and worker indices."""

    name: str
    n_classes: int
    n_workers: int
    task_ids: list[str]
    # answers of task t: workers[starts[t]:starts[t + 1]], labels[...], in file order
    starts: NDArray[np.int64]
    workers: NDArray[np.int64]
    labels: NDArray[np.int64]
    truth: NDArray[np.int64]  # per task; -1 without a truth
    repeats_dropped: int

    @property
    def n_tasks(self) -> int:
        return len(self.task_ids)

    def available(self) -> NDArray[np.int64]:
        return np.diff(self.starts)


def prepare(name: str, root: Path | None = None) -> Replay:
    dataset = load(name, root)
    first = dataset.without_repeats("first")
    task_ids, task_index = np.unique(first.tasks, return_inverse=True)
    _, worker_index = np.unique(first.workers, return_inverse=True)
    order = np.argsort(task_index, kind="stable")  # group by task, file order within a task
    counts = np.bincount(task_index, minlength=len(task_ids))
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    ids: list[str] = task_ids.tolist()
    truth = np.array([dataset.truth.get(t, -1) for t in ids], dtype=np.int64)
    return Replay(
        name=name,
        n_classes=int(max(dataset.labels.max(), max(dataset.truth.values()))) + 1,
        n_workers=int(worker_index.max()) + 1,
        task_ids=ids,
        starts=starts,
        workers=worker_index.reshape(-1)[order].astype(np.int64),
        labels=first.labels[order].astype(np.int64),
        truth=truth,
        repeats_dropped=len(dataset.labels) - len(first.labels),
    )


@dataclass(frozen=True)
class Arrival:
    """One seed's arrival order: tasks in ``task_order``; answer positions per task, in order."""

    task_order: NDArray[np.int64]
    answer_order: list[NDArray[np.int64]]  # per task: indices into Replay.workers / labels


def arrival(replay: Replay, seed: int) -> Arrival:
    rng = np.random.default_rng(seed)
    task_order = rng.permutation(replay.n_tasks).astype(np.int64)
    answer_order = [
        replay.starts[t] + rng.permutation(int(replay.starts[t + 1] - replay.starts[t]))
        for t in range(replay.n_tasks)
    ]
    return Arrival(task_order, answer_order)


@dataclass(frozen=True)
class Outcome:
    scored: int  # tasks with a truth and an answer
    correct: int  # of those, labelled right
    answers: int  # answers taken on those tasks
    answers_all: float  # mean answers per task, over every task
    stopped: float = math.nan  # share of tasks that reached the target
    escalated: float = math.nan  # share that used every answer and stayed below it

    @property
    def accuracy(self) -> float:
        return self.correct / self.scored


def final_labels(replay: Replay, taken: NDArray[np.int64], per_task: NDArray[np.int64]) -> Outcome:
    """Score the default method on the answers ``taken`` (indices into the replay's arrays)."""
    task_of = np.repeat(np.arange(replay.n_tasks), replay.available())
    model = make_aggregator(DEFAULT_METHOD)
    model.fit((task_of[taken], replay.workers[taken], replay.labels[taken]))
    predicted = np.full(replay.n_tasks, -1, dtype=np.int64)
    predicted[model.tasks_.astype(np.int64)] = model.predict()
    scored = (replay.truth >= 0) & (per_task > 0)
    return Outcome(
        scored=int(scored.sum()),
        correct=int(np.count_nonzero(predicted[scored] == replay.truth[scored])),
        answers=int(per_task[scored].sum()),
        answers_all=float(per_task.mean()),
    )


def fixed(replay: Replay, order: Arrival, k: int) -> Outcome:
    taken = np.concatenate([answers[:k] for answers in order.answer_order])
    per_task = np.minimum(replay.available(), k)
    return final_labels(replay, taken, per_task)


class OnlineSkill:
    """Annotator accuracies (and optionally the class prior), from refits on the answers taken
    so far only."""

    def __init__(self, replay: Replay, online_prior: bool) -> None:
        self.replay = replay
        self.online_prior = online_prior
        unseen = smoothed_accuracy(0.0, 0.0, PRIOR_ACCURACY, PRIOR_STRENGTH)
        self.accuracy = np.full(replay.n_workers, unseen)
        self.prior: list[float] | None = None  # uniform until the first fit

    def refit(self, tasks: list[int], workers: list[int], labels: list[int]) -> None:
        if not tasks:
            return
        model = DawidSkene(n_classes=self.replay.n_classes)
        model.fit((np.asarray(tasks), np.asarray(workers), np.asarray(labels)))
        counts = np.bincount(np.asarray(workers), minlength=self.replay.n_workers)
        for worker, accuracy in model.worker_accuracy().items():
            n = float(counts[worker])
            self.accuracy[worker] = smoothed_accuracy(
                accuracy * n, n, PRIOR_ACCURACY, PRIOR_STRENGTH
            )
        if self.online_prior:
            self.prior = model.priors_.tolist()


@dataclass(frozen=True)
class Setting:
    target: float
    min_annotators: int
    class_prior: str = "uniform"  # or "online": the refit's priors_

    @property
    def default(self) -> bool:
        return self == DEFAULT_SETTING


DEFAULT_SETTING = Setting(0.95, 2)


def adaptive(replay: Replay, order: Arrival, setting: Setting, refit_every: int) -> Outcome:
    classes = [str(c) for c in range(replay.n_classes)]
    skill = OnlineSkill(replay, online_prior=setting.class_prior == "online")
    target, min_annotators = setting.target, setting.min_annotators
    taken_tasks: list[int] = []
    taken_workers: list[int] = []
    taken_labels: list[int] = []
    taken: list[int] = []
    per_task = np.zeros(replay.n_tasks, dtype=np.int64)
    stopped = escalated = 0
    for done, task in enumerate(order.task_order.tolist()):
        if done and done % refit_every == 0:
            skill.refit(taken_tasks, taken_workers, taken_labels)
        answers = order.answer_order[task]
        available = len(answers)
        labels: list[str] = []
        accuracies: list[float] = []
        decision = "more"
        for position in answers.tolist():
            worker = int(replay.workers[position])
            label = int(replay.labels[position])
            taken.append(position)
            taken_tasks.append(task)
            taken_workers.append(worker)
            taken_labels.append(label)
            labels.append(classes[label])
            accuracies.append(float(skill.accuracy[worker]))
            posterior = one_coin_posterior(labels, accuracies, classes, skill.prior)
            decision = redundancy_decision(
                max(posterior.values()),
                len(labels),
                min(min_annotators, available),
                available,
                target,
            )
            if decision != "more":
                break
        per_task[task] = len(labels)
        stopped += decision == "stop"
        escalated += decision == "escalate"
    outcome = final_labels(replay, np.asarray(taken, dtype=np.int64), per_task)
    return Outcome(
        scored=outcome.scored,
        correct=outcome.correct,
        answers=outcome.answers,
        answers_all=outcome.answers_all,
        stopped=stopped / replay.n_tasks,
        escalated=escalated / replay.n_tasks,
    )


def _mean(values: Sequence[float]) -> float:
    return round(statistics.fmean(values), 4)


def summarize(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Means over seeds (rounded, for reading) and the exact totals that comparisons use.

    Every seed scores the same tasks, so the mean accuracy over seeds is the total of correct
    labels over the total scored, and one policy matches or beats another exactly when its
    total of correct labels is at least the other's: an integer comparison, no rounding.
    """
    accuracies = [o.accuracy for o in outcomes]
    scored = sum(o.scored for o in outcomes)
    correct = sum(o.correct for o in outcomes)
    answers = sum(o.answers for o in outcomes)
    summary: dict[str, Any] = {
        "answers_per_task": round(answers / scored, 4),
        "answers_per_task_all_tasks": _mean([o.answers_all for o in outcomes]),
        "accuracy": round(correct / scored, 4),
        "accuracy_min": round(min(accuracies), 4),
        "accuracy_max": round(max(accuracies), 4),
        "totals_over_seeds": {"scored": scored, "correct": correct, "answers": answers},
    }
    if not math.isnan(outcomes[0].stopped):
        summary["share_stopped"] = _mean([o.stopped for o in outcomes])
        summary["share_escalated"] = _mean([o.escalated for o in outcomes])
    return summary


def interpolated_answers(accuracy: float, fixed_entries: list[dict[str, Any]]) -> float | None:
    """Fewest answers per task with which a fixed policy mixing k and k + 1 reaches ``accuracy``.

    Giving k answers to a random share of the tasks and k + 1 to the rest has (in expectation)
    the linearly interpolated accuracy and answers of the two; None when no fixed k reaches it.
    """
    previous: dict[str, Any] | None = None
    for entry in fixed_entries:
        if _exact(entry, "correct") >= accuracy:
            if previous is None:
                return _exact(entry, "answers")
            # previous accuracy < accuracy <= this one: a proper mixture of the two.
            low_accuracy, high_accuracy = _exact(previous, "correct"), _exact(entry, "correct")
            share = (accuracy - low_accuracy) / (high_accuracy - low_accuracy)
            low, high = _exact(previous, "answers"), _exact(entry, "answers")
            return low + share * (high - low)
        previous = entry
    return None


def _exact(entry: dict[str, Any], total: str) -> float:
    """Accuracy (``correct``) or answers per task (``answers``), unrounded."""
    totals = entry["totals_over_seeds"]
    return float(totals[total] / totals["scored"])


def compare(adaptive_entry: dict[str, Any], fixed_entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The comparison rule of the module doc: k_ref and the reduction against it.

    "Matches or beats" compares the totals of correct labels over the seeds (the same tasks
    are scored under every policy and seed), so nothing is rounded before it is compared.
    """
    correct = adaptive_entry["totals_over_seeds"]["correct"]
    answers = _exact(adaptive_entry, "answers")
    k_ref: dict[str, Any] | None = None
    beats: dict[str, Any] | None = None
    for entry in fixed_entries:
        if entry["totals_over_seeds"]["scored"] != adaptive_entry["totals_over_seeds"]["scored"]:
            raise RuntimeError("policies scored different tasks: the comparison would be unfair")
        if correct >= entry["totals_over_seeds"]["correct"]:
            k_ref = entry
        else:
            beats = entry
            break
    interpolated = interpolated_answers(_exact(adaptive_entry, "correct"), fixed_entries)
    result: dict[str, Any] = {
        "k_ref": None,
        "fixed_answers_per_task": None,
        "fixed_accuracy": None,
        "reduction": None,
        "goal_met": False,
        "first_more_accurate_k": beats["k"] if beats else None,
        "reduction_vs_first_more_accurate_k": (
            round(1 - answers / _exact(beats, "answers"), 4) if beats else None
        ),
        "interpolated_fixed_answers_per_task": (
            round(interpolated, 4) if interpolated is not None else None
        ),
        "reduction_vs_interpolated_fixed": (
            round(1 - answers / interpolated, 4) if interpolated is not None else None
        ),
    }
    if k_ref is not None:
        reduction = 1 - answers / _exact(k_ref, "answers")
        result.update(
            k_ref=k_ref["k"],
            fixed_answers_per_task=k_ref["answers_per_task"],
            fixed_accuracy=k_ref["accuracy"],
            reduction=round(reduction, 4),
            goal_met=reduction >= GOAL,
        )
    return result


def evaluate(replay: Replay, seeds: Sequence[int], settings: Sequence[Setting]) -> dict[str, Any]:
    available = replay.available()
    scored = replay.truth >= 0
    median = float(np.median(available[scored]))
    refit_every = max(10, math.ceil(replay.n_tasks / REFITS))
    if replay.n_tasks > LARGE:
        seeds = seeds[:LARGE_SEEDS]
    orders = [arrival(replay, seed) for seed in seeds]
    fixed_entries = []
    for k in range(1, int(available.max()) + 1):
        fixed_entries.append({"k": k, **summarize([fixed(replay, o, k) for o in orders])})
    adaptive_entries = []
    for setting in settings:
        started = time.perf_counter()
        entry = {
            "target_confidence": setting.target,
            "min_annotators": setting.min_annotators,
            "class_prior": setting.class_prior,
            "default": setting.default,
            **summarize([adaptive(replay, o, setting, refit_every) for o in orders]),
        }
        entry["comparison"] = compare(entry, fixed_entries)
        adaptive_entries.append(entry)
        print(
            f"  {replay.name} {setting}: {entry['answers_per_task']} answers/task, accuracy "
            f"{entry['accuracy']} ({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    default = next((e for e in adaptive_entries if e["default"]), None)
    return {
        "tasks": replay.n_tasks,
        "tasks_scored": int(scored.sum()),
        "classes": replay.n_classes,
        "workers": replay.n_workers,
        "answers_replayed": int(available.sum()),
        "repeated_pairs_dropped": replay.repeats_dropped,
        "seeds": list(seeds),
        "available_answers_per_scored_task": {
            "mean": round(float(available[scored].mean()), 2),
            "median": median,
            "min": int(available[scored].min()),
            "max": int(available[scored].max()),
        },
        "meaningful": median >= MEANINGFUL_MEDIAN,
        "refit_every_tasks": refit_every,
        "fixed": fixed_entries,
        "adaptive": adaptive_entries,
        "headline": None if default is None else {**default["comparison"]},
    }


def _sources() -> dict[str, str]:
    """SHA-256 of the modules whose behaviour the figures depend on, to tell versions apart."""
    import hashlib

    import quality.adaptive
    import quality.dawid_skene

    return {
        module.__name__: hashlib.sha256(Path(str(module.__file__)).read_bytes()).hexdigest()
        for module in (quality.adaptive, quality.dawid_skene)
    }


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in ("quorum", "numpy", "scipy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _fewer(reduction: float) -> str:
    return f"{reduction:.1%} fewer" if reduction >= 0 else f"{-reduction:.1%} more"


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, r in results.items():
        meaningful = "meaningful" if r["meaningful"] else "NOT meaningful: too few answers per task"
        lines.append(
            f"\n### {name} ({r['tasks_scored']} scored tasks, median "
            f"{r['available_answers_per_scored_task']['median']:g} answers per task, "
            f"{len(r['seeds'])} seeds; {meaningful})\n"
        )
        lines.append("| policy | answers/task | accuracy (min-max over seeds) | vs fixed k_ref |")
        lines.append("| --- | --- | --- | --- |")
        for e in r["adaptive"]:
            c = e["comparison"]
            versus = (
                f"k_ref={c['k_ref']}: {_fewer(c['reduction'])}"
                if c["k_ref"] is not None
                else "less accurate than fixed k=1"
            )
            name_cell = f"adaptive t={e['target_confidence']} min={e['min_annotators']}"
            if e["class_prior"] != "uniform":
                name_cell += f" prior={e['class_prior']}"
            if e["default"]:
                name_cell = f"**{name_cell} (default)**"
            lines.append(
                f"| {name_cell} | {e['answers_per_task']:.2f} | {e['accuracy']:.4f} "
                f"({e['accuracy_min']:.4f}-{e['accuracy_max']:.4f}) | {versus} |"
            )
        for e in r["fixed"]:
            lines.append(
                f"| fixed k={e['k']} | {e['answers_per_task']:.2f} | {e['accuracy']:.4f} "
                f"({e['accuracy_min']:.4f}-{e['accuracy_max']:.4f}) | |"
            )
    return "\n".join(lines)


def run(
    datasets: Sequence[str], seeds: Sequence[int], settings: Sequence[Setting]
) -> tuple[Path, dict[str, Any]]:
    root = crowd_dir()
    results: dict[str, Any] = {}
    missing = []
    for name in datasets:
        if not (root / name / "answers.csv").is_file():
            missing.append(name)
            continue
        print(f"{name}:", file=sys.stderr, flush=True)
        results[name] = evaluate(prepare(name, root), seeds, settings)
    meaningful = {n: r for n, r in results.items() if r["meaningful"]}
    output = {
        "benchmark": "adaptive_redundancy",
        "command": " ".join(["python -m bench.adaptive_redundancy", *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "versions": _versions(),
        "source_sha256": _sources(),
        "goal": f"at least {GOAL:.0%} fewer answers than a fixed number per task, at equal "
        "accuracy (issue #7)",
        "comparison_rule": (
            "at the default setting, k_ref is the largest k such that the adaptive mean accuracy "
            ">= the fixed-k mean accuracy for every k' <= k (no tolerance); reduction = 1 - "
            "adaptive answers per task / fixed k_ref answers per task; goal met when reduction "
            f">= {GOAL}. Not the headline: reduction_vs_first_more_accurate_k (against k_ref + "
            "1, strictly more accurate than the adaptive run) and "
            "reduction_vs_interpolated_fixed (against the fixed policy mixing k and k + 1 "
            "answers that reaches the adaptive accuracy)."
        ),
        "setup": {
            "seeds": list(seeds),
            "seeds_on_datasets_over_5000_tasks": list(seeds[:LARGE_SEEDS]),
            "arrival_order": "per seed: tasks in a random order, each task's answers in a "
            "random order; adaptive and fixed policies share it",
            "default_setting": {
                "target_confidence": DEFAULT_SETTING.target,
                "min_annotators": DEFAULT_SETTING.min_annotators,
                "class_prior": DEFAULT_SETTING.class_prior,
            },
            "max_annotators": "all the answers the dataset has for the task (escalated = used "
            "them all and stayed below the target)",
            "settings": [
                {
                    "target_confidence": s.target,
                    "min_annotators": s.min_annotators,
                    "class_prior": s.class_prior,
                }
                for s in settings
            ],
            "confidence": "largest value of quality.one_coin_posterior of the answers taken",
            "online_skill": (
                "every refit_every tasks (max(10, ceil(tasks / 50))), quorum DawidSkene (default "
                "priors) refitted on the answers taken so far; accuracy = smoothed_accuracy("
                "worker_accuracy * n, n) with n the worker's answers in the fit; workers not in "
                "the fit get smoothed_accuracy(0, 0); the truth and unused answers are never read"
            ),
            "class_prior": "uniform; 'online' = the last refit's priors_ (uniform before it)",
            "smoothed_accuracy": {
                "prior_accuracy": PRIOR_ACCURACY,
                "prior_strength": PRIOR_STRENGTH,
            },
            "final_labels": f"quality.make_aggregator({DEFAULT_METHOD!r}) on the answers taken",
            "scoring": "accuracy over tasks with a truth and at least one answer; answers per "
            "task over the same tasks (answers_per_task_all_tasks: over every task); means "
            "over seeds, min/max over seeds",
            "repeated_pairs": "only the first answer of each (task, worker) pair, in file order",
            "meaningful": f"median available answers per scored task >= {MEANINGFUL_MEDIAN}",
        },
        "missing_datasets": missing,
        "summary": {
            name: {"meaningful": r["meaningful"], **(r["headline"] or {})}
            for name, r in results.items()
        },
        "goal_met_on_every_meaningful_dataset": bool(meaningful)
        and all(r["headline"] and r["headline"]["goal_met"] for r in meaningful.values()),
        "results": results,
    }
    path = results_dir() / "adaptive_redundancy.json"
    path.write_text(json.dumps(output, indent=2) + "\n")
    return path, output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.adaptive_redundancy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--datasets", nargs="+", choices=DATASETS)
    parser.add_argument("--seeds", type=int, default=SEEDS, help="number of arrival orders")
    parser.add_argument(
        "--small",
        action="store_true",
        help="one seed, bluebirds, dog and d_possent, the default setting only (make bench)",
    )
    args = parser.parse_args(argv)
    if args.small:
        datasets = args.datasets or list(SMALL_DATASETS)
        seeds = [0]
        settings = [DEFAULT_SETTING]
    else:
        datasets = args.datasets or list(DATASETS)
        seeds = list(range(args.seeds))
        settings = [Setting(t, m) for m in MIN_ANNOTATORS for t in TARGETS]
        settings.append(Setting(DEFAULT_SETTING.target, DEFAULT_SETTING.min_annotators, "online"))
    path, output = run(datasets, seeds, settings)
    print(markdown(output["results"]))
    print("\nheadline (default setting):")
    for name, s in output["summary"].items():
        if s.get("k_ref") is None:
            verdict = "the adaptive run is less accurate than fixed k=1"
        else:
            verdict = (
                f"{_fewer(s['reduction'])} answers than fixed k={s['k_ref']} -> goal "
                f"{'met' if s['goal_met'] else 'MISSED'}"
            )
        note = "" if s["meaningful"] else " (not meaningful: too few answers per task)"
        print(f"  {name}: {verdict}{note}")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
