"""API latency and throughput: many simulated annotators submitting at once over HTTP.

The API runs for real (uvicorn, in its own process) on a loopback port, with one worker
process, against a fresh Temporal dev server and PostgreSQL. C simulated annotators each loop
over ``tasks/next`` then ``response`` as fast as they can until every image has its k answers.
Every submission is timed. Afterwards the database is checked: every acknowledged response is
there exactly once, and no image has more than k answers.

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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from bench.pipeline_bench import machine
from bench.results_dir import results_dir
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade_database
from db.models import Response
from infra.devstack import PostgresServer, TemporalDevServer, free_port
from infra.settings import TemporalSettings
from infra.temporal_client import connect
from schemas.workflow_io import CampaignResult, campaign_workflow_id
from simulation.images import generate_images

REPO = Path(__file__).resolve().parents[1]
K = 3
OPERATOR = "bench-operator"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _annotator(
    http: httpx.AsyncClient,
    token: str,
    cid: str,
    stop: asyncio.Event,
    submit_ms: list[float],
    claim_ms: list[float],
    acked: list[str],
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        started = time.perf_counter()
        r = await http.post(f"/campaigns/{cid}/tasks/next", headers=headers)
        claim_ms.append((time.perf_counter() - started) * 1000)
        if r.status_code == 409:
            return
        task = r.json()["task"]
        if task is None:
            await asyncio.sleep(0.05)
            continue
        body = {
            "idempotency_key": uuid.uuid4().hex,
            "objects": [{"type": "tag", "label": "circle"}],
        }
        started = time.perf_counter()
        s = await http.post(
            f"/campaigns/{cid}/tasks/{task['assignment_id']}/response", json=body, headers=headers
        )
        submit_ms.append((time.perf_counter() - started) * 1000)
        if s.status_code == 200:
            acked.append(s.json()["response_id"])


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
    with tempfile.TemporaryDirectory(prefix="quorum-api-bench-") as tmp:
        home = Path(tmp)
        pg_dir = Path(tempfile.mkdtemp(prefix="quorum-api-bench-pg-"))
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
                "QUORUM_DATABASE__POOL_SIZE": "20",
                "QUORUM_API__OPERATOR_TOKEN": OPERATOR,
            }
            api, worker = _start_servers(env, port, home / "servers.log")
            try:
                limits = httpx.Limits(max_connections=concurrency + 10)
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits, trust_env=False
                ) as http:
                    for _ in range(200):
                        try:
                            if (await http.get("/health")).status_code == 200:
                                break
                        except httpx.TransportError:
                            await asyncio.sleep(0.1)
                    op = {"Authorization": f"Bearer {OPERATOR}"}
                    tokens = []
                    for n in range(concurrency):
                        r = await http.post("/people", json={"name": f"a{n}"}, headers=op)
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
                    cid = (await http.post("/campaigns", json=spec, headers=op)).json()["id"]
                    client = await connect(TemporalSettings(address=server.address))
                    submit_ms: list[float] = []
                    claim_ms: list[float] = []
                    acked: list[str] = []
                    stop = asyncio.Event()
                    started = time.perf_counter()
                    crowd = [
                        asyncio.create_task(
                            _annotator(http, t, cid, stop, submit_ms, claim_ms, acked)
                        )
                        for t in tokens
                    ]
                    result = await client.get_workflow_handle(
                        campaign_workflow_id(cid), result_type=CampaignResult
                    ).result()
                    elapsed = time.perf_counter() - started
                    stop.set()
                    await asyncio.gather(*crowd)

                engine = create_engine(url)
                async with create_sessionmaker(engine)() as session:
                    stored = list(
                        (
                            await session.scalars(
                                select(Response.id).where(Response.campaign_id == cid)
                            )
                        ).all()
                    )
                    per_item = (
                        select(func.count().label("n"))
                        .where(Response.campaign_id == cid)
                        .group_by(Response.item_id)
                        .subquery()
                    )
                    worst = await session.scalar(select(func.max(per_item.c.n)))
                await engine.dispose()
            finally:
                for proc in (api, worker):
                    proc.send_signal(signal.SIGTERM)
                for proc in (api, worker):
                    proc.wait(30)
        shutil.rmtree(pg_dir, ignore_errors=True)

    out: dict[str, Any] = {
        "benchmark": "api",
        "at": datetime.now(UTC).isoformat(),
        "machine": machine(),
        "command": f"python -m bench.api_bench --concurrency {concurrency} --images {images}",
        "config": {
            "annotators": concurrency,
            "images": images,
            "annotators_per_image": K,
            "database": "postgres",
            "api_processes": 1,
            "worker_processes": 1,
        },
        "results": {
            "submissions": len(submit_ms),
            "submissions_per_second": round(len(submit_ms) / elapsed, 1),
            "submit_p50_ms": round(_percentile(submit_ms, 0.50), 1),
            "submit_p99_ms": round(_percentile(submit_ms, 0.99), 1),
            "claim_p50_ms": round(_percentile(claim_ms, 0.50), 1),
            "claim_p99_ms": round(_percentile(claim_ms, 0.99), 1),
            "campaign_seconds": round(elapsed, 2),
            "finished": result.counts.finished,
            "acknowledged": len(acked),
            "stored": len(stored),
            "lost": len(set(acked) - set(stored)),
            "duplicated": len(acked) - len(set(acked)),
            "most_answers_on_one_image": worst,
        },
    }
    path = results_dir() / f"api-{concurrency}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    return path


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
