"""Pipeline throughput: a campaign of N images, k = 3 simulated annotators who answer at once.

Runs on a fresh Temporal dev server, SQLite and the local dataset store (the embedded default),
with one in-process worker and the API in process. Reports images per second from launch to the
published dataset, and the Temporal history events per image of a sample of item workflows.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

from api.app import create_app
from db.migrate import upgrade_database
from infra.devstack import TemporalDevServer, free_port
from infra.settings import ApiSettings, DatabaseSettings, Settings, TemporalSettings
from infra.temporal_client import connect
from schemas.workflow_io import CampaignResult, campaign_workflow_id, item_workflow_id
from simulation.crowd import SimulatedAnnotator, annotate_until_empty, register
from simulation.images import generate_images
from workers.worker_process import running_worker

RESULTS = Path(__file__).resolve().parent / "results"
K = 3
OPERATOR = "bench-operator"


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "temporalio": version("temporalio"),
        "sqlalchemy": version("sqlalchemy"),
    }


async def run_pipeline_bench(images: int, annotators: int = 6) -> Path:
    with tempfile.TemporaryDirectory(prefix="quorum-bench-") as tmp:
        home = Path(tmp)
        server = TemporalDevServer(
            home / "temporal", port=free_port(), ui_port=free_port(), headless=True
        )
        with server:
            settings = Settings(
                environment="test",
                home=home,
                temporal=TemporalSettings(
                    address=server.address, task_queue=f"bench-{uuid.uuid4().hex[:8]}"
                ),
                database=DatabaseSettings(url=f"sqlite+aiosqlite:///{home / 'bench.db'}"),
                api=ApiSettings(operator_token=OPERATOR),
            )
            await upgrade_database(settings.database_url)
            labeled = generate_images(home / "images", images, size=32)
            app = create_app(settings=settings)
            async with (
                running_worker(settings),
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=60
                ) as http,
            ):
                crowd = []
                for n in range(annotators):
                    body = await register(http, OPERATOR, f"bench-{n}", max_concurrent=1)
                    crowd.append(
                        SimulatedAnnotator(
                            name=body["name"], accuracy=1.0, token=body["token"], id=body["id"]
                        )
                    )
                spec = {
                    "name": "bench",
                    "images": {"directory": str(home / "images")},
                    "ontology": {
                        "classes": [{"name": c} for c in ("circle", "square", "triangle")]
                    },
                    "annotators_per_image": K,
                    "agreement_threshold": 0.5,
                    "lease_timeout": "5m",
                    "review_timeout": "5m",
                }
                started = time.perf_counter()
                r = await http.post(
                    "/campaigns", json=spec, headers={"Authorization": f"Bearer {OPERATOR}"}
                )
                r.raise_for_status()
                cid = r.json()["id"]
                truth = {f"{cid}-{n}": img.label for n, img in enumerate(labeled)}
                done = asyncio.Event()
                workers = [
                    asyncio.create_task(
                        annotate_until_empty(http, a, cid, truth, until=done, idle_sleep=0.02)
                    )
                    for a in crowd
                ]
                client = await connect(settings.temporal)
                result = await client.get_workflow_handle(
                    campaign_workflow_id(cid), result_type=CampaignResult
                ).result()
                elapsed = time.perf_counter() - started
                done.set()
                answered = sum(await asyncio.gather(*workers))

                sample = range(0, images, max(1, images // 20))
                events = []
                for n in sample:
                    history = await client.get_workflow_handle(
                        item_workflow_id(cid, n)
                    ).fetch_history()
                    events.append(len(history.events))

    out = {
        "benchmark": "pipeline",
        "at": datetime.now(UTC).isoformat(),
        "machine": machine(),
        "config": {
            "images": images,
            "annotators_per_image": K,
            "annotators": annotators,
            "database": "sqlite",
            "store": "local",
            "worker_processes": 1,
        },
        "results": {
            "seconds": round(elapsed, 3),
            "images_per_second": round(images / elapsed, 2),
            "answers": answered,
            "finished": result.counts.finished,
            "campaign_runs": result.generations + 1,
            "item_history_events_mean": sum(events) / len(events),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"pipeline-{images}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    return path
