"""Dawid-Skene at scale: 1,000,000 synthetic answers, 500 annotators, 10 classes.

The crowd is simulated with a seeded ``numpy.random.Generator``: 200,000 tasks, 5 distinct
annotators each, drawn in proportion to a heavy-tailed activity (a few annotators answer a lot,
most a little, as in real crowds). Annotators are 80% honest (accuracy uniform in [0.45, 0.95],
errors spread unevenly over the other classes), 10% uniform-random spammers and 10% who always
give the same label. True classes are imbalanced (Dirichlet-drawn priors).

Reported: wall time and process CPU time of `quality.DawidSkene.fit` (best of ``--repeats``
runs, from the raw arrays, so it includes encoding the task and worker ids; the machine may be
shared, so its load average is recorded and CPU time is the steadier figure), the EM steps, the
same for plain EM without SQUAREM (one run, for reference), the accuracy against
the simulated truth beside majority vote's, the peak memory that Python's allocator tracked during
one fit (``tracemalloc``, which numpy reports its buffers to), and the process's maximum resident
set size (``resource.getrusage``), also after the data were generated, for reference.
Optionally (``--crowdkit``) the same fit with crowd-kit's DawidSkene, if installed.

Run: ``.venv/bin/python -m bench.ds_scale`` -> ``bench/results/ds_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from quality import DawidSkene, MajorityVote

RESULTS = Path(__file__).resolve().parent / "results"


def simulate(
    n_answers: int = 1_000_000,
    n_workers: int = 500,
    n_classes: int = 10,
    per_task: int = 5,
    seed: int = 20240601,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """``(task_ids, worker_ids, labels, truth)`` of a simulated crowd; see the module docstring."""
    if n_answers % per_task:
        raise ValueError("n_answers must be a multiple of per_task")
    rng = np.random.default_rng(seed)
    n_tasks = n_answers // per_task
    class_priors = rng.dirichlet(np.full(n_classes, 2.0))
    truth = rng.choice(n_classes, size=n_tasks, p=class_priors)

    confusion = np.empty((n_workers, n_classes, n_classes))
    kind = rng.choice(3, size=n_workers, p=[0.8, 0.1, 0.1])
    for w in range(n_workers):
        if kind[w] == 0:
            accuracy = rng.uniform(0.45, 0.95)
            off = rng.dirichlet(np.ones(n_classes - 1), size=n_classes) * (1 - accuracy)
            for c in range(n_classes):
                confusion[w, c] = np.insert(off[c], c, accuracy)
        elif kind[w] == 1:
            confusion[w] = 1.0 / n_classes
        else:
            confusion[w] = 0.0
            confusion[w, :, rng.integers(n_classes)] = 1.0

    # Distinct annotators per task, drawn with the Gumbel-top-k trick in chunks (a full
    # tasks x workers key matrix would take 800 MB).
    log_activity = np.log(rng.pareto(1.5, size=n_workers) + 0.05)
    workers = np.empty((n_tasks, per_task), dtype=np.int64)
    chunk = 10_000
    for start in range(0, n_tasks, chunk):
        stop = min(start + chunk, n_tasks)
        keys = log_activity + rng.gumbel(size=(stop - start, n_workers))
        workers[start:stop] = np.argpartition(-keys, per_task, axis=1)[:, :per_task]

    task_ids = np.repeat(np.arange(n_tasks, dtype=np.int64), per_task)
    worker_ids = workers.reshape(-1)
    cumulative = np.cumsum(confusion, axis=2)
    draws = rng.random(n_answers)
    rows = cumulative[worker_ids, truth[task_ids]]
    labels = np.minimum((draws[:, None] > rows).sum(axis=1), n_classes - 1).astype(np.int64)
    return task_ids, worker_ids, labels, truth.astype(np.int64)


def _maxrss_mib() -> float:
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def run(repeats: int = 3, with_crowdkit: bool = False, n_answers: int = 1_000_000) -> Path:
    generate_start = time.perf_counter()
    tasks, workers, labels, truth = simulate(n_answers=n_answers)
    generate_seconds = time.perf_counter() - generate_start
    maxrss_after_data = _maxrss_mib()
    answers = (tasks, workers, labels)

    load_at_start = os.getloadavg()
    times: list[float] = []
    cpu_times: list[float] = []
    model = DawidSkene()
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        model = DawidSkene().fit(answers)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)

    start, cpu_start = time.perf_counter(), time.process_time()
    plain = DawidSkene(accelerate=False).fit(answers)
    plain_seconds = time.perf_counter() - start
    plain_cpu_seconds = time.process_time() - cpu_start

    tracemalloc.start()
    tracemalloc.reset_peak()
    DawidSkene().fit(answers)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    # Tasks are 0 .. n_tasks - 1, so tasks_ is in truth order.
    accuracy = float(np.mean(model.predict() == truth))
    mv_accuracy = float(np.mean(MajorityVote(n_classes=10).fit(answers).predict() == truth))
    result: dict[str, Any] = {
        "benchmark": "ds_scale",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "numpy": np.__version__,
            "scipy": _version("scipy"),
            "load_average_at_start": [round(x, 2) for x in load_at_start],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "timing_note": "the machine was shared with other jobs (see the load averages): wall "
        "times are noisy, CPU times steadier",
        "data": {
            "answers": len(labels),
            "tasks": len(truth),
            "annotators": len(np.unique(workers)),
            "classes": 10,
            "answers_per_task": 5,
            "seed": 20240601,
            "generate_seconds": round(generate_seconds, 3),
            "input_mib": round(sum(a.nbytes for a in answers) / 2**20, 1),
        },
        "quorum_dawid_skene": {
            "hyperparameters": {
                "prior_strength": model.prior_strength,
                "prior_diagonal": model.prior_diagonal,
                "prior_guess": model.prior_guess,
                "class_prior": model.class_prior,
                "tol": model.tol,
                "max_iter": model.max_iter,
                "accelerate": model.accelerate,
            },
            "seconds_best": round(min(times), 3),
            "seconds_all": [round(t, 3) for t in times],
            "cpu_seconds_best": round(min(cpu_times), 3),
            "cpu_seconds_all": [round(t, 3) for t in cpu_times],
            "iterations": model.n_iter_,
            "seconds_per_iteration": round(min(times) / model.n_iter_, 4),
            "cpu_seconds_per_iteration": round(min(cpu_times) / model.n_iter_, 4),
            "plain_em": {
                "iterations": plain.n_iter_,
                "seconds": round(plain_seconds, 3),
                "cpu_seconds": round(plain_cpu_seconds, 3),
                "same_labels": bool(np.array_equal(plain.predict(), model.predict())),
            },
            "accuracy": round(accuracy, 4),
            "majority_vote_accuracy": round(mv_accuracy, 4),
            "tracemalloc_peak_mib": round(traced_peak / 2**20, 1),
            "process_maxrss_mib_after_data": round(maxrss_after_data, 1),
            "process_maxrss_mib_after_fits": round(_maxrss_mib(), 1),
        },
    }
    if with_crowdkit:
        result["crowdkit_dawid_skene"] = _crowdkit(tasks, workers, labels, truth)

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "ds_scale.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def _crowdkit(
    tasks: NDArray[np.int64],
    workers: NDArray[np.int64],
    labels: NDArray[np.int64],
    truth: NDArray[np.int64],
) -> dict[str, Any]:
    try:
        import pandas as pd
        from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene
    except ImportError as exc:
        return {"skipped": f"crowd-kit is not installed ({exc}); pip install '.[bench]'"}
    frame = pd.DataFrame({"task": tasks, "worker": workers, "label": labels})
    start, cpu_start = time.perf_counter(), time.process_time()
    model = CrowdKitDawidSkene(n_iter=100).fit(frame)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    labels_series = model.labels_
    if labels_series is None:
        return {"error": "crowd-kit returned no labels"}
    predicted = labels_series.sort_index().to_numpy()
    return {
        "version": _version("crowd-kit"),
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "iterations": len(model.loss_history_),
        "accuracy": round(float(np.mean(predicted == truth)), 4),
        "process_maxrss_mib_after_fit": round(_maxrss_mib(), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ds_scale", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--answers", type=int, default=1_000_000)
    parser.add_argument("--crowdkit", action="store_true", help="also time crowd-kit")
    args = parser.parse_args(argv)
    path = run(repeats=args.repeats, with_crowdkit=args.crowdkit, n_answers=args.answers)
    print(path.read_text())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
