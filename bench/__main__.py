"""``make bench``: every benchmark at small sizes, in minutes; results in bench/results/small/.

``make bench-full`` (``python -m bench --full``): the full-size set whose results are committed
in bench/results/: the pipeline on PostgreSQL at N = 1,000 and 10,000 with one worker process,
the process curve at N = 1,000 with 1, 2 and 4 worker processes, the API at 50 and 200
annotators, then the curves (``python -m bench.curves``). ``make bench-100k``
(``python -m bench --100k``) adds the pipeline at N = 100,000. Every step runs as its own
``python -m bench.<module> ...`` process, and its JSON records that command. The sizes can be
changed (``--sizes 20 40 --process-size 20 --api-images 30``) to try the set end to end in a
few minutes; set ``QUORUM_BENCH_RESULTS`` then, so the committed results stay as they are.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.results_dir import DEFAULT

REPO = Path(__file__).resolve().parents[1]


def run_small() -> int:
    # Before the benchmark modules are imported: they read it to pick their results directory.
    os.environ.setdefault("QUORUM_BENCH_RESULTS", str(DEFAULT / "small"))
    from bench import (
        adaptive_redundancy,
        alpha_speed,
        box_speed,
        consensus_quality,
        contested_routing,
        publish_bench,
        publish_memory,
    )
    from bench.pipeline_bench import run_pipeline_bench

    steps: list[tuple[str, Callable[[], object]]] = [
        ("pipeline, 1 worker process", lambda: asyncio.run(run_pipeline_bench(200, processes=1))),
        ("pipeline, 2 worker processes", lambda: asyncio.run(run_pipeline_bench(200, processes=2))),
        ("alpha speed", lambda: alpha_speed.main(["--runs", "3"])),
        ("box speed", lambda: box_speed.main(["--items", "10000", "--two-call-items", "2000"])),
        ("consensus quality", lambda: consensus_quality.main(["--items", "60"])),
        ("adaptive redundancy", lambda: adaptive_redundancy.main(["--small"])),
        ("contested routing", lambda: contested_routing.main(["--small"])),
        (
            "publish memory",
            lambda: publish_memory.main(["--db", "sqlite", "--images", "1000", "5000"]),
        ),
        (
            "publish",
            lambda: publish_bench.main(
                ["--items", "10000", "--out", str(publish_bench.RESULTS / "publish.json")]
            ),
        ),
    ]
    for name, step in steps:
        started = time.monotonic()
        step()
        print(f"bench: {name} done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    print(f"bench: results in {os.environ['QUORUM_BENCH_RESULTS']}", file=sys.stderr)
    return 0


def full_steps(args: argparse.Namespace) -> list[list[str]]:
    """The module commands of the full-size set, in the order they run."""
    steps: list[list[str]] = []
    # The dev server keeps its state in memory: its SQLite file store costs the server more
    # than the pipeline it serves (see bench/README.md), and the runs never restart it.
    pipeline = ["bench.pipeline_bench", "--db", "postgres", "--temporal-store", "memory"]
    if args.full:
        # The process curve first (its one-process point is also the first scale point),
        # then the rest of the scale curve, then the API.
        for p in args.processes:
            steps.append([*pipeline, "--images", str(args.process_size), "--processes", str(p)])
        for n in args.sizes:
            if n != args.process_size or 1 not in args.processes:
                steps.append([*pipeline, "--images", str(n), "--processes", "1"])
        steps.append(
            [
                "bench.api_bench",
                "--concurrency",
                *map(str, args.api_annotators),
                "--images",
                str(args.api_images),
            ]
        )
    if args.hundred_k:
        # The floor's rate does not depend on N; 2,000 bare workflows measure it in a minute.
        steps.append(
            [
                *pipeline,
                "--images",
                str(args.hundred_k_size),
                "--processes",
                "1",
                "--floor-images",
                "2000",
            ]
        )
    steps.append(["bench.curves"])
    return steps


def run_full(args: argparse.Namespace, argv: list[str]) -> int:
    invoked = shlex.join(["python", "-m", "bench", *argv])
    env = {**os.environ, "QUORUM_BENCH_INVOKED_BY": invoked}
    results = env.setdefault("QUORUM_BENCH_RESULTS", str(DEFAULT))
    for step in full_steps(args):
        command = [sys.executable, "-m", *step]
        print(f"bench: {shlex.join(['python', '-m', *step])}", file=sys.stderr, flush=True)
        started = time.monotonic()
        done = subprocess.run(command, cwd=REPO, env=env)
        print(
            f"bench: exit {done.returncode} after {time.monotonic() - started:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        if done.returncode != 0:
            return done.returncode
    print(f"bench: results in {results}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--full", action="store_true", help="the full-size set (bench-full)")
    parser.add_argument(
        "--100k", dest="hundred_k", action="store_true", help="the pipeline at N = 100,000"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--process-size", type=int, default=1000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--api-annotators", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--api-images", type=int, default=400)
    parser.add_argument("--100k-size", dest="hundred_k_size", type=int, default=100_000)
    args = parser.parse_args(argv)
    if args.full or args.hundred_k:
        return run_full(args, argv)
    return run_small()


if __name__ == "__main__":
    sys.exit(main())
