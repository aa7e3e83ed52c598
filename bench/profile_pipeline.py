"""Where an image's cost goes: database statements, Temporal work, payloads and CPU.

Runs one campaign like ``bench.pipeline_bench`` (k = 3 simulated annotators through the API,
``quorum worker`` in its own process) with instruments on:

- every SQL statement, transaction and pool checkout, in the API (per route: claims, empty
  claims, submissions) and in the worker (per activity), by statement kind
  (``bench.sql_counter``);
- history events, workflow tasks, activities, signals and bytes per image;
- CPU seconds per image of each process (worker, API + simulated crowd, Temporal server,
  PostgreSQL), read from /proc;
- with ``--py-spy`` (``pip install py-spy``), sampled stacks of the worker and of the API
  process, summarised as self time by package and the project functions with the most time.

Writes ``bench/results/profile-<db>-<N>-<label>.json``. Counts are exact whatever the load on
the machine; times are not (the JSON records the load average).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench import sql_counter
from bench.pipeline_bench import (
    PACKAGES,
    history_counts,
    peak_rss_mb,
    per_image,
    pipeline_stack,
    run_campaign,
    start_workers,
    stop_workers,
    wait_for_workers,
)
from bench.results_dir import (
    code_version,
    command_line,
    invoked_by,
    load_average,
    machine,
    results_dir,
)
from db.audit_models import AuditEntry
from db.engine import create_engine
from schemas.workflow_io import campaign_workflow_id, item_workflow_id

REPO = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
# Leaf frames (file name, function) that are a thread waiting, not working.
IDLE = {
    ("selectors.py", "select"),
    ("threading.py", "wait"),
    ("queue.py", "get"),
    ("thread.py", "_worker"),
    ("core.py", "_connection_worker_thread"),  # aiosqlite's thread, waiting for work
}
PROJECT = {
    "activities", "api", "bench", "cli", "db", "infra", "quality", "schemas", "services",
    "simulation", "storage", "workers", "workflows",
}  # fmt: skip
CLAIM = "POST /campaigns/{id}/tasks/next"
SUBMIT = "POST /campaigns/{id}/tasks/{id}/response"


def _cpu_seconds(pid: int, *, children: bool = False) -> float:
    """utime + stime of a live process (and of its reaped children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    used = int(fields[11]) + int(fields[12])
    if children:
        used += int(fields[13]) + int(fields[14])
    return used / TICKS


def _postgres_cpu(postmaster: int) -> float:
    """The postmaster, its reaped backends, and its live ones."""
    total = _cpu_seconds(postmaster, children=True)
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{postmaster}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += _cpu_seconds(int(child))
    return total


class CpuMeter:
    def __init__(self, pids: dict[str, int | None], postmaster: int | None) -> None:
        self._pids = {k: v for k, v in pids.items() if v is not None}
        self._postmaster = postmaster
        self._start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        out = {name: _cpu_seconds(pid) for name, pid in self._pids.items()}
        own = resource.getrusage(resource.RUSAGE_SELF)
        out["api_and_crowd"] = own.ru_utime + own.ru_stime
        if self._postmaster is not None:
            out["postgres"] = _postgres_cpu(self._postmaster)
        return out

    def __enter__(self) -> CpuMeter:
        self._start = self._read()
        return self

    def __exit__(self, *_: object) -> None:
        end = self._read()
        self.used = {k: end[k] - self._start.get(k, 0.0) for k in end}


class Sampler:
    """py-spy on a few processes for the duration of a block (no-op without py-spy)."""

    def __init__(self, out: Path, pids: dict[str, int]) -> None:
        self._out = out
        self._pids = pids
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))

    def available(self) -> bool:
        return Path(self.binary).exists()

    def __enter__(self) -> Sampler:
        self._out.mkdir(parents=True, exist_ok=True)
        for name, pid in self._pids.items():
            self._procs[name] = subprocess.Popen(
                [
                    self.binary,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    "50",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--output",
                    str(self._out / f"{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        time.sleep(1)  # py-spy attaches before the measured work starts
        return self

    def __exit__(self, *_: object) -> None:
        for proc in self._procs.values():
            proc.send_signal(signal.SIGINT)
        for proc in self._procs.values():
            proc.wait(60)

    def summaries(self) -> dict[str, Any]:
        return {
            name: summarise_stacks(self._out / f"{name}.txt")
            for name in self._pids
            if (self._out / f"{name}.txt").exists()
        }


def _frame(frame: str) -> tuple[str, str]:
    """(function, file) of a py-spy frame ``function (file:line)``; files are relative to
    their sys.path entry (``sqlalchemy/orm/session.py``) or absolute."""
    match = re.match(r"^(.*) \((.*):\d+\)$", frame)
    if not match:
        return frame, ""
    file = match.group(2)
    if file.startswith(str(REPO) + "/"):
        file = file[len(str(REPO)) + 1 :]
    if "site-packages/" in file:
        file = file.split("site-packages/", 1)[1]
    return match.group(1), file


def _package_of(file: str) -> str:
    if file.startswith("<frozen"):
        return "importlib" if "importlib" in file else file
    top = file.split("/", 1)[0].removesuffix(".py")
    return f"quorum:{top}" if top in PROJECT else top


def summarise_stacks(path: Path, top: int = 15) -> dict[str, Any]:
    """Self time by package (the leaf frame's), and the project functions with the most
    inclusive time, as shares of the busy samples (stacks whose leaf is not a thread
    waiting)."""
    busy = total = 0
    by_package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")]
        function, file = frames[-1]
        if (Path(file).name, function.rsplit(".", 1)[-1]) in IDLE:
            continue
        busy += n
        by_package[_package_of(file)] += n
        seen = set()
        for function, file in frames:
            # The entry points (bench, cli, workers) contain everything; they say nothing.
            if file.split("/", 1)[0] in PROJECT - {"bench", "cli", "workers"}:
                name = f"{file}:{function}"
                if name not in seen:
                    seen.add(name)
                    inclusive[name] += n

    def share(n: int) -> float:
        return round(n / busy, 3) if busy else 0.0

    return {
        "samples": total,
        "busy_samples": busy,
        "self_by_package": {k: share(v) for k, v in by_package.most_common(top)},
        "project_functions_inclusive": {k: share(v) for k, v in inclusive.most_common(top)},
    }


def _merge(snapshots: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    merged: dict[str, Counter[str]] = {}
    for snap in snapshots:
        for scope, counts in snap["by_scope"].items():
            merged.setdefault(scope, Counter()).update(counts)
    return merged


def _per(counts: Counter[str], n: float, kinds: int = 8) -> dict[str, Any]:
    def r(v: float) -> float:
        return round(v / n, 2) if n else 0.0

    sql = Counter({k[5:]: v for k, v in counts.items() if k.startswith("sql: ")})
    return {
        "statements": r(counts["statements"]),
        "transactions": r(counts["transactions"]),
        "pool_checkouts": r(counts["pool_checkouts"]),
        "pings": r(counts["pings"]),
        "statements_by_kind": {k: r(v) for k, v in sql.most_common(kinds)},
    }


def database_profile(
    api: dict[str, Any], workers: list[dict[str, Any]], images: int
) -> dict[str, Any]:
    api_scopes = _merge([api])
    worker_scopes = _merge(workers)
    requests: Counter[str] = Counter(api["requests"])
    everything: Counter[str] = Counter()
    for counts in [*api_scopes.values(), *worker_scopes.values()]:
        everything.update(counts)
    api_total: Counter[str] = Counter()
    for counts in api_scopes.values():
        api_total.update(counts)
    worker_total: Counter[str] = Counter()
    for counts in worker_scopes.values():
        worker_total.update(counts)
    return {
        "per_image": {
            "all": _per(everything, images, kinds=12),
            "api": _per(api_total, images),
            "worker": _per(worker_total, images),
        },
        "api_per_request": {
            route: {"requests": requests[route], **_per(api_scopes[route], requests[route])}
            for route in sorted(api_scopes, key=lambda r: -requests[r])
            if requests[route]
        },
        "api_requests_per_image": {r: round(n / images, 2) for r, n in requests.most_common()},
        "worker_per_image_by_scope": {
            scope: _per(counts, images, kinds=5) for scope, counts in sorted(worker_scopes.items())
        },
        # In order: the first request of each route, the first run of each activity.
        "example_sequences": {
            **api.get("examples", {}),
            **{k: v for w in workers for k, v in w.get("examples", {}).items()},
        },
    }


async def _count_audit_entries(url: str, campaign_id: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            n = await conn.scalar(select(func.count()).where(AuditEntry.campaign_id == campaign_id))
    finally:
        await engine.dispose()
    return int(n or 0)


async def run_profile(
    images: int, *, db: str, label: str, py_spy: bool, annotators: int = 6
) -> Path:
    load_at_start = load_average()
    async with pipeline_stack(db) as stack:
        settings, client = stack.settings, stack.client
        counts_dir = settings.home / "sql-counts"
        sql_counter.install()
        workers = start_workers(
            settings,
            1,
            settings.home / "workers.log",
            command=("-m", "bench.sql_counter", "worker"),
            env={"QUORUM_BENCH_SQL_COUNTS": str(counts_dir)},
        )
        worker_pid = workers[0].pid
        postmaster = stack.postgres.pid if stack.postgres else None
        meter = CpuMeter({"worker": worker_pid, "temporal": stack.temporal.pid}, postmaster)
        sampler = Sampler(
            settings.home / "py-spy", {"worker": worker_pid, "api_and_crowd": os.getpid()}
        )
        sampling = py_spy and sampler.available()

        @contextlib.asynccontextmanager
        async def measured() -> AsyncIterator[None]:
            sql_counter.COUNTS.clear()
            with meter, sampler if sampling else contextlib.nullcontext():
                yield

        try:
            await wait_for_workers(client, settings.temporal.task_queue, 1)
            cid, elapsed, result = await run_campaign(
                settings,
                images,
                annotators=annotators,
                wrap_app=sql_counter.route_scope,
                around=measured,
            )
            api_counts = sql_counter.COUNTS.snapshot()
            rss = peak_rss_mb(worker_pid)
        finally:
            stop_workers(workers)
        worker_counts = [json.loads(p.read_text()) for p in counts_dir.glob("worker-*.json")]
        audit_entries = await _count_audit_entries(settings.database_url, cid)
        sample = range(0, images, max(1, images // 10))
        agreed = [await history_counts(client, item_workflow_id(cid, n)) for n in sample]
        campaign = await history_counts(client, campaign_workflow_id(cid))
        stacks = sampler.summaries() if sampling else None

    database = database_profile(api_counts, worker_counts, images)
    routes = database["api_per_request"]

    def statements(route: str) -> float | None:
        return routes[route]["statements"] if route in routes else None

    out: dict[str, Any] = {
        "benchmark": "profile",
        "label": label,
        "at": datetime.now(UTC).isoformat(),
        "machine": machine(*PACKAGES, "py-spy", load_at_start=load_at_start),
        "command": f"python -m bench.profile_pipeline --images {images} --db {db} "
        f"--label {label}" + (" --py-spy" if py_spy else ""),
        "invoked_by": invoked_by(),
        "code": code_version(),
        "config": {
            "images": images,
            "annotators": annotators,
            "annotators_per_image": 3,
            "database": db,
            "worker_processes": 1,
            "api": "in-process (httpx ASGITransport), like bench.pipeline_bench",
        },
        "results": {
            "seconds": round(elapsed, 2),
            "finished": result.counts.finished,
            "ms_per_image": round(elapsed / images * 1000, 1),
            "cpu_ms_per_image": {k: round(v / images * 1000, 1) for k, v in meter.used.items()},
            "worker_peak_rss_mb": rss,
            "headline": {
                "statements_per_image": database["per_image"]["all"]["statements"],
                "transactions_per_image": database["per_image"]["all"]["transactions"],
                "pings_per_image": database["per_image"]["all"]["pings"],
                # Empty claims depend on how fast the pipeline runs (the crowd polls while it
                # waits for images to open), so compare this one between runs.
                "statements_per_image_without_empty_claims": round(
                    database["per_image"]["all"]["statements"]
                    - (statements(f"{CLAIM} (empty)") or 0.0)
                    * database["api_requests_per_image"].get(f"{CLAIM} (empty)", 0.0),
                    2,
                ),
                "statements_per_claim": statements(CLAIM),
                "statements_per_empty_claim": statements(f"{CLAIM} (empty)"),
                "statements_per_submit": statements(SUBMIT),
                "empty_claims_per_image": database["api_requests_per_image"].get(
                    f"{CLAIM} (empty)", 0.0
                ),
                "audit_entries_per_image": round(audit_entries / images, 2),
            },
            "database": database,
            "temporal_per_image": {
                "agreed_item": per_image(agreed),
                "campaign_events": round(campaign["events"] / images, 2),
                "campaign_workflow_tasks": round(campaign["workflow_tasks"] / images, 3),
                "campaign_activities": round(campaign["activities"] / images, 3),
                "campaign_history_bytes": round(campaign["bytes"] / images, 1),
            },
            "py_spy": stacks
            if stacks is not None
            else ("not installed" if py_spy else "not requested"),
        },
    }
    path = results_dir() / f"profile-{db}-{images}-{label}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    return path


def summarize(directory: Path, argv: list[str] | None = None) -> Path:
    """``profile-summary.json``: every profile run in ``directory``, grouped by database, N
    and label (``before-r2`` counts as ``before``), with the medians of each group. Counts
    repeat exactly from run to run; times vary with the load, hence several runs."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(directory.glob("profile-*.json")):
        if path.name == "profile-summary.json":
            continue
        doc = json.loads(path.read_text())
        r = doc["results"]
        side = re.sub(r"-r\d+$", "", doc["label"])
        key = f"{doc['config']['database']}-{doc['config']['images']}-{side}"
        groups.setdefault(key, []).append(
            {
                "file": path.name,
                "load_average_at_start": _load_at_start(doc),
                "ms_per_image": r["ms_per_image"],
                "cpu_ms_per_image": r["cpu_ms_per_image"],
                **r["headline"],
            }
        )

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    summary = {
        "benchmark": "profile-summary",
        "at": datetime.now(UTC).isoformat(),
        "command": command_line("bench.profile_pipeline", argv),
        "groups": {
            key: {
                "runs": runs,
                "median": {
                    field: round(median([run[field] for run in runs]), 2)
                    for field in runs[0]
                    if isinstance(runs[0][field], int | float)
                    and all(isinstance(run.get(field), int | float) for run in runs)
                },
            }
            for key, runs in sorted(groups.items())
        },
    }
    out = directory / "profile-summary.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    return out


def _load_at_start(doc: dict[str, Any]) -> float | None:
    loads = doc["machine"].get("load_average", {}).get("at_start")
    return loads[0] if loads else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile_pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--label", default="now", help="names the file: before, after, ...")
    parser.add_argument("--py-spy", action="store_true", help="also sample stacks with py-spy")
    parser.add_argument(
        "--summarize", action="store_true", help="only write profile-summary.json from the runs"
    )
    args = parser.parse_args(argv)
    if args.summarize:
        print(summarize(results_dir(), argv).read_text())
        return 0
    path = asyncio.run(run_profile(args.images, db=args.db, label=args.label, py_spy=args.py_spy))
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
