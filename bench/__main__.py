"""``make bench``: every benchmark at small sizes, in minutes; results in bench/results/small/.

The committed results in bench/results/ come from the full-size commands in bench/README.md.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable

from bench.results_dir import DEFAULT

# Before the benchmark modules are imported: they read it to pick their results directory.
os.environ.setdefault("QUORUM_BENCH_RESULTS", str(DEFAULT / "small"))


def main() -> int:
    from bench import (
        adaptive_redundancy,
        alpha_speed,
        box_speed,
        consensus_quality,
        publish_bench,
    )
    from bench.pipeline_bench import run_pipeline_bench

    steps: list[tuple[str, Callable[[], object]]] = [
        ("pipeline, 1 worker process", lambda: asyncio.run(run_pipeline_bench(200, processes=1))),
        ("pipeline, 2 worker processes", lambda: asyncio.run(run_pipeline_bench(200, processes=2))),
        ("alpha speed", lambda: alpha_speed.main(["--runs", "3"])),
        ("box speed", lambda: box_speed.main(["--items", "10000", "--two-call-items", "2000"])),
        ("consensus quality", lambda: consensus_quality.main(["--items", "60"])),
        ("adaptive redundancy", lambda: adaptive_redundancy.main(["--small"])),
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


if __name__ == "__main__":
    sys.exit(main())
