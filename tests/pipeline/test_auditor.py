"""The auditor reads everything, through the API and a read-only database, and changes nothing."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError

from db.audit_models import AuditEntry
from db.models import Base, Campaign
from services.audit_views import read_only_session
from simulation.crowd import submit
from tests.pipeline.conftest import Pipeline, bearer

AUDITOR = {"Authorization": "Bearer dev-auditor-token"}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


async def _finished(p: Pipeline) -> str:
    cid = await p.launch(images=2, annotators_per_image=2, agreement_threshold=0.5)
    await p.crowd_until_done(cid, await p.people([1.0, 1.0]))
    return cid


async def _snapshot(p: Pipeline) -> dict[str, int]:
    async with p.sessions() as s:
        counts = {
            t.name: int(await s.scalar(select(func.count()).select_from(t)) or 0)
            for t in Base.metadata.sorted_tables
        }
    store = p.http._transport.app.state.ctx.store  # type: ignore[attr-defined]
    counts["store objects"] = len(list(store.list("")))
    return counts


async def test_the_auditor_reads_timelines_traces_verifications_and_exports(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    cid = await _finished(p)
    r = await p.http.get(f"/audit/items/{cid}-0/timeline", headers=AUDITOR)
    assert r.status_code == 200
    whats = [e["what"] for e in r.json()]
    assert "consensus.finalized" in whats and "dataset.published" in whats
    assert any(w.startswith("EVENT_TYPE_WORKFLOW_EXECUTION_STARTED") for w in whats)

    result = await p.result(cid)
    trace = (
        await p.http.get(
            f"/audit/labels/{result.dataset}/{result.version}/{cid}-0", headers=AUDITOR
        )
    ).json()
    assert len(trace["answers"]) == 2
    assert all(a["annotator_name"] and a["matches_published_record"] for a in trace["answers"])

    verified = (await p.http.get(f"/audit/campaigns/{cid}/verify", headers=AUDITOR)).json()
    assert verified["ok"] is True and verified["entries"] > 5

    export = await p.http.get(f"/audit/campaigns/{cid}/export", headers=AUDITOR)
    rows = [json.loads(line) for line in export.text.splitlines()]
    assert [row["seq"] for row in rows] == list(range(1, len(rows) + 1))
    histories = await p.http.get(f"/audit/campaigns/{cid}/export?part=histories", headers=AUDITOR)
    assert {json.loads(line)["workflow_id"] for line in histories.text.splitlines()} >= {
        f"campaign/{cid}",
        f"campaign/{cid}/item/0",
    }

    # Annotators cannot read the audit log.
    (person,) = await p.people([1.0])
    assert (
        await p.http.get(f"/audit/campaigns/{cid}/verify", headers=bearer(person.token))
    ).status_code == 403


async def test_the_auditor_can_change_nothing(pipeline: Pipeline) -> None:
    p = pipeline
    cid = await _finished(p)
    before = await _snapshot(p)
    app = p.http._transport.app  # type: ignore[attr-defined]
    tried = 0
    for template, operations in app.openapi()["paths"].items():
        path = re.sub(
            r"\{[^}]+\}",
            lambda m: {"{campaign_id}": cid, "{item_id}": f"{cid}-0"}.get(m.group(0), "x"),
            template,
        )
        for method in {m.upper() for m in operations} & MUTATING:
            r = await p.http.request(
                method, path, headers=AUDITOR, json={"idempotency_key": uuid.uuid4().hex}
            )
            assert r.status_code in (401, 403), f"{method} {template} gave {r.status_code}"
            tried += 1
    assert tried >= 8
    assert await _snapshot(p) == before


async def test_the_read_only_engine_refuses_writes(pipeline: Pipeline) -> None:
    p = pipeline
    await _finished(p)
    url = p.settings.database_url
    async with read_only_session(url) as session:
        assert await session.scalar(select(func.count()).select_from(Campaign)) == 1
        with pytest.raises(DBAPIError):
            await session.execute(
                insert(AuditEntry).values(
                    chain="x",
                    seq=1,
                    at=text("CURRENT_TIMESTAMP"),
                    actor_type="auditor",
                    actor_id="a",
                    action="forged",
                    details={},
                    prev_hash="0",
                    hash="0",
                )
            )
            await session.flush()


async def test_an_items_timeline_tells_its_whole_story_in_order(pipeline: Pipeline) -> None:
    p = pipeline
    cid = await p.launch(
        images=1, annotators_per_image=2, agreement_threshold=1.0, lease_timeout="1s"
    )
    slow, b, c = await p.people([1.0, 1.0, 0.0])
    (expert,) = await p.people([1.0], role="expert")
    item = f"{cid}-0"
    held = (await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(slow.token))).json()
    await asyncio.sleep(1.3)  # the lease runs out
    truth = p.truth[item]
    for person, label in ((b, truth), (c, "square" if truth != "square" else "circle")):
        task = (
            await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(person.token))
        ).json()["task"]
        assert await p.item_of(cid, task) == item
        ok = await submit(p.http, person.token, cid, task["assignment_id"], [label])
        assert ok.status_code == 200
    late = await submit(p.http, slow.token, cid, held["task"]["assignment_id"], [truth])
    assert late.status_code == 409

    for _ in range(100):
        pending = (
            await p.http.get(f"/campaigns/{cid}/reviews", headers=bearer(expert.token))
        ).json()
        if pending:
            break
        await asyncio.sleep(0.1)
    await p.http.post(
        f"/items/{item}/review",
        headers=bearer(expert.token),
        json={"decision": "accept_consensus", "idempotency_key": uuid.uuid4().hex},
    )
    await p.result(cid)

    events = (await p.http.get(f"/audit/items/{item}/timeline", headers=AUDITOR)).json()
    story = [(e["what"], e["actor"]) for e in events if e["source"] == "audit"]
    expected = [
        ("assignment.leased", f"annotator:{slow.id}"),
        ("assignment.expired", "system:quorum"),
        ("assignment.leased", f"annotator:{b.id}"),  # the reassignment
        ("response.submitted", f"annotator:{b.id}"),
        ("assignment.leased", f"annotator:{c.id}"),
        ("response.submitted", f"annotator:{c.id}"),
        ("item.escalated", "system:quorum"),
        ("review.decided", f"expert:{expert.id}"),
        ("consensus.finalized", "system:quorum"),
        ("dataset.published", "system:quorum"),
    ]
    positions = [story.index(step) for step in expected if step in story]
    assert [s for s in expected if s in story] == expected, f"missing from {story}"
    assert positions == sorted(positions), f"out of order: {story}"
    # The late answer is refused after the last answer and before the review; the workflow
    # escalates the item at the same time, so either of those two may come first.
    late_at = story.index(("response.refused", f"annotator:{slow.id}"))
    assert positions[5] < late_at < positions[7], f"out of order: {story}"
    refused = next(e for e in events if e["what"] == "response.refused")
    assert "given to someone else" in refused["detail"]["reason"]
    times = [e["at"] for e in events]
    assert times == sorted(times)
    assert any(e["source"] == "workflow" for e in events)
