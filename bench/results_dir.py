"""Where benchmark results go: bench/results/, or $QUORUM_BENCH_RESULTS.

`make bench` runs small sizes into bench/results/small/, so the committed full-size results
are never overwritten by a quick run.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT = Path(__file__).resolve().parent / "results"


def results_dir() -> Path:
    path = Path(os.environ.get("QUORUM_BENCH_RESULTS", DEFAULT))
    path.mkdir(parents=True, exist_ok=True)
    return path
