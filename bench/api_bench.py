"""API latency and throughput: many simulated annotators submitting at once over HTTP.

The API runs for real (``quorum api``: uvicorn, in its own process, with the product's server
settings) on a loopback port, with one worker process, against a fresh Temporal dev server and
PostgreSQL. C simulated annotators each loop over ``tasks/next`` then ``response`` as fast as
they can until every image has its k answers. Every submission is timed. A client does what the
API asks of any client: a 503 is retried after its Retry-After, and a submission whose
connection failed is retried with the same idempotency key. Both are counted, and should be 0.
Afterwards the database is checked: every acknowledged response is there exactly once, and no
image has more than k answers.

Writes ``bench/results/api-<C>.json`` with p50/p99 latency of submissions and of claims, and
submissions per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from bench.results_dir import code_version, invoked_by, load_average, machine, results_dir
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade_database
from db.models import Response
from infra.devstack import PostgresServer, TemporalDevServer, free_port
from infra.settings import ApiSettings, TemporalSettings
from infra.temporal_client import connect
from schemas.workflow_io import CampaignResult, campaign_workflow_id
from simulation.images import generate_images

REPO = Path(__file__).resolve().parents[1]
K = 3
OPERATOR = "bench-operator"
POOL_SIZE = 20
PACKAGES = ("uvicorn", "h11", "fastapi", "httpx", "sqlalchemy", "asyncpg", "temporalio")
ATTEMPTS = 5


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass
class Tally:
    submit_ms: list[float] = field(default_factory=list)
    claim_ms: list[float] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    # Anything but a clean answer: "503", "transport:ReadError", ... (all should stay 0).
    trouble: Counter[str] = field(default_factory=Counter)


async def _post(
    http: httpx.AsyncClient, url: str, tally: Tally, **kwargs: Any
) -> httpx.Response | None:
    """POST as a well-behaved client: 503 waits for Retry-After, a failed connection retries.
    Both are safe for these routes (a claim resumes the open lease; a submission carries its
    idempotency key). None after ATTEMPTS failures."""
    for _ in range(ATTEMPTS):
        try:
            r = await http.post(url, **kwargs)
        except httpx.TransportError as exc:
            tally.trouble[f"transport:{type(exc).__name__}"] += 1
            continue
        if r.status_code != 503:
            return r
        tally.trouble["503"] += 1
        await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
    tally.trouble["gave_up"] += 1
    return None


async def _annotator(
    http: httpx.AsyncClient, token: str, cid: str, stop: asyncio.Event, tally: Tally
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        started = time.perf_counter()
        r = await _post(http, f"/campaigns/{cid}/tasks/next", tally, headers=headers)
        tally.claim_ms.append((time.perf_counter() - started) * 1000)
        if r is None:
            continue
        if r.status_code == 409:
            return
        if r.status_code != 200:
            tally.trouble[f"claim:{r.status_code}"] += 1
            continue
        task = r.json()["task"]
        if task is None:
            await asyncio.sleep(0.05)
            continue
        body = {
            "idempotency_key": uuid.uuid4().hex,
            "objects": [{"type": "tag", "label": "circle"}],
        }
        started = time.perf_counter()
        s = await _post(
            http,
            f"/campaigns/{cid}/tasks/{task['assignment_id']}/response",
            tally,
            json=body,
            headers=headers,
        )
        tally.submit_ms.append((time.perf_counter() - started) * 1000)
        if s is not None and s.status_code == 200:
            tally.acked.append(s.json()["response_id"])
        elif s is not None:
            tally.trouble[f"submit:{s.status_code}"] += 1


def _start_servers(
    env: dict[str, str], port: int, log: Path
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """The API (uvicorn) and one worker, as their own OS processes, like production."""
    with log.open("ab") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "api", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        worker = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return api, worker


async def run_api_bench(concurrency: int, images: int) -> Path:
    load_at_start = load_average()
    pg_dir = Path(tempfile.mkdtemp(prefix="quorum-api-bench-pg-"))
    try:
        with tempfile.TemporaryDirectory(prefix="quorum-api-bench-") as tmp:
            home = Path(tmp)
            with (
                TemporalDevServer(
                    home / "temporal", port=free_port(), ui_port=free_port(), headless=True
                ) as server,
                PostgresServer(pg_dir, port=free_port(), durable=False) as pg,
            ):
                url = pg.create_database("bench")
                await upgrade_database(url)
                port = free_port()
                env = {
                    **os.environ,
                    "QUORUM_HOME": str(home),
                    "QUORUM_TEMPORAL__ADDRESS": server.address,
                    "QUORUM_TEMPORAL__TASK_QUEUE": f"api-bench-{uuid.uuid4().hex[:8]}",
                    "QUORUM_DATABASE__URL": url,
                    "QUORUM_DATABASE__POOL_SIZE": str(POOL_SIZE),
                    "QUORUM_API__OPERATOR_TOKEN": OPERATOR,
                }
                api, worker = _start_servers(env, port, home / "servers.log")
                try:
                    measured = await _drive(server.address, port, concurrency, images, home)
                    tally, elapsed, result, cid = measured
                    stored, worst = await _stored_responses(url, cid)
                finally:
                    for proc in (api, worker):
                        proc.send_signal(signal.SIGTERM)
                    for proc in (api, worker):
                        proc.wait(30)
    finally:
        shutil.rmtree(pg_dir, ignore_errors=True)

    server_settings = ApiSettings()
    out: dict[str, Any] = {
        "benchmark": "api",
        "at": datetime.now(UTC).isoformat(),
        "machine": machine(*PACKAGES, load_at_start=load_at_start),
        "command": f"python -m bench.api_bench --concurrency {concurrency} --images {images}",
        "invoked_by": invoked_by(),
        "code": code_version(),
        "config": {
            "annotators": concurrency,
            "images": images,
            "annotators_per_image": K,
            "database": "postgres",
            "api_processes": 1,
            "worker_processes": 1,
            "database_pool": {"pool_size": POOL_SIZE, "max_overflow": POOL_SIZE},
            "keep_alive_seconds": server_settings.keep_alive_seconds,
            "client": "httpx, one connection per annotator at most, keep-alive 5 s",
        },
        "results": {
            "submissions": len(tally.submit_ms),
            "submissions_per_second": round(len(tally.submit_ms) / elapsed, 1),
            "submit_p50_ms": round(_percentile(tally.submit_ms, 0.50), 1),
            "submit_p99_ms": round(_percentile(tally.submit_ms, 0.99), 1),
            "claim_p50_ms": round(_percentile(tally.claim_ms, 0.50), 1),
            "claim_p99_ms": round(_percentile(tally.claim_ms, 0.99), 1),
            "campaign_seconds": round(elapsed, 2),
            "finished": result.counts.finished,
            "acknowledged": len(tally.acked),
            "stored": len(stored),
            "lost": len(set(tally.acked) - set(stored)),
            "duplicated": len(tally.acked) - len(set(tally.acked)),
            "most_answers_on_one_image": worst,
            "connection_resets_and_retries": dict(tally.trouble),
        },
    }
    path = results_dir() / f"api-{concurrency}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    return path


async def _drive(
    temporal_address: str, port: int, concurrency: int, images: int, home: Path
) -> tuple[Tally, float, CampaignResult, str]:
    limits = httpx.Limits(max_connections=concurrency + 10)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits, trust_env=False
    ) as http:
        for _ in range(300):
            try:
                if (await http.get("/health")).status_code == 200:
                    break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        op = {"Authorization": f"Bearer {OPERATOR}"}
        tokens = []
        for n in range(concurrency):
            r = await http.post("/people", json={"name": f"a{n}"}, headers=op)
            r.raise_for_status()
            tokens.append(r.json()["token"])
        generate_images(home / "images", images, size=16)
        spec = {
            "name": "api-bench",
            "images": {"directory": str(home / "images")},
            "ontology": {"classes": [{"name": "circle"}, {"name": "square"}]},
            "annotators_per_image": K,
            "agreement_threshold": 0.5,
            "lease_timeout": "10m",
            "review_timeout": "10m",
            "window": min(1000, images),
        }
        r = await http.post("/campaigns", json=spec, headers=op)
        r.raise_for_status()
        cid = r.json()["id"]
        client = await connect(TemporalSettings(address=temporal_address))
        tally = Tally()
        stop = asyncio.Event()
        started = time.perf_counter()
        crowd = [asyncio.create_task(_annotator(http, t, cid, stop, tally)) for t in tokens]
        result = await client.get_workflow_handle(
            campaign_workflow_id(cid), result_type=CampaignResult
        ).result()
        elapsed = time.perf_counter() - started
        stop.set()
        await asyncio.gather(*crowd)
    return tally, elapsed, result, cid


async def _stored_responses(url: str, cid: str) -> tuple[list[str], int | None]:
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            stored = list(
                (
                    await session.scalars(select(Response.id).where(Response.campaign_id == cid))
                ).all()
            )
            per_item = (
                select(func.count().label("n"))
                .where(Response.campaign_id == cid)
                .group_by(Response.item_id)
                .subquery()
            )
            worst = await session.scalar(select(func.max(per_item.c.n)))
    finally:
        await engine.dispose()
    return stored, worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--images", type=int, default=400)
    args = parser.parse_args(argv)
    for c in args.concurrency:
        path = asyncio.run(run_api_bench(c, args.images))
        print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
