"""A campaign continues as new when its history grows, and keeps its counts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.devstack import TemporalDevServer, free_port
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

    assert result.generations >= 2, "the campaign never continued as new"
    assert result.counts.finished == result.counts.agreed == images
    assert sum(answered) == images

    # The chain of runs is real: the first run ended by continuing as new.
    handle = p.campaign_handle(cid)
    runs = [w async for w in p.temporal.list_workflows(f"WorkflowId = '{handle.id}'")]
    assert len(runs) == result.generations + 1
    assert sorted(r.status.name for r in runs if r.status) == sorted(
        ["CONTINUED_AS_NEW"] * result.generations + ["COMPLETED"]
    )
