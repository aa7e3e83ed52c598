"""Pipeline throughput, beside the Temporal floor, and the Temporal cost per image.

One run:
1. starts a fresh Temporal dev server (and PostgreSQL when asked) in a temporary directory;
2. the floor: F bare workflows (``--floor-images``, by default N up to 10,000: its rate per
   workflow does not depend on N) that each start, receive k = 3 signals and complete, with the
   same bound on workflows in flight as a campaign;
3. the pipeline: a campaign of N images, k = 3 simulated annotators who answer at once through
   the API, run by P worker processes (``quorum worker``, separate OS processes); meanwhile every
   RSS_SAMPLE_SECONDS the current memory (VmRSS) of each worker process and the answers accepted
   so far, and every PROGRESS_SECONDS a progress line on stderr, so a long run can be watched;
4. counts, not times: history events, workflow tasks, activities and signals per image, for an
   agreed image and for one that went to review, and the campaign workflow's share per image;
5. the peak memory (VmHWM) of each worker process after the campaign, its memory at the end,
   and the memory timeline (``[seconds, answers, [MB per worker]]``, at most TIMELINE_MAX
   samples: a long run keeps every n-th and the last), which shows whether memory stays bounded.

Writes ``bench/results/pipeline-<db>-<N>-p<P>.json``; ``python -m bench.curves`` assembles the
scale and process curves from those files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.worker import Worker

from api import task_routes
from api.app import create_app
from bench.floor_workflow import FloorWorkflow
from bench.results_dir import code_version, invoked_by, load_average, machine, results_dir
from db.migrate import upgrade_database
from db.models import Annotator
from infra.devstack import PostgresServer, TemporalDevServer, free_port
from infra.settings import ApiSettings, DatabaseSettings, Settings, TemporalSettings
from infra.temporal_client import connect
from schemas.workflow_io import CampaignResult, campaign_workflow_id, item_workflow_id
from services.task_assignment import Task, claim_next
from simulation.crowd import (
    SimulatedAnnotator,
    annotate_until_empty,
    register,
    review_until_done,
)
from simulation.images import generate_images

REPO = Path(__file__).resolve().parents[1]
K = 3
WINDOW = 256
OPERATOR = "bench-operator"
# What the pipeline's JSON records about the software under test.
PACKAGES = ("temporalio", "sqlalchemy", "asyncpg", "aiosqlite", "fastapi", "temporal-cli")
WORKER = ("-m", "cli.main", "worker")
# The floor's rate per workflow does not depend on N: past this many it only costs time.
FLOOR_IMAGES_MAX = 10_000
# Worker memory is sampled this often during the campaign; progress goes to stderr this often.
RSS_SAMPLE_SECONDS = 10
PROGRESS_SECONDS = 60
# The most samples the JSON keeps of the memory timeline.
TIMELINE_MAX = 200

AsgiApp = Callable[..., Awaitable[None]]


async def run_floor(client: Client, images: int) -> float:
    """Images per second for the bare workflow, with at most WINDOW in flight."""
    task_queue = f"floor-{uuid.uuid4().hex[:8]}"
    semaphore = asyncio.Semaphore(WINDOW)

    async def one(n: int) -> None:
        async with semaphore:
            handle = await client.start_workflow(
                FloorWorkflow.run, K, id=f"floor/{task_queue}/{n}", task_queue=task_queue
            )
            for a in range(K):
                await handle.signal(FloorWorkflow.answer, f"answer-{a}")
            await handle.result()

    async with Worker(client, task_queue=task_queue, workflows=[FloorWorkflow]):
        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(images)))
        return images / (time.perf_counter() - started)


def worker_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        **os.environ,
        "QUORUM_HOME": str(settings.home),
        "QUORUM_TEMPORAL__ADDRESS": settings.temporal.address,
        "QUORUM_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue,
        "QUORUM_DATABASE__URL": settings.database_url,
        "QUORUM_STORE__LOCAL_ROOT": str(settings.home / "data"),
        **(extra or {}),
    }


def start_workers(
    settings: Settings,
    processes: int,
    log: Path,
    *,
    command: Sequence[str] = WORKER,
    env: dict[str, str] | None = None,
) -> list[subprocess.Popen[bytes]]:
    """`quorum worker` processes, configured only through the environment, like production."""
    with log.open("ab") as out:
        return [
            subprocess.Popen(
                [sys.executable, *command],
                cwd=REPO,
                env=worker_env(settings, env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            for _ in range(processes)
        ]


async def wait_for_workers(client: Client, task_queue: str, processes: int) -> None:
    """Until ``processes`` workers poll the task queue: a worker process takes seconds to
    import and connect, which is not part of any image's cost."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    deadline = time.monotonic() + 120
    while True:
        described = await client.workflow_service.describe_task_queue(request)
        if len({p.identity for p in described.pollers}) >= processes:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{processes} worker(s) did not poll {task_queue} within 120 s")
        await asyncio.sleep(0.2)


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        w.send_signal(signal.SIGTERM)
    for w in workers:
        w.wait(60)


