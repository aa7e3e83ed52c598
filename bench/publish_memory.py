"""The worker's memory while it publishes a campaign: does it stay bounded as N grows?

The N = 100,000 pipeline run ended with the worker at 1.92 GB during the final publish, which
then held every record in memory. This measures the publish alone, at several N, without
labeling hours first:

1. a finished campaign of N images (k = 3 answers each, single-label classes, like the pipeline
   bench) is written straight into a fresh database (``simulation.finished_campaign``);
2. a fresh Python process (the "worker") runs the publish activity on it, in Temporal's
   ActivityEnvironment, to a local dataset store; a thread samples its resident memory every
   50 ms from before the activity starts until it ends.

Reported per N: the process's RSS before the publish, its peak during it, the difference, and
the publish time. ``--code-dir`` runs the worker side from another checkout of the repository
(a ``git worktree`` of an older commit), for a before/after pair on the same databases.

Writes ``bench/results/publish-memory-<db>.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.results_dir import code_version, command_line, load_average, machine, results_dir
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade_database
from infra.devstack import PostgresServer, free_port
from simulation.finished_campaign import write_finished_campaign

REPO = Path(__file__).resolve().parents[1]

# The worker side, run with ``python -c`` so that it works unchanged from an older checkout
# (it uses only the publish activity's long-standing interface).
WORKER = r"""
import asyncio, json, resource, sys, threading, time
from typing import cast

url, campaign_id, store_dir = sys.argv[1:4]

def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0

async def main() -> None:
    from temporalio.client import Client
    from temporalio.testing import ActivityEnvironment
    from activities.campaign_activities import CampaignActivities
    from db.engine import create_engine, create_sessionmaker
    from schemas.workflow_io import PublishInput
    from storage import LocalObjectStore

    engine = create_engine(url)
    activities = CampaignActivities(
        create_sessionmaker(engine), cast(Client, None), LocalObjectStore(store_dir)
    )
    peak = [rss_mb()]
    before = peak[0]
    running = [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    result = await ActivityEnvironment().run(
        activities.publish, PublishInput(campaign_id=campaign_id, publish_id=campaign_id + ".m")
    )
    seconds = time.perf_counter() - started
    running[0] = False
    sampler.join()
    peak[0] = max(peak[0], rss_mb())
    await engine.dispose()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "items": result.item_count,
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(max(peak[0], maxrss), 1),
        "publish_mb": round(max(peak[0], maxrss) - before, 1),
        "publish_s": round(seconds, 2),
    }))

asyncio.run(main())
"""


def _worker(code_dir: Path, url: str, campaign_id: str, store_dir: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(code_dir)}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, url, campaign_id, str(store_dir)],
        cwd=code_dir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the publishing process failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _commit(path: Path) -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or None


async def _seed(url: str, campaign_id: str, images: int) -> float:
    await upgrade_database(url)
    engine = create_engine(url)
    started = time.perf_counter()
    try:
        await write_finished_campaign(create_sessionmaker(engine), campaign_id, images)
    finally:
        await engine.dispose()
    return time.perf_counter() - started


def run(db: str, sizes: list[int], code_dirs: dict[str, Path]) -> dict[str, Any]:
    load_at_start = load_average()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="quorum-publish-mem-") as tmp:
        home = Path(tmp)
        pg = (
            PostgresServer(home / "pg", port=free_port(), durable=False)
            if db == "postgres"
            else None
        )
        with pg if pg is not None else contextlib.nullcontext():
            for n in sizes:
                name = f"pm{n}"
                url = (
                    pg.create_database(name)
                    if pg is not None
                    else f"sqlite+aiosqlite:///{home / f'{name}.db'}"
                )
                seed_s = asyncio.run(_seed(url, name, n))
                print(f"N = {n}: seeded in {seed_s:.1f} s", flush=True)
                for label, code_dir in code_dirs.items():
                    store_dir = home / f"store-{name}-{label}"
                    measured = _worker(code_dir, url, name, store_dir)
                    if measured["items"] != n:
                        raise RuntimeError(f"published {measured['items']} items, expected {n}")
                    runs.append(
                        {"images": n, "code": label, "seed_s": round(seed_s, 1), **measured}
                    )
                    print(f"  {label}: {measured}", flush=True)
    return {
        "benchmark": "publish_memory",
        "command": command_line("bench.publish_memory"),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": code_version(),
        **machine("sqlalchemy", "asyncpg", "temporalio", load_at_start=load_at_start),
        "config": {
            "db": db,
            "annotators_per_image": 3,
            "campaign": "single-label classes (3), like the pipeline bench",
            "store": "local directory",
            "code_dirs": {
                label: {"path": str(path), "commit": _commit(path)}
                for label, path in code_dirs.items()
            },
        },
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="postgres")
    parser.add_argument("--images", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument(
        "--code-dir",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="also run the publish from another checkout (e.g. before=/tmp/old); repeatable",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.images):
        parser.error("--images: every size must be a positive integer")
    code_dirs = {"this": REPO}
    for spec in args.code_dir:
        label, sep, path = spec.partition("=")
        if not sep or not label or not Path(path, "activities").is_dir():
            parser.error(f"--code-dir {spec!r}: give LABEL=PATH to a checkout of this repository")
        code_dirs[label] = Path(path).resolve()
    result = run(args.db, args.images, code_dirs)
    out = args.out or results_dir() / f"publish-memory-{args.db}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
