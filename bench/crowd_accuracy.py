"""Truth-inference accuracy on real crowds: Quorum's consensus methods beside crowd-kit's.

For each public dataset under ``<repo>/../shared/data/crowd`` (answers with a known truth; see
its README), every method infers one label per task from all the answers, and is scored on the
tasks that have a truth and at least one answer. Methods: Quorum's default
(`quality.DEFAULT_METHOD`), its plain maximum-likelihood Dawid-Skene and its majority vote;
crowd-kit's MajorityVote, DawidSkene, OneCoinDawidSkene, GLAD, MMSR, Wawa, ZeroBasedSkill, MACE
and KOS with their default settings (seeded where they take a seed). A method that fails on a
dataset is recorded with its error (e.g. KOS is binary-only).

Wall time is the best of up to three runs (one run when the first took over a second), from
each library's natural input (numpy arrays for Quorum, a DataFrame for crowd-kit), so it
includes each one's own encoding of the ids.

Also recorded:

* ``comparison``: per dataset, Quorum's default against crowd-kit's most accurate method there:
  the difference in tasks, the tasks only one of them gets right, and the exact two-sided
  McNemar p-value of that split (how surprising it would be if both were equally accurate).
* ``s_rel_repeats``: s_rel repeats 1,570 (task, worker) pairs; the accuracies of counting every
  answer against keeping only the first or the last answer of each pair.
* ``variants_considered``: every Dawid-Skene setting that was compared when choosing the
  default (the earlier uniform-guess prior, early stopping at the earlier tolerance, plain EM
  without SQUAREM, plain maximum likelihood), each with its correct count per dataset and
  whether it reaches crowd-kit's best on all five; ``variants_explored_in_a_prototype`` lists
  the ideas that were tried outside the module (not rerun here) and how they fared.
* ``default_sensitivity``: the default's accuracy for neighbouring prior settings and with a
  tighter tolerance, to show how much of a difference is noise.

Timing: wall time and process CPU time are both recorded (best of the runs); the machine may be
shared (its load average is recorded at the start and the end), so compare CPU times, and
treat either as indicative only.

Run: ``.venv/bin/pip install -e '.[bench]'`` (crowd-kit 1.4.2, scikit-learn < 1.8), then
``.venv/bin/python -m bench.crowd_accuracy`` -> ``bench/results/crowd_accuracy.json`` and a
Markdown table on stdout. Without crowd-kit, only Quorum's methods run.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from quality import DEFAULT_METHOD, DawidSkene, make_aggregator

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DATASETS = ("bluebirds", "dog", "d_product", "d_possent", "s_rel")
CROWDKIT_METHODS = (
    "MajorityVote",
    "DawidSkene",
    "OneCoinDawidSkene",
    "GLAD",
    "MMSR",
    "Wawa",
    "ZeroBasedSkill",
    "MACE",
    "KOS",
)
QUORUM_METHODS = (DEFAULT_METHOD, "dawid_skene_mle", "majority_vote")


def crowd_dir(repo_root: Path = REPO) -> Path:
    return Path(repo_root).parent / "shared" / "data" / "crowd"


@dataclass(frozen=True)
class Dataset:
    name: str
    tasks: NDArray[np.str_]
    workers: NDArray[np.str_]
    labels: NDArray[np.int64]
    truth: dict[str, int]

    def without_repeats(self, keep: str) -> Dataset:
        """Only the first or the last answer of each (task, worker) pair."""
        order = range(len(self.labels)) if keep == "first" else range(len(self.labels) - 1, -1, -1)
        seen: set[tuple[str, str]] = set()
        rows: list[int] = []
        for i in order:
            pair = (str(self.tasks[i]), str(self.workers[i]))
            if pair not in seen:
                seen.add(pair)
                rows.append(i)
        index = np.sort(np.asarray(rows, dtype=np.int64))
        return Dataset(
            f"{self.name}[{keep} per pair]",
            self.tasks[index],
            self.workers[index],
            self.labels[index],
            self.truth,
        )


def load(name: str, root: Path | None = None) -> Dataset:
    folder = (root or crowd_dir()) / name
    with (folder / "answers.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    with (folder / "truth.csv").open(newline="") as handle:
        truth = {row["task"]: int(row["label"]) for row in csv.DictReader(handle)}
    return Dataset(
        name,
        np.array([r["task"] for r in rows]),
        np.array([r["worker"] for r in rows]),
        np.array([int(r["label"]) for r in rows], dtype=np.int64),
        truth,
    )


def timed(run: Callable[[], dict[str, int]]) -> tuple[dict[str, int], float, float]:
    """``run()``'s result, and its best wall time and best process CPU time over up to three
    runs (one when the first took over a second)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    result = run()
    best, best_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    for _ in range(2):
        if best > 1.0:
            break
        start, cpu_start = time.perf_counter(), time.process_time()
        run()
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - cpu_start)
    return result, best, best_cpu


