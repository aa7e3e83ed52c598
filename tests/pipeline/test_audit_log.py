"""The audit log is a hash chain: any changed or deleted row is found and named."""

from __future__ import annotations

from sqlalchemy import delete, select, text, update

from db.audit_models import AuditEntry, AuditHead
from services.audit import hash_of, load_anchors, verify_chain, write_anchors
from tests.pipeline.conftest import Pipeline


async def _finished_campaign(p: Pipeline) -> str:
    cid = await p.launch(images=2, annotators_per_image=2, agreement_threshold=0.5)
    crowd = await p.people([1.0, 1.0])
    await p.crowd_until_done(cid, crowd)
    return cid


async def _verify(p: Pipeline, cid: str) -> list[str]:
    store = p.http._transport.app.state.ctx.store  # type: ignore[attr-defined]
    async with p.sessions() as s:
        report = await verify_chain(s, cid, load_anchors(store, cid))
    return report.problems


async def test_a_finished_campaign_has_an_intact_chain(pipeline: Pipeline) -> None:
    p = pipeline
    cid = await _finished_campaign(p)
    async with p.sessions() as s:
        entries = (
            await s.scalars(
                select(AuditEntry).where(AuditEntry.chain == cid).order_by(AuditEntry.seq)
            )
        ).all()
    actions = [e.action for e in entries]
    assert actions[0] == "campaign.created"
    assert actions.count("consensus.finalized") == 2
    assert actions.count("agreement.computed") == 2
    assert "dataset.published" in actions
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert all(e.hash == hash_of(e) for e in entries)
    assert await _verify(p, cid) == []


async def test_changing_one_row_is_named(pipeline: Pipeline) -> None:
    p = pipeline
    cid = await _finished_campaign(p)
    async with p.sessions() as s:
        victim = await s.scalar(
            select(AuditEntry)
            .where(AuditEntry.chain == cid, AuditEntry.action == "review.decided")
            .limit(1)
        ) or await s.scalar(
            select(AuditEntry)
            .where(AuditEntry.chain == cid, AuditEntry.action == "agreement.computed")
            .limit(1)
        )
        assert victim is not None
        victim_id, victim_seq = victim.id, victim.seq
    # An attacker with database access rewrites who answered, with plain SQL.
    async with p.sessions.begin() as s:
        await s.execute(
            text("UPDATE audit_entries SET actor_id = 'someone-else' WHERE id = :id"),
            {"id": victim_id},
        )
    problems = await _verify(p, cid)
    assert problems, "tampering went unnoticed"
    assert f"entry id {victim_id} (seq {victim_seq}" in problems[0]
    assert "changed after it was written" in problems[0]


async def test_deleting_a_row_is_caught(pipeline: Pipeline) -> None:
    p = pipeline
    cid = await _finished_campaign(p)
    async with p.sessions.begin() as s:
        await s.execute(delete(AuditEntry).where(AuditEntry.chain == cid, AuditEntry.seq == 3))
    problems = await _verify(p, cid)
    assert problems and "seq 3 are missing" in problems[0]

    # Deleting the newest entries and rewinding the head is caught by the head...
    async with p.sessions.begin() as s:
        last = await s.scalar(select(AuditHead.seq).where(AuditHead.chain == cid))
        await s.execute(delete(AuditEntry).where(AuditEntry.chain == cid, AuditEntry.seq == last))
    assert any("head says" in problem for problem in await _verify(p, cid))


async def test_a_rewrite_with_recomputed_hashes_is_caught_by_the_anchor(pipeline: Pipeline) -> None:
    p = pipeline
    cid = await _finished_campaign(p)
    store = p.http._transport.app.state.ctx.store  # type: ignore[attr-defined]
    async with p.sessions.begin() as s:
        written = await write_anchors(s, store)
    assert any(f"/{cid}/" in key for key in written)
    assert await _verify(p, cid) == []

    # A careful attacker changes an entry and recomputes every hash after it, and the head.
    async with p.sessions.begin() as s:
        entries = (
            await s.scalars(
                select(AuditEntry).where(AuditEntry.chain == cid).order_by(AuditEntry.seq)
            )
        ).all()
        entries[1].details = {**entries[1].details, "note": "rewritten"}
        prev = entries[0].hash
        for e in entries[1:]:
            e.prev_hash = prev
            e.hash = hash_of(e)
            prev = e.hash
        await s.execute(update(AuditHead).where(AuditHead.chain == cid).values(hash=prev))
    problems = await _verify(p, cid)
    assert len(problems) == 1
    assert "anchor at seq" in problems[0] and "rewritten after it was anchored" in problems[0]
