"""Where benchmark results go (bench/results/, or $QUORUM_BENCH_RESULTS), and what every
result records about the machine it was measured on.

`make bench` runs small sizes into bench/results/small/, so the committed full-size results
are never overwritten by a quick run.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

DEFAULT = Path(__file__).resolve().parent / "results"
# The 1-minute load average, per core, above which a run is marked as sharing the machine.
BUSY_LOAD_PER_CPU = 0.5


def results_dir() -> Path:
    path = Path(os.environ.get("QUORUM_BENCH_RESULTS", DEFAULT))
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def command_line(module: str, argv: Sequence[str] | None = None) -> str:
    """The command that reproduces a run: ``python -m <module>`` and its arguments."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", "-m", module, *args])


def invoked_by() -> str | None:
    """The command that ran a whole set (``python -m bench --full``), when one did."""
    return os.environ.get("QUORUM_BENCH_INVOKED_BY")


def code_version() -> dict[str, Any]:
    """The commit measured, and the files that differed from it (so a before/after pair
    says exactly which code each side ran)."""
    repo = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout if done.returncode == 0 else ""

    changed = [line[3:] for line in git("status", "--porcelain").splitlines() if line[3:]]
    return {"commit": git("rev-parse", "HEAD").strip() or None, "uncommitted": sorted(changed)}


def _version(package: str) -> str | None:
    if package == "temporal-cli":
        from infra.devstack import TEMPORAL_CLI_MODULE

        return TEMPORAL_CLI_MODULE.rsplit("@", 1)[1]
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def machine(
    *packages: str, load_at_start: tuple[float, float, float] | None = None
) -> dict[str, Any]:
    """The machine, the versions of ``packages`` (``temporal-cli`` for the dev server), and the
    load average (1, 5, 15 min) now and, when given, when the run started.

    Timings are only comparable on a quiet machine. The load at the start is mostly other
    people's work (the run has not begun); the load at the end includes the run itself. A busy
    start is said so in ``load_note``, so nobody mistakes a noisy figure for a regression.
    """
    cpus = os.cpu_count() or 1
    loads: dict[str, tuple[float, float, float]] = {}
    if load_at_start is not None:
        loads["at_start"] = load_at_start
    loads["at_end"] = load_average()
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": cpus,
        "versions": {p: _version(p) for p in packages},
        "load_average": {k: list(v) for k, v in loads.items()},
    }
    first = load_at_start or loads["at_end"]
    if first[0] > BUSY_LOAD_PER_CPU * cpus:
        when = (
            "when the run started (other work, or a run just before)"
            if load_at_start
            else "at the end of the run"
        )
        info["load_note"] = (
            f"the machine was busy: 1-minute load {first[0]} on {cpus} cores {when}; "
            "timings are noisy, counts are not"
        )
    return info