def _status_mb(pid: int, field: str) -> float | None:
    """A memory field (in kB) of /proc/<pid>/status, in MB; None if it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss_mb(pid: int) -> float | None:
    return _status_mb(pid, "VmHWM")


def rss_mb(pid: int) -> float | None:
    return _status_mb(pid, "VmRSS")


class AnswerCounter:
    """Answers the API accepted, counted in this process as responses go out: the progress of a
    campaign without a query to the database or to Temporal."""

    def __init__(self) -> None:
        self.accepted = 0

    def wrap(self, app: AsgiApp) -> AsgiApp:
        async def counted(
            scope: dict[str, Any],
            receive: Callable[[], Awaitable[dict[str, Any]]],
            send: Callable[[dict[str, Any]], Awaitable[None]],
        ) -> None:
            if scope["type"] != "http" or not scope["path"].endswith("/response"):
                await app(scope, receive, send)
                return

            async def send_counted(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start" and message["status"] < 300:
                    self.accepted += 1
                await send(message)

            await app(scope, receive, send_counted)

        return counted


Sample = tuple[float, int, list[float | None]]


class MemoryTimeline:
    """While the campaign runs: every RSS_SAMPLE_SECONDS each worker's current memory (VmRSS)
    and the answers accepted so far; every PROGRESS_SECONDS a line on stderr. A failed read is
    a None, never an error."""

    def __init__(self, pids: Sequence[int], answers: AnswerCounter, images: int) -> None:
        self.pids = list(pids)
        self.answers = answers
        self.images = images
        self.samples: list[Sample] = []

    def _take(self, started: float) -> Sample:
        sample = (
            round(time.perf_counter() - started, 1),
            self.answers.accepted,
            [rss_mb(pid) for pid in self.pids],
        )
        self.samples.append(sample)
        return sample

    def _report(self, sample: Sample) -> None:
        seconds, answers, rss = sample
        print(
            f"pipeline: {seconds:.0f} s, {answers} answers (~{answers // K} of {self.images} "
            f"images), worker RSS MB {rss}",
            file=sys.stderr,
            flush=True,
        )

    async def _sample(self, started: float) -> None:
        every = max(1, round(PROGRESS_SECONDS / RSS_SAMPLE_SECONDS))
        slot = reported = 0
        while True:
            sample = self._take(started)
            if slot // every > reported:
                reported = slot // every
                self._report(sample)
            # On a fixed schedule, so the samples do not drift by the time each one takes; a
            # slot missed while the event loop was busy is skipped, not caught up in a burst.
            now = time.perf_counter()
            slot = int((now - started) / RSS_SAMPLE_SECONDS) + 1
            await asyncio.sleep(started + slot * RSS_SAMPLE_SECONDS - now)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        started = time.perf_counter()
        task = asyncio.create_task(self._sample(started))
        try:
            yield
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as e:  # the measurement must never fail the run
                print(f"pipeline: memory sampling stopped: {e!r}", file=sys.stderr, flush=True)
            self._report(self._take(started))

    def compact(self) -> list[list[Any]]:
        """At most TIMELINE_MAX samples: every n-th, and always the last."""
        rows = [[s, a, rss] for s, a, rss in self.samples]
        if len(rows) <= TIMELINE_MAX:
            return rows
        head, last = rows[:-1], rows[-1]
        step = -(-len(head) // (TIMELINE_MAX - 1))
        return [*head[::step], last]


async def history_counts(client: Client, workflow_id: str) -> dict[str, int]:
    """Events, workflow tasks, activities, signals and bytes over every run of a workflow."""
    totals = dict.fromkeys(
        ("events", "workflow_tasks", "activities", "signals", "bytes", "largest_event_bytes"), 0
    )
    totals["runs"] = 0
    async for run in client.list_workflows(f'WorkflowId = "{workflow_id}"'):
        history = await client.get_workflow_handle(workflow_id, run_id=run.run_id).fetch_history()
        totals["runs"] += 1
        for e in history.events:
            size = e.ByteSize()
            totals["events"] += 1
            totals["bytes"] += size
            totals["largest_event_bytes"] = max(totals["largest_event_bytes"], size)
            if e.HasField("workflow_task_completed_event_attributes"):
                totals["workflow_tasks"] += 1
            elif e.HasField("activity_task_scheduled_event_attributes"):
                totals["activities"] += 1
            elif e.HasField("workflow_execution_signaled_event_attributes"):
                totals["signals"] += 1
    return totals


def per_image(rows: list[dict[str, int]]) -> dict[str, float]:
    def mean(key: str) -> float:
        return round(sum(r[key] for r in rows) / len(rows), 2)

    return {
        "history_events": mean("events"),
        "workflow_tasks": mean("workflow_tasks"),
        "activities": mean("activities"),
        "signals": mean("signals"),
        "history_bytes": mean("bytes"),
        "largest_event_bytes": max(r["largest_event_bytes"] for r in rows),
    }


@dataclass
class Stack:
    settings: Settings
    client: Client
    temporal: TemporalDevServer
    postgres: PostgresServer | None


@contextlib.asynccontextmanager
async def pipeline_stack(db: str, temporal_store: str = "file") -> AsyncIterator[Stack]:
    """A fresh Temporal dev server (and PostgreSQL for ``db="postgres"``), migrated, in a
    temporary directory that is removed afterwards. ``temporal_store="memory"`` keeps the
    server's state in memory instead of its SQLite file."""
    pg_dir = Path(tempfile.mkdtemp(prefix="quorum-bench-pg-")) if db == "postgres" else None
    try:
        with tempfile.TemporaryDirectory(prefix="quorum-bench-") as tmp:
            home = Path(tmp)
            server = TemporalDevServer(
                home / "temporal",
                port=free_port(),
                ui_port=free_port(),
                headless=True,
                in_memory=temporal_store == "memory",
            )
            with contextlib.ExitStack() as servers:
                servers.enter_context(server)
                # PostgreSQL's port is picked once Temporal is up: the dev server binds ports
                # of its own as it starts, and one of them once took a port picked before.
                pg = (
                    servers.enter_context(PostgresServer(pg_dir, port=free_port(), durable=False))
                    if pg_dir
                    else None
                )
                url = (
                    pg.create_database("bench")
                    if pg is not None
                    else f"sqlite+aiosqlite:///{home / 'bench.db'}"
                )
                settings = Settings(
                    environment="test",
                    home=home,
                    temporal=TemporalSettings(
                        address=server.address, task_queue=f"bench-{uuid.uuid4().hex[:8]}"
                    ),
                    database=DatabaseSettings(url=url),
                    api=ApiSettings(operator_token=OPERATOR),
                )
                await upgrade_database(settings.database_url)
                client = await connect(settings.temporal)
                yield Stack(settings=settings, client=client, temporal=server, postgres=pg)
    finally:
        if pg_dir is not None:
            shutil.rmtree(pg_dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def _leases_seen() -> AsyncIterator[dict[str, str]]:
    """assignment id -> item id of every lease the in-process API hands out.

    Tasks do not name their item (a gold item's ID would give it away), so the simulated crowd
    needs another way to its truth. The demo and the tests ask the operator API
    (``simulation.crowd.Oracle``); here that would put an HTTP request per answer into the
    measured process, and a database query of the crowd's own adds a round trip to each
    annotator's loop (paired runs at N = 1,000: 6 to 12% more time per image, with pooled
    SQLAlchemy or with a bare asyncpg connection alike). The bench's API runs in this
    process, so the claim's result is recorded as it is made: the crowd pays nothing, as when
    tasks named their item.
    """
    seen: dict[str, str] = {}
    original = claim_next

    async def recording(
        session: AsyncSession,
        annotator: Annotator,
        campaign_id: str,
        *,
        now: datetime | None = None,
    ) -> Task | None:
        task = await original(session, annotator, campaign_id, now=now)
        if task is not None:
            seen[task.assignment.id] = task.item.id
        return task

    # The route calls the name it imported, so that is the one replaced (and put back).
    setattr(task_routes, "claim_next", recording)  # noqa: B010
    try:
        yield seen
    finally:
        setattr(task_routes, "claim_next", original)  # noqa: B010


@dataclass(frozen=True)
class _LeaseAnswerKey:
    """The bench crowd's answer key: the truth of the item each lease was made for."""

    item_of: Mapping[str, str]
    truth_by_item: Mapping[str, str]

    async def truth_of(self, http: httpx.AsyncClient, campaign_id: str, assignment_id: str) -> str:
        return self.truth_by_item[self.item_of[assignment_id]]


async def run_campaign(
    settings: Settings,
    images: int,
    *,
    annotators: int,
    contrarian: bool = False,
    wrap_app: Callable[[AsgiApp], AsgiApp] | None = None,
    around: Callable[[], contextlib.AbstractAsyncContextManager[None]] | None = None,
) -> tuple[str, float, CampaignResult]:
    """Launch a campaign through the API and let the crowd answer; returns its id, time,
    and result. A contrarian crowd disagrees on every image (the review path). ``wrap_app``
    wraps the API (instrumentation); ``around`` is entered for exactly the timed part."""
    labeled = generate_images(settings.home / f"images-{uuid.uuid4().hex[:6]}", images, size=32)
    app = create_app(settings=settings)
    served: AsgiApp = wrap_app(app) if wrap_app else app
    async with (
        _leases_seen() as leases,
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=served), base_url="http://bench", timeout=120
        ) as http,
    ):
        crowd = []
        # The contrarian crowd is exactly k people, one always wrong: every image disagrees.
        accuracies = [1.0, 0.0, 1.0] if contrarian else [1.0] * annotators
        for accuracy in accuracies:
            body = await register(http, OPERATOR, f"bench-{uuid.uuid4().hex[:6]}")
            crowd.append(
                SimulatedAnnotator(
                    name=body["name"], accuracy=accuracy, token=body["token"], id=body["id"]
                )
            )
        experts = []
        if contrarian:
            experts.append(await register(http, OPERATOR, "bench-expert", role="expert"))
        spec = {
            "name": "bench",
            "images": {"directory": str(labeled[0].path.parent)},
            "ontology": {"classes": [{"name": c} for c in ("circle", "square", "triangle")]},
            "annotators_per_image": K,
            "agreement_threshold": 1.0 if contrarian else 0.5,
            "lease_timeout": "10m",
            "review_timeout": "10m",
            "window": WINDOW,
        }
        async with around() if around else contextlib.nullcontext():
            started = time.perf_counter()
            r = await http.post(
                "/campaigns", json=spec, headers={"Authorization": f"Bearer {OPERATOR}"}
            )
            r.raise_for_status()
            cid = r.json()["id"]
            truth = {f"{cid}-{n}": img.label for n, img in enumerate(labeled)}
            answer_key = _LeaseAnswerKey(leases, truth)
            done = asyncio.Event()
            work = [
                asyncio.create_task(
                    annotate_until_empty(http, a, cid, answer_key, until=done, idle_sleep=0.02)
                )
                for a in crowd
            ]
            if experts:
                work.append(
                    asyncio.create_task(
                        review_until_done(
                            http, experts[0]["token"], cid, truth, stop=done, poll=0.1
                        )
                    )
                )
            client = await connect(settings.temporal)
            result = await client.get_workflow_handle(
                campaign_workflow_id(cid), result_type=CampaignResult
            ).result()
            elapsed = time.perf_counter() - started
            done.set()
            await asyncio.gather(*work)
    return cid, elapsed, result


