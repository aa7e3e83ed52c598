"""Killing the worker process mid-campaign loses nothing and counts nothing twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from db.models import Consensus, Response
from infra.settings import Settings
from tests.pipeline.conftest import Pipeline

REPO = Path(__file__).resolve().parents[2]


def worker_process(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """`quorum worker` as its own OS process, configured only through the environment."""
    assert settings.s3.access_key_id and settings.s3.secret_access_key
    env = {
        **os.environ,
        "QUORUM_HOME": str(settings.home),
        "QUORUM_TEMPORAL__ADDRESS": settings.temporal.address,
        "QUORUM_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue,
        "QUORUM_DATABASE__URL": settings.database_url,
        "QUORUM_STORE__BACKEND": "s3",
        "QUORUM_STORE__BUCKET": settings.store.bucket,
        "QUORUM_S3__ENDPOINT_URL": settings.s3.endpoint_url or "",
        "QUORUM_S3__ACCESS_KEY_ID": settings.s3.access_key_id.get_secret_value(),
        "QUORUM_S3__SECRET_ACCESS_KEY": settings.s3.secret_access_key.get_secret_value(),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker"],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def _scalar(p: Pipeline, stmt: object) -> int:
    async with p.sessions() as s:
        return int(await s.scalar(stmt) or 0)  # type: ignore[call-overload]


async def test_killing_the_worker_mid_campaign_loses_nothing(pipeline_unstarted: Pipeline) -> None:
    p = pipeline_unstarted
    log = p.tmp / "worker.log"
    first = worker_process(p.settings, log)
    try:
        images = 24
        cid = await p.launch(
            images=images, annotators_per_image=2, agreement_threshold=0.5, window=4
        )
        crowd = await p.people([1.0, 1.0, 1.0])
        work = asyncio.create_task(p.crowd_until_done(cid, crowd, within=120))

        consensus_count = (
            select(func.count()).select_from(Consensus).where(Consensus.campaign_id == cid)
        )
        while await _scalar(p, consensus_count) < 4:  # noqa: ASYNC110 (polling the database)
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)  # no graceful shutdown: a crash
        first.wait(10)
        done_at_crash = await _scalar(p, consensus_count)
        assert done_at_crash < images, "the campaign finished before the crash; make it longer"

        # With no worker at all, annotators keep working and every answer is acknowledged.
        acked_before = await _scalar(
            p, select(func.count()).select_from(Response).where(Response.campaign_id == cid)
        )
        await asyncio.sleep(1.0)
        assert not work.done()
        second = worker_process(p.settings, log)
        try:
            result, answered = await work
        finally:
            second.terminate()
            second.wait(15)
    finally:
        if first.poll() is None:
            first.kill()

    assert result.counts.finished == images
    assert result.counts.agreed == images
    async with p.sessions() as s:
        responses = (
            await s.execute(
                select(Response.id, Response.item_id).where(Response.campaign_id == cid)
            )
        ).all()
        consensus = (await s.scalars(select(Consensus).where(Consensus.campaign_id == cid))).all()
    assert sum(answered) == len(responses) == images * 2 >= acked_before
    used = [rid for c in consensus for rid in c.response_ids]
    assert sorted(used) == sorted(r for r, _ in responses), "an answer was lost or used twice"
    assert len(consensus) == images
