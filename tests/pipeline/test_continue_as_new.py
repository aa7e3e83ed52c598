"""A campaign continues as new when its history grows, and keeps its counts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from db.models import Consensus
from infra.devstack import TemporalDevServer, free_port
from schemas.workflow_io import item_workflow_id
from simulation.crowd import annotate_until_empty
from tests.pipeline.conftest import Pipeline

SUGGEST_AT = 40  # events; the server's default is 4,096


@pytest.fixture(scope="module")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalDevServer]:
    """This module's own dev server, told to suggest continue-as-new very early."""
    server = TemporalDevServer(
        Path(tmp_path_factory.mktemp("temporal-can")),
        port=free_port(),
        ui_port=free_port(),
        headless=True,
        dynamic_config={"limit.historyCount.suggestContinueAsNew": SUGGEST_AT},
    )
    with server:
        yield server


async def test_campaign_continues_as_new_without_losing_counts(pipeline: Pipeline) -> None:
    p = pipeline
    images = 30
    cid = await p.launch(images=images, annotators_per_image=1, agreement_threshold=1.0, window=3)
    crowd = await p.people([1.0, 1.0])
    result, answered = await p.crowd_until_done(cid, crowd, within=120)

    # 30 item signals plus the batch activities exceed 40 events however signals batch into
    # workflow tasks, so at least one continue-as-new is certain (more depends on timing).
    assert result.generations >= 1, "the campaign never continued as new"
    assert result.counts.finished == result.counts.agreed == images
    assert sum(answered) == images

    # The chain of runs is real: the first run ended by continuing as new.
    handle = p.campaign_handle(cid)
    runs = [w async for w in p.temporal.list_workflows(f"WorkflowId = '{handle.id}'")]
    assert len(runs) == result.generations + 1
    assert sorted(r.status.name for r in runs if r.status) == sorted(
        ["CONTINUED_AS_NEW"] * result.generations + ["COMPLETED"]
    )


async def test_a_long_waiting_item_continues_as_new_and_keeps_its_answers(
    pipeline: Pipeline,
) -> None:
    """An item nobody answers reconciles on a (backing-off) timer; its history is bounded by
    continue-as-new, and answers given before and after are all counted."""
    p = pipeline
    cid = await p.launch(
        images=1, annotators_per_image=2, agreement_threshold=1.0, lease_timeout="1s"
    )
    early, late = await p.people([1.0, 1.0])
    assert await annotate_until_empty(p.http, early, cid, p.oracle, max_answers=1) == 1
    handle = p.temporal.get_workflow_handle(item_workflow_id(cid, 0))
    first_run = (await handle.describe()).run_id
    for _ in range(300):  # reconciles at 1, 2, 4, 8 s: about 11 events each
        if (await handle.describe()).run_id != first_run:
            break
        await asyncio.sleep(0.1)
    assert (await handle.describe()).run_id != first_run, "the item never continued as new"
    assert await handle.query("response_count") == 1

    result, _ = await p.crowd_until_done(cid, [late], within=60)
    assert result.counts.finished == 1
    async with p.sessions() as s:
        consensus = await s.get(Consensus, f"{cid}-0")
        assert consensus is not None
        assert sorted(consensus.annotator_ids) == sorted([early.id, late.id])