def default_floor_images(images: int) -> int:
    return min(images, FLOOR_IMAGES_MAX)


async def run_pipeline_bench(
    images: int,
    *,
    processes: int = 1,
    db: str = "sqlite",
    annotators: int = 6,
    floor_images: int | None = None,
    temporal_store: str = "file",
) -> Path:
    load_at_start = load_average()
    floor_n = default_floor_images(images) if floor_images is None else floor_images
    async with pipeline_stack(db, temporal_store) as stack:
        settings, client = stack.settings, stack.client
        started = time.perf_counter()
        floor = await run_floor(client, floor_n)
        print(
            f"pipeline: floor {floor:.2f} workflows/s over {floor_n} in "
            f"{time.perf_counter() - started:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        workers = start_workers(settings, processes, settings.home / "workers.log")
        try:
            await wait_for_workers(client, settings.temporal.task_queue, processes)
            answers = AnswerCounter()
            timeline = MemoryTimeline([w.pid for w in workers], answers, images)
            cid, elapsed, result = await run_campaign(
                settings,
                images,
                annotators=annotators,
                wrap_app=answers.wrap,
                around=timeline.running,
            )
            rss = [peak_rss_mb(w.pid) for w in workers]
            review_cid, _, _ = await run_campaign(
                settings, 4, annotators=annotators, contrarian=True
            )
        finally:
            stop_workers(workers)
        sample = range(0, images, max(1, images // 10))
        agreed = [await history_counts(client, item_workflow_id(cid, n)) for n in sample]
        reviewed = [await history_counts(client, item_workflow_id(review_cid, n)) for n in range(4)]
        campaign = await history_counts(client, campaign_workflow_id(cid))

    pipeline_rate = images / elapsed
    floor_flag = f" --floor-images {floor_n}" if floor_n != default_floor_images(images) else ""
    store_flag = f" --temporal-store {temporal_store}" if temporal_store != "file" else ""
    out = {
        "benchmark": "pipeline",
        "at": datetime.now(UTC).isoformat(),
        "machine": machine(*PACKAGES, load_at_start=load_at_start),
        "command": f"python -m bench.pipeline_bench --images {images} --processes {processes} "
        f"--db {db}{floor_flag}{store_flag}",
        "invoked_by": invoked_by(),
        "code": code_version(),
        "config": {
            "images": images,
            "floor_images": floor_n,
            "annotators_per_image": K,
            "annotators": annotators,
            "database": db,
            "temporal_store": temporal_store,
            "store": "local",
            "worker_processes": processes,
            "window": WINDOW,
            "worker_rss_sample_seconds": RSS_SAMPLE_SECONDS,
        },
        "results": {
            "seconds": round(elapsed, 3),
            "images_per_second": round(pipeline_rate, 2),
            "ms_per_image": round(elapsed / images * 1000, 2),
            "floor_images_per_second": round(floor, 2),
            "ratio_to_floor": round(pipeline_rate / floor, 3),
            "finished": result.counts.finished,
            "campaign_runs": result.generations + 1,
            "per_image": {
                "agreed": per_image(agreed),
                "review": per_image(reviewed),
                "campaign_events": round(campaign["events"] / images, 2),
                "campaign_workflow_tasks": round(campaign["workflow_tasks"] / images, 3),
                "campaign_activities": round(campaign["activities"] / images, 3),
            },
            "worker_peak_rss_mb": rss,
            "worker_rss_mb_at_end": timeline.samples[-1][2],
            "worker_rss_timeline": timeline.compact(),
        },
    }
    # The two stores are not comparable, so a memory-store run is named apart.
    suffix = "-memory" if temporal_store == "memory" else ""
    path = results_dir() / f"pipeline-{db}-{images}-p{processes}{suffix}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--floor-images",
        type=int,
        help=f"bare workflows for the floor (default: --images, at most {FLOOR_IMAGES_MAX:,})",
    )
    parser.add_argument(
        "--temporal-store",
        choices=["file", "memory"],
        default="file",
        help="where the dev server keeps its state: its SQLite file, or memory (no disk writes)",
    )
    args = parser.parse_args(argv)
    if args.floor_images is not None and args.floor_images < 1:
        parser.error("--floor-images must be at least 1")
    path = asyncio.run(
        run_pipeline_bench(
            args.images,
            processes=args.processes,
            db=args.db,
            floor_images=args.floor_images,
            temporal_store=args.temporal_store,
        )
    )
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
