"""What appending to the audit log costs the database, and that the chain stays whole.

A transaction takes its chain's head lock once, at its commit, however many entries it
appended, and updates the head once (on PostgreSQL its entries also go out in one INSERT).
Concurrent transactions still line up behind the head's lock, and hold it only for the end of
their commit.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.audit_models import AuditEntry
from db.engine import create_sessionmaker
from services import audit


@pytest.fixture
def engine(migrated_engine: AsyncEngine) -> AsyncEngine:
    return migrated_engine


def _statements(engine: AsyncEngine) -> list[str]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(" ".join(str(args[2]).split()))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    return seen


def _count(statements: list[str], start: str) -> int:
    return sum(1 for s in statements if s.startswith(start))


async def _entries(engine: AsyncEngine, chain: str) -> list[AuditEntry]:
    async with create_sessionmaker(engine)() as session:
        return list(
            (
                await session.scalars(
                    select(AuditEntry).where(AuditEntry.chain == chain).order_by(AuditEntry.seq)
                )
            ).all()
        )


async def _intact(engine: AsyncEngine, chain: str) -> list[str]:
    async with create_sessionmaker(engine)() as session:
        report = await audit.verify_chain(session, chain, anchors=[])
    return report.problems


async def test_one_transaction_locks_the_head_once(engine: AsyncEngine) -> None:
    chain = f"cmp_{uuid.uuid4().hex[:8]}"
    async with create_sessionmaker(engine).begin() as session:
        await audit.start_chain(session, chain)
    statements = _statements(engine)
    async with create_sessionmaker(engine).begin() as session:
        for n in range(3):
            await audit.append(
                session, action=f"step.{n}", actor=audit.SYSTEM_ACTOR, campaign_id=chain
            )
    assert _count(statements, "SELECT audit_heads") == 1
    assert _count(statements, "UPDATE audit_heads") == 1
    # PostgreSQL takes the three rows in one INSERT; SQLite, which cannot promise the order of
    # RETURNING rows, one INSERT each (in-process, cheap).
    inserts = 1 if engine.dialect.name == "postgresql" else 3
    assert _count(statements, "INSERT INTO audit_entries") == inserts
    entries = await _entries(engine, chain)
    assert [(e.seq, e.action) for e in entries] == [(1, "step.0"), (2, "step.1"), (3, "step.2")]
    assert await _intact(engine, chain) == []


async def test_the_next_transaction_takes_the_lock_again(engine: AsyncEngine) -> None:
    chain = f"cmp_{uuid.uuid4().hex[:8]}"
    statements = _statements(engine)
    async with create_sessionmaker(engine)() as session:
        for n in range(2):
            async with session.begin():
                await audit.append(
                    session, action=f"step.{n}", actor=audit.SYSTEM_ACTOR, campaign_id=chain
                )
    # The first commit found no head, created the chain and locked its new head (two reads);
    # the second transaction locked it again.
    assert _count(statements, "SELECT audit_heads") == 3
    assert [e.seq for e in await _entries(engine, chain)] == [1, 2]
    assert await _intact(engine, chain) == []


async def test_a_rolled_back_transaction_leaves_no_trace(engine: AsyncEngine) -> None:
    chain = f"cmp_{uuid.uuid4().hex[:8]}"
    sessions = create_sessionmaker(engine)
    async with sessions.begin() as session:
        await audit.append(session, action="kept", actor=audit.SYSTEM_ACTOR, campaign_id=chain)
    with pytest.raises(RuntimeError):
        async with sessions.begin() as session:
            await audit.append(
                session, action="refused", actor=audit.SYSTEM_ACTOR, campaign_id=chain
            )
            raise RuntimeError("the request failed")
    async with sessions.begin() as session:
        await audit.append(session, action="next", actor=audit.SYSTEM_ACTOR, campaign_id=chain)
    assert [(e.seq, e.action) for e in await _entries(engine, chain)] == [
        (1, "kept"),
        (2, "next"),
    ]
    assert await _intact(engine, chain) == []


async def test_concurrent_transactions_still_make_one_chain(engine: AsyncEngine) -> None:
    chain = f"cmp_{uuid.uuid4().hex[:8]}"
    sessions = create_sessionmaker(engine)
    async with sessions.begin() as session:
        await audit.start_chain(session, chain)

    async def writer(n: int) -> None:
        async with sessions.begin() as session:
            for step in range(2):
                await audit.append(
                    session, action=f"w{n}.{step}", actor=audit.SYSTEM_ACTOR, campaign_id=chain
                )
                await asyncio.sleep(0)  # let the others try to interleave

    await asyncio.gather(*(writer(n) for n in range(8)))
    entries = await _entries(engine, chain)
    assert [e.seq for e in entries] == list(range(1, 17))
    # A transaction's two entries are adjacent: nobody appended between them.
    actions = [e.action for e in entries]
    assert all(actions[i].split(".")[0] == actions[i + 1].split(".")[0] for i in range(0, 16, 2))
    assert await _intact(engine, chain) == []


async def test_a_rolled_back_transaction_of_the_same_session_leaves_no_trace(
    engine: AsyncEngine,
) -> None:
    chain = f"cmp_{uuid.uuid4().hex[:8]}"
    async with create_sessionmaker(engine)() as session:
        with pytest.raises(RuntimeError):
            async with session.begin():
                await audit.append(
                    session, action="refused", actor=audit.SYSTEM_ACTOR, campaign_id=chain
                )
                raise RuntimeError("the request failed")
        async with session.begin():
            await audit.append(session, action="kept", actor=audit.SYSTEM_ACTOR, campaign_id=chain)
    assert [(e.seq, e.action) for e in await _entries(engine, chain)] == [(1, "kept")]
    assert await _intact(engine, chain) == []


async def test_the_head_is_locked_at_commit_not_at_append(engine: AsyncEngine) -> None:
    """The lock is held for the end of the commit only: the statements a transaction runs
    after its append (a claim reads the annotator's progress) no longer run under it."""
    chain = f"cmp_{uuid.uuid4().hex[:8]}"
    async with create_sessionmaker(engine).begin() as session:
        await audit.start_chain(session, chain)
    statements = _statements(engine)
    async with create_sessionmaker(engine).begin() as session:
        entry = await audit.append(
            session, action="leased", actor=audit.SYSTEM_ACTOR, campaign_id=chain
        )
        assert entry.seq is None  # not chained yet
        await session.execute(select(AuditEntry.id).limit(1))  # more work after the append
        locked_before_commit = _count(statements, "SELECT audit_heads")
    assert locked_before_commit == 0
    assert _count(statements, "SELECT audit_heads") == 1
    assert entry.seq == 1 and entry.hash == audit.hash_of(entry)
    assert await _intact(engine, chain) == []
