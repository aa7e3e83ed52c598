"""Routing contested images (``redundancy.route_contested``) in ``claim_next``, on SQLite and
PostgreSQL: trusted annotators get contested images first, the others fresh images only, until a
contested image has waited out its hold.

The campaign is written straight into the database (``simulation.finished_campaign``), then set
running with two fresh images (0, 1: one slot free each), three contested ones (2, 3, 4: two
answers in, a third wanted) and one finished (5); the reliability rows are what a refit would
have written.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.audit_models import AuditEntry
from db.engine import create_sessionmaker
from db.models import Annotator, AnnotatorQuality, Campaign, Consensus, Item
from services.reliability import POPULATION
from services.task_assignment import claim_next
from simulation.finished_campaign import write_finished_campaign

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
HOLD = timedelta(minutes=10)
PEOPLE = ("t", "u1", "u2", "u3", "n")


@pytest.fixture
def sessions(migrated_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(migrated_engine)


async def _campaign(
    sessions: async_sessionmaker[AsyncSession], cid: str, *, route: bool = True
) -> None:
    await write_finished_campaign(sessions, cid, 6, annotators_per_image=2, workforce=2, seed=3)
    redundancy: dict[str, Any] = {"min_annotators": 2, "max_annotators": 4}
    redundancy |= {"target_confidence": 0.9, "route_contested": route, "route_hold": "10m"}
    async with sessions.begin() as session:
        campaign = await session.get(Campaign, cid)
        assert campaign is not None
        campaign.status, campaign.spec = "running", {**campaign.spec, "redundancy": redundancy}
        await session.execute(delete(Consensus).where(Consensus.item_id != f"{cid}-5"))
        for item in await session.scalars(select(Item).where(Item.campaign_id == cid)):
            if item.ordinal in (0, 1):  # fresh: one answer in, one slot free
                item.status, item.slots_wanted, item.slots_taken = "open", 2, 1
            elif item.ordinal in (2, 3, 4):  # contested: two answers, a third wanted at T0
                item.status, item.slots_wanted, item.slots_taken = "open", 3, 2
                item.contested_at = T0
        await session.execute(
            insert(Annotator),
            [
                {"id": f"{cid}-{p}", "name": p, "role": "annotator", "token_hash": f"{cid}-{p}"}
                for p in PEOPLE
            ],
        )
        # The average the answers weigh: (0.8 * 20 + 0.9 * 10 + 0.5 * 30) / 60 = 0.67. The
        # population row, a voting model and a blocked spammer must not move it.
        rows = [
            (f"{cid}-w000", 0.8, 10, "active"),
            (f"{cid}-w001", 0.8, 10, "active"),
            (f"{cid}-t", 0.9, 10, "active"),
            *((f"{cid}-{u}", 0.5, 10, "active") for u in ("u1", "u2", "u3")),
            (POPULATION, 0.99, 1000, "active"),
            ("model:detector", 0.99, 1000, "active"),
            (f"{cid}-spammer", 0.05, 1000, "blocked"),
        ]
        session.add_all(
            AnnotatorQuality(campaign_id=cid, annotator_id=a, accuracy=acc, answers=n, status=st)
            for a, acc, n, st in rows
        )


async def _claim(
    sessions: async_sessionmaker[AsyncSession], cid: str, who: str, now: datetime
) -> int | None:
    async with sessions.begin() as session:
        annotator = await session.get(Annotator, f"{cid}-{who}")
        assert annotator is not None
        task = await claim_next(session, annotator, cid, now=now)
        return None if task is None else task.item.ordinal


async def test_contested_images_go_to_trusted_annotators_and_wait_for_them_a_while(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    cid = "route-a"
    await _campaign(sessions, cid)
    soon = T0 + timedelta(minutes=1)
    assert await _claim(sessions, cid, "t", soon) == 2  # contested first, before fresh image 0
    assert await _claim(sessions, cid, "u1", soon) == 0  # below average: fresh images only
    assert await _claim(sessions, cid, "u2", soon) == 1
    assert await _claim(sessions, cid, "u3", soon) is None  # only contested ones left: held
    assert await _claim(sessions, cid, "u3", T0 + HOLD + timedelta(seconds=1)) == 3
    assert await _claim(sessions, cid, "n", soon) == 4  # not estimated yet: trusted

    async with sessions() as session:
        routed = [
            (e.details["assignment_id"], e.details.get("routed"))
            for e in await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.chain == cid, AuditEntry.action == "assignment.leased")
                .order_by(AuditEntry.seq)
            )
        ]
    # t's and n's leases were routed; u3 took image 3 once its hold was over.
    assert [why for _, why in routed] == ["contested", None, None, "hold_expired", "contested"]


async def test_without_routing_everyone_takes_the_lowest_open_image(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    cid = "route-b"
    await _campaign(sessions, cid, route=False)
    soon = T0 + timedelta(minutes=1)
    got = [await _claim(sessions, cid, who, soon) for who in ("u1", "u2", "u3", "t")]
    assert got == [0, 1, 2, 3]
