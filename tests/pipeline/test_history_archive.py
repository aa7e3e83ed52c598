"""Closed workflows' histories are kept write-once, and replay with the current code."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from infra.temporal_client import DATA_CONVERTER
from schemas.workflow_io import campaign_workflow_id, item_workflow_id
from services.audit import HISTORY_PREFIX, history_key
from simulation.crowd import review_until_done
from tests.pipeline.conftest import Pipeline
from workers.archiver import ensure_archiver
from workers.registry import WORKFLOWS


async def test_histories_of_a_finished_campaign_are_kept_and_replay(pipeline: Pipeline) -> None:
    p = pipeline
    store = p.http._transport.app.state.ctx.store  # type: ignore[attr-defined]
    cid = await p.launch(images=3, annotators_per_image=2, agreement_threshold=1.0)
    crowd = await p.people([1.0, 0.0])  # every item disagrees: the review path
    (expert,) = await p.people([1.0], role="expert")
    stop = asyncio.Event()
    reviewing = asyncio.create_task(
        review_until_done(p.http, expert.token, cid, p.truth, stop=stop)
    )
    await p.crowd_until_done(cid, crowd)
    stop.set()
    await reviewing

    archiver = await ensure_archiver(p.temporal, p.settings.temporal.task_queue, 3600)
    expected = {campaign_workflow_id(cid)} | {item_workflow_id(cid, n) for n in range(3)}
    kept: list[str] = []
    for _ in range(60):
        await archiver.signal("archive_now")
        await asyncio.sleep(0.5)
        kept = list(store.list(f"{HISTORY_PREFIX}/campaign/{cid}"))
        if {k.removeprefix(f"{HISTORY_PREFIX}/").rsplit("/", 1)[0] for k in kept} >= expected:
            break
    found = {k.removeprefix(f"{HISTORY_PREFIX}/").rsplit("/", 1)[0] for k in kept}
    assert found >= expected, f"not archived: {expected - found}"

    # Write-once: the archive refuses to overwrite a kept history.
    run_id = (await p.campaign_handle(cid).describe()).run_id
    assert store.create(history_key(campaign_workflow_id(cid), run_id), b"{}") is False

    histories = [
        WorkflowHistory.from_json(
            k.removeprefix(f"{HISTORY_PREFIX}/").rsplit("/", 1)[0], json.loads(store.get(k))
        )
        for k in kept
    ]
    keep = os.environ.get("QUORUM_KEEP_HISTORIES")  # refresh tests/histories/ with real runs
    if keep:
        for k in kept:
            name = k.removeprefix(f"{HISTORY_PREFIX}/campaign/{cid}").strip("/") or "campaign"
            kind = "campaign" if name.count("/") == 0 else "item-" + name.split("/")[1]
            Path(keep, f"{kind}.json").write_bytes(store.get(k))  # noqa: ASYNC240

    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=DATA_CONVERTER)

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    results = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
    failures = {wid: str(err) for wid, err in results.replay_failures.items()}
    assert failures == {}
    await archiver.terminate("test done")
