"""The pipeline end to end on real Temporal, a real database (SQLite and PostgreSQL) and MinIO."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter

from sqlalchemy import func, select

from db.models import Assignment, Campaign, Consensus, Item, Response
from schemas.workflow_io import item_workflow_id
from services.errors import ALREADY_ANSWERED, LEASE_EXPIRED_REASSIGNED
from simulation.crowd import annotate_until_empty, submit
from storage import read_manifest, read_records, verify_version
from tests.pipeline.conftest import Pipeline, bearer


async def _count(p: Pipeline, model: type, **where: object) -> int:
    async with p.sessions() as s:
        stmt = select(func.count()).select_from(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return int(await s.scalar(stmt) or 0)


async def test_unanimous_campaign_publishes_without_review(pipeline: Pipeline) -> None:
    p = pipeline
    cid = await p.launch(images=6, annotators_per_image=3, agreement_threshold=1.0)
    crowd = await p.people([1.0, 1.0, 1.0])
    answered = await asyncio.gather(
        *(annotate_until_empty(p.http, a, cid, p.truth) for a in crowd)
    )
    assert answered == [6, 6, 6]

    result = await p.result(cid)
    assert (result.counts.finished, result.counts.agreed, result.counts.reviewed) == (6, 6, 0)
    assert result.version == 1

    ctx = p.http._transport.app.state.ctx  # type: ignore[attr-defined]
    manifest = read_manifest(ctx.store, result.dataset, 1)
    assert manifest["item_count"] == 6
    assert manifest["campaigns"] == [cid]
    assert verify_version(ctx.store, result.dataset, 1) == []
    records = list(read_records(ctx.store, result.dataset, 1))
    assert {r["item_id"]: r["labels"] for r in records} == {k: [v] for k, v in p.truth.items()}
    for r in records:
        assert r["method"] == "majority_vote"
        assert len({a["annotator_id"] for a in r["responses"]}) == 3
        assert r["workflow_id"] == item_workflow_id(cid, int(r["item_id"].rsplit("-", 1)[1]))
        assert r["run_id"]
    async with p.sessions() as s:
        campaign = await s.get(Campaign, cid)
        assert campaign is not None
        assert campaign.status == "completed"
        assert campaign.published_version == 1
    assert ctx.store.create(f"datasets/{result.dataset}/versions/000001/manifest.json",
                            b"{}") is False, "a published version can never be overwritten"