def score(predicted: dict[str, int], truth: dict[str, int]) -> dict[str, Any]:
    """Accuracy over the tasks that have a truth and an answer (a prediction)."""
    hits = {task: predicted[task] == label for task, label in truth.items() if task in predicted}
    correct = sum(hits.values())
    return {
        "accuracy": round(correct / len(hits), 4) if hits else None,
        "n_tasks_scored": len(hits),
        "n_correct": correct,
        "_hits": hits,
    }


def quorum_predict(dataset: Dataset, method: str, **hyperparameters: Any) -> dict[str, int]:
    model = (DawidSkene(**hyperparameters) if hyperparameters else make_aggregator(method)).fit(
        (dataset.tasks, dataset.workers, dataset.labels)
    )
    return dict(zip(model.tasks_.tolist(), model.predict().tolist(), strict=True))


def crowdkit_predict(frame: Any, method: str) -> dict[str, int]:
    from crowdkit import aggregation

    factory = getattr(aggregation, method)
    seeded = {"MACE", "KOS", "MMSR"}
    model = factory(random_state=0) if method in seeded else factory()
    labels = model.fit_predict(frame)
    return {str(task): int(label) for task, label in labels.items()}


def run_method(predict: Callable[[], dict[str, int]], truth: dict[str, int]) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predicted, seconds, cpu_seconds = timed(predict)
    except Exception as exc:  # a crowd-kit method that does not apply: record why
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return {
        **score(predicted, truth),
        "seconds": round(seconds, 4),
        "cpu_seconds": round(cpu_seconds, 4),
    }


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value: P(a split at least this uneven | no difference)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def compare(default: dict[str, Any], rival: dict[str, Any]) -> dict[str, Any]:
    a, b = default["_hits"], rival["_hits"]
    only_default = sum(1 for t in a if a[t] and not b.get(t, False))
    only_rival = sum(1 for t in b if b[t] and not a.get(t, False))
    return {
        "difference_in_tasks": default["n_correct"] - rival["n_correct"],
        "tasks_only_default_gets_right": only_default,
        "tasks_only_crowdkit_gets_right": only_rival,
        "mcnemar_p": round(mcnemar_p(only_default, only_rival), 4),
    }


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in ("quorum", "numpy", "pandas", "crowd-kit", "scikit-learn", "scipy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if not k.startswith("_")}


def evaluate(dataset: Dataset, crowdkit: Sequence[str]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for method in QUORUM_METHODS:
        key = f"quorum.{method}" + (" (default)" if method == DEFAULT_METHOD else "")
        results[key] = run_method(partial(quorum_predict, dataset, method), dataset.truth)
    if crowdkit:
        import pandas as pd

        frame = pd.DataFrame(
            {"task": dataset.tasks, "worker": dataset.workers, "label": dataset.labels}
        )
        for method in crowdkit:
            results[f"crowdkit.{method}"] = run_method(
                partial(crowdkit_predict, frame, method), dataset.truth
            )
    return results


VARIANTS: dict[str, dict[str, Any]] = {
    "default: base-rate guesses, run to convergence (SQUAREM)": {},
    "default without SQUAREM (plain EM, same fixed point)": {"accelerate": False},
    "base-rate guesses, stopped early (tol=1e-7, plain EM)": {"tol": 1e-7, "accelerate": False},
    "previous default: uniform guesses, tol=1e-7, plain EM": {
        "prior_guess": "uniform",
        "tol": 1e-7,
        "accelerate": False,
    },
    "uniform guesses, run to convergence": {"prior_guess": "uniform"},
    "plain maximum likelihood (no priors), run to convergence": {
        "prior_strength": 0.0,
        "class_prior": 0.0,
    },
}
"""Dawid-Skene settings compared when choosing the default, by what they change."""

PROTOTYPE_VARIANTS: dict[str, Any] = {
    "note": "tried in a throwaway numpy prototype of the same MAP-EM (2026-11-26), run to "
    "convergence (tol=1e-10); not rerun by this script. Values: correct tasks minus crowd-kit's "
    "best per dataset, in the order of 'datasets'. Unless noted, with the uniform-guess prior.",
    "datasets": list(DATASETS),
    "results": {
        "repeated (task, worker) answers weigh 1/m each": [1, 1, -3, 0, -16],
        "repeated answers weigh 1/m each, base-rate guesses": [1, 1, 1, 0, -15],
        "prior mean = pooled majority-vote confusion matrix": [1, -1, -1, 0, -23],
        "empirical-Bayes prior (Dirichlet-multinomial fit)": [0, -10, -11, -2, 46],
        "variational Bayes, exp E[log pi], same prior": [0, -1, -22, -1, -144],
        "one-coin prior mean from majority-vote agreement": [1, 0, -4, 0, -15],
        "start from the prior-mean worker, not majority vote": [1, 0, -3, 0, -13],
        "same start, base-rate guesses": [1, 1, 1, 0, -14],
        "prior rows weighted by the current rho, not rho0": [1, 0, -2, 0, -14],
        "equal prior weight in every row, not by rho0": [1, -1, -10, 0, -22],
        "prior strength x (K - 1), prior_strength=0.5": [1, 0, 0, 0, 6],
        "prior_strength 0.2 .. 3.0 by 0.2, d_product": ["0 for <= 0.8, -2 .. -7 above"],
        "prior_strength 0.2 .. 3.0 by 0.2, s_rel": ["-32 .. +5; >= 0 only for 1.0 .. 1.4"],
    },
}
"""Ideas tried before the module changed, recorded so the choice of the default is visible."""


def variants(dataset: Dataset) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name, hyperparameters in VARIANTS.items():
        model = DawidSkene(**hyperparameters).fit((dataset.tasks, dataset.workers, dataset.labels))
        predicted = dict(zip(model.tasks_.tolist(), model.predict().tolist(), strict=True))
        scored = score(predicted, dataset.truth)
        found[name] = {
            "hyperparameters": hyperparameters,
            "accuracy": scored["accuracy"],
            "n_correct": scored["n_correct"],
            "em_steps": model.n_iter_,
        }
    return found


def sensitivity(dataset: Dataset) -> dict[str, float | None]:
    settings: dict[str, dict[str, float]] = {
        f"prior_strength={s}, prior_diagonal={d}": {"prior_strength": s, "prior_diagonal": d}
        for s in (0.5, 1.0, 2.0)
        for d in (0.6, 0.7, 0.8)
    }
    settings["defaults, tighter tolerance (tol=1e-12)"] = {"tol": 1e-12, "max_iter": 5000}
    return {
        name: score(quorum_predict(dataset, DEFAULT_METHOD, **kw), dataset.truth)["accuracy"]
        for name, kw in settings.items()
    }


def markdown(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    names = list(results)
    methods: list[str] = []
    for per_method in results.values():
        methods += [m for m in per_method if m not in methods]
    lines = [
        "| method | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for method in methods:
        cells = []
        for name in names:
            entry = results[name].get(method, {})
            if "accuracy" in entry:
                cells.append(f"{entry['accuracy']:.4f} ({entry['seconds']:.3g} s)")
            else:
                cells.append("n/a")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    scored = [str(next(iter(results[n].values())).get("n_tasks_scored", "")) for n in names]
    lines.append("| tasks scored | " + " | ".join(scored) + " |")
    return "\n".join(lines)


def run(
    datasets: Sequence[str] = DATASETS, with_crowdkit: bool = True, skip: Sequence[str] = ()
) -> tuple[Path, str]:
    crowdkit_methods: list[str] = []
    crowdkit_note = None
    if with_crowdkit:
        if importlib.util.find_spec("crowdkit") is None:
            crowdkit_note = "crowd-kit is not installed; pip install -e '.[bench]'"
        else:
            crowdkit_methods = [m for m in CROWDKIT_METHODS if m not in skip]

    root = crowd_dir()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    comparison: dict[str, Any] = {}
    sensitivities: dict[str, Any] = {}
    considered: dict[str, Any] = {}
    load_at_start = os.getloadavg()
    missing: list[str] = []
    repeats: dict[str, Any] = {}
    default_key = f"quorum.{DEFAULT_METHOD} (default)"
    for name in datasets:
        if not (root / name / "answers.csv").is_file():
            missing.append(name)
            continue
        dataset = load(name, root)
        print(f"{name}: {len(dataset.labels)} answers", file=sys.stderr, flush=True)
        results[name] = evaluate(dataset, crowdkit_methods)
        sensitivities[name] = sensitivity(dataset)
        considered[name] = variants(dataset)

        rivals = {
            k: v for k, v in results[name].items() if k.startswith("crowdkit.") and "_hits" in v
        }
        if rivals:
            best_key = max(rivals, key=lambda k: (rivals[k]["n_correct"], -rivals[k]["seconds"]))
            ds_key = "crowdkit.DawidSkene"
            default = results[name][default_key]
            comparison[name] = {
                "default": default["accuracy"],
                "best_crowdkit_method": best_key,
                "best_crowdkit_accuracy": rivals[best_key]["accuracy"],
                "default_at_least_as_accurate": default["n_correct"]
                >= rivals[best_key]["n_correct"],
                **compare(default, rivals[best_key]),
                "default_seconds": default["seconds"],
                "default_cpu_seconds": default["cpu_seconds"],
                "crowdkit_dawid_skene_seconds": rivals[ds_key]["seconds"]
                if ds_key in rivals
                else None,
                "crowdkit_dawid_skene_cpu_seconds": rivals[ds_key]["cpu_seconds"]
                if ds_key in rivals
                else None,
                "speedup_vs_crowdkit_dawid_skene": (
                    round(rivals[ds_key]["seconds"] / default["seconds"], 1)
                    if ds_key in rivals
                    else None
                ),
                "cpu_speedup_vs_crowdkit_dawid_skene": (
                    round(rivals[ds_key]["cpu_seconds"] / default["cpu_seconds"], 1)
                    if ds_key in rivals
                    else None
                ),
            }
            for entry in considered[name].values():
                entry["minus_best_crowdkit"] = entry["n_correct"] - rivals[best_key]["n_correct"]

        if name == "s_rel":
            repeats = {"rows": len(dataset.labels)}
            for keep in ("all", "first", "last"):
                variant = dataset if keep == "all" else dataset.without_repeats(keep)
                row: dict[str, Any] = {"answers": len(variant.labels)}
                for method in (DEFAULT_METHOD, "majority_vote"):
                    entry = run_method(partial(quorum_predict, variant, method), dataset.truth)
                    row[f"quorum.{method}"] = entry.get("accuracy", entry.get("error"))
                if crowdkit_methods:
                    import pandas as pd

                    frame = pd.DataFrame(
                        {"task": variant.tasks, "worker": variant.workers, "label": variant.labels}
                    )
                    for method in ("DawidSkene", "MajorityVote"):
                        entry = run_method(partial(crowdkit_predict, frame, method), dataset.truth)
                        row[f"crowdkit.{method}"] = entry.get("accuracy", entry.get("error"))
                repeats[keep] = row

    summary: dict[str, Any] = {}
    for setting in VARIANTS:
        margins = {
            name: per[setting].get("minus_best_crowdkit") for name, per in considered.items()
        }
        summary[setting] = {
            "minus_best_crowdkit": margins,
            "at_least_best_crowdkit_everywhere": bool(margins)
            and all(m is not None and m >= 0 for m in margins.values()),
        }

    output = {
        "benchmark": "crowd_accuracy",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in load_at_start],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "timing_note": "wall and CPU seconds, best of up to three runs; the machine was shared "
        "with other jobs (see the load averages), so times are indicative: compare CPU times",
        "versions": _versions(),
        "default_method": DEFAULT_METHOD,
        "default_hyperparameters": {
            k: getattr(DawidSkene(), k)
            for k in (
                "prior_strength",
                "prior_diagonal",
                "prior_guess",
                "class_prior",
                "tol",
                "max_iter",
                "accelerate",
            )
        },
        "scoring": "accuracy over the tasks that have a truth and at least one answer; "
        "every answer counts (repeated (task, worker) pairs included)",
        "crowdkit": crowdkit_note or "crowd-kit methods with their default settings",
        "missing_datasets": missing,
        "results": {
            name: {method: _public(entry) for method, entry in per.items()}
            for name, per in results.items()
        },
        "comparison": comparison,
        "s_rel_repeats": repeats,
        "variants_considered": {"summary": summary, "per_dataset": considered},
        "variants_explored_in_a_prototype": PROTOTYPE_VARIANTS,
        "default_sensitivity": sensitivities,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "crowd_accuracy.json"
    path.write_text(json.dumps(output, indent=2) + "\n")
    return path, markdown(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crowd_accuracy", description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--no-crowdkit", action="store_true", help="only Quorum's methods")
    parser.add_argument(
        "--skip", nargs="+", default=[], choices=CROWDKIT_METHODS, help="crowd-kit methods to skip"
    )
    args = parser.parse_args(argv)
    path, table = run(args.datasets, with_crowdkit=not args.no_crowdkit, skip=args.skip)
    print(table)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
