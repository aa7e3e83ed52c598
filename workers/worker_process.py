"""A worker process: polls the task queue and runs workflows and activities.

Run one per core (``quorum worker --processes N``) or on many machines against one Temporal
cluster; they share the task queue, so adding processes adds throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
from collections.abc import AsyncIterator
from datetime import timedelta

from temporalio.worker import Worker

from db.engine import create_engine, create_sessionmaker
from infra.settings import Settings, get_settings
from infra.temporal_client import connect
from storage import open_store
from workers.archiver import ensure_archiver
from workers.registry import WORKFLOWS, build_activities

log = logging.getLogger("quorum.worker")


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings, task_queue: str | None = None
) -> AsyncIterator[Worker]:
    """A started worker and its dependencies, all closed on exit."""
    engine = create_engine(settings.database_url, echo=settings.database.echo)
    client = await connect(settings.temporal)
    store = open_store(settings.store, settings.s3, settings.home)
    worker = Worker(
        client,
        task_queue=task_queue or settings.temporal.task_queue,
        workflows=list(WORKFLOWS),
        activities=build_activities(create_sessionmaker(engine), client, store),
        max_concurrent_activities=64,
        # Graceful shutdown lets running activities finish their commit.
        graceful_shutdown_timeout=timedelta(seconds=10),
    )
    try:
        async with worker:
            await ensure_archiver(client, worker.task_queue)
            yield worker
    finally:
        await engine.dispose()


async def run_until_stopped(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_worker(settings):
        log.info("worker polling %s on %s", settings.temporal.task_queue, settings.temporal.address)
        await stop.wait()


def _process_main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run_until_stopped(get_settings()))


def run_workers(processes: int) -> None:
    """Run ``processes`` worker processes until interrupted."""
    if processes <= 1:
        _process_main()
        return
    ctx = multiprocessing.get_context("spawn")
    children = [
        ctx.Process(target=_process_main, name=f"quorum-worker-{n}") for n in range(processes)
    ]
    for child in children:
        child.start()
    try:
        for child in children:
            child.join()
    except KeyboardInterrupt:
        for child in children:
            child.terminate()
        for child in children:
            child.join()
