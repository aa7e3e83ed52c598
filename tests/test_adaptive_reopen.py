"""The adaptive re-check (``services.redundancy.reopen_below_target``) on SQLite and PostgreSQL:
which finished images a refit's estimates send back for one more annotator, and what it writes.

The campaigns are written straight into the database (``simulation.finished_campaign``): every
image answered by the same two annotators, who agree on it; each test then sets how its images
were finalized and hands the re-check the estimates a refit would have made.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.audit_models import AuditEntry
from db.engine import create_sessionmaker
from db.models import Campaign, Consensus, Item, Response
from quality.adaptive import confusion_posterior, one_coin_matrix
from services.redundancy import reopen_below_target
from services.reliability import POPULATION, Estimate
from simulation.finished_campaign import CLASSES, write_finished_campaign

TARGET = 0.9
WHO = ("w000", "w001")  # write_finished_campaign's first two annotators, as suffixes


@pytest.fixture
def sessions(migrated_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(migrated_engine)


def _estimates(campaign_id: str, accuracy: float) -> dict[str, Estimate]:
    """Both annotators (and the average one) at a one-coin ``accuracy``."""
    matrix = one_coin_matrix(accuracy, len(CLASSES)).tolist()
    return {
        key: Estimate(accuracy, 0.0, 10, matrix)
        for key in (*(f"{campaign_id}-{w}" for w in WHO), POPULATION)
    }


def _two_agreeing(accuracy: float) -> float:
    matrix = one_coin_matrix(accuracy, len(CLASSES)).tolist()
    return max(confusion_posterior([CLASSES[0]] * 2, [matrix] * 2, list(CLASSES)).values())


async def _campaign(
    sessions: async_sessionmaker[AsyncSession],
    campaign_id: str,
    *,
    images: int = 4,
    redundancy: dict[str, Any] | None = None,
    confidence: float = 0.916,
) -> None:
    """A running adaptive campaign of ``images`` images, each finalized by adaptive redundancy
    at ``confidence`` on two agreeing answers."""
    await write_finished_campaign(
        sessions, campaign_id, images, annotators_per_image=2, workforce=2, seed=5
    )
    async with sessions.begin() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None
        campaign.status = "running"
        campaign.spec = {
            **campaign.spec,
            "redundancy": redundancy
            or {"min_annotators": 2, "max_annotators": 4, "target_confidence": TARGET},
        }
        for consensus in await session.scalars(
            select(Consensus).where(Consensus.campaign_id == campaign_id)
        ):
            consensus.method, consensus.confidence = "adaptive", confidence
            label = consensus.body["objects"][0]["label"]
            await session.execute(
                update(Response)
                .where(Response.item_id == consensus.item_id)
                .values(body={"objects": [{"type": "tag", "label": label, "attributes": {}}]})
            )


async def _reopen(
    sessions: async_sessionmaker[AsyncSession], campaign_id: str, estimates: dict[str, Estimate]
) -> list[tuple[int, str]]:
    async with sessions.begin() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None
        return [(o, str(p)) for o, p in await reopen_below_target(session, campaign, estimates)]


async def _items(sessions: async_sessionmaker[AsyncSession], campaign_id: str) -> list[Item]:
    async with sessions() as session:
        return list(
            await session.scalars(
                select(Item).where(Item.campaign_id == campaign_id).order_by(Item.ordinal)
            )
        )


def test_the_estimates_used_here_straddle_the_target() -> None:
    # Two agreeing answers clear 0.9 at accuracy 0.9 and fall short at 0.6: the tests below
    # turn on exactly this.
    assert _two_agreeing(0.9) >= TARGET > _two_agreeing(0.6)


async def test_images_whose_annotators_look_worse_now_are_reopened_for_one_more(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    cid = "reopen-a"
    await _campaign(sessions, cid)
    assert await _reopen(sessions, cid, _estimates(cid, 0.9)) == []  # still confident

    reopened = await _reopen(sessions, cid, _estimates(cid, 0.6))
    assert reopened == [(n, "agreed") for n in range(4)]
    items = await _items(sessions, cid)
    # Open again, for a third annotator; the two answers still count.
    assert [(i.status, i.slots_wanted, i.slots_taken) for i in items] == [("open", 3, 2)] * 4
    async with sessions() as session:
        assert await session.scalar(select(Consensus).where(Consensus.campaign_id == cid)) is None
        counted = await session.scalars(
            select(Response.id).where(Response.campaign_id == cid, Response.voided_at.is_(None))
        )
        assert len(counted.all()) == 8
        entries = (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.chain == cid, AuditEntry.action == "item.reopened")
                .order_by(AuditEntry.seq)
            )
        ).all()
    assert [e.item_id for e in entries] == [i.id for i in items]
    details = entries[0].details
    assert details["previous_method"] == "adaptive" and details["target"] == TARGET
    assert details["confidence_when_stopped"] == pytest.approx(0.916)
    assert details["confidence_now"] == pytest.approx(_two_agreeing(0.6))
    assert (details["answers"], details["wanted"]) == (2, 3)
    # Re-open is not repeated: the images are no longer finished.
    assert await _reopen(sessions, cid, _estimates(cid, 0.6)) == []


async def test_only_images_that_stopped_at_the_target_and_have_room_are_reopened(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    cid = "reopen-b"
    await _campaign(sessions, cid, images=4)
    async with sessions.begin() as session:
        # 1: finalized below the target (the futility stop); 2: decided by an expert;
        # 3: a gold item. Only 0 claimed a confidence it no longer has.
        await session.execute(
            update(Consensus).where(Consensus.item_id == f"{cid}-1").values(confidence=0.8)
        )
        await session.execute(
            update(Consensus).where(Consensus.item_id == f"{cid}-2").values(method="review")
        )
        await session.execute(update(Item).where(Item.id == f"{cid}-3").values(kind="gold"))
    assert await _reopen(sessions, cid, _estimates(cid, 0.6)) == [(0, "agreed")]
    assert [i.status for i in await _items(sessions, cid)] == ["open", "done", "done", "done"]


async def test_an_image_whose_label_the_new_estimates_turn_against_is_reopened(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Image 0 was split, w000 "circle" and w001 "square", and given "circle" at 0.95. The refit
    # says w001 is excellent and w000 poor: the posterior now leads with "square", confidently
    # (above the target), and "circle" has almost nothing. Its label must be decided again.
    cid = "reopen-d"
    await _campaign(sessions, cid, images=2)
    first, second = (f"{cid}-{w}" for w in WHO)
    async with sessions.begin() as session:
        for annotator, label in ((first, "circle"), (second, "square")):
            await session.execute(
                update(Response)
                .where(Response.item_id == f"{cid}-0", Response.annotator_id == annotator)
                .values(body={"objects": [{"type": "tag", "label": label, "attributes": {}}]})
            )
        await session.execute(
            update(Consensus)
            .where(Consensus.item_id == f"{cid}-0")
            .values(
                body={"objects": [{"type": "tag", "label": "circle", "attributes": {}}]},
                confidence=0.95,
            )
        )
    estimates = {
        first: Estimate(0.4, 0.0, 10, one_coin_matrix(0.4, 3).tolist()),
        second: Estimate(0.99, 0.0, 10, one_coin_matrix(0.99, 3).tolist()),
    }
    now = confusion_posterior(
        ["circle", "square"],
        [estimates[first].confusion or [], estimates[second].confusion or []],
        list(CLASSES),
    )
    assert now["square"] >= TARGET > now["circle"]
    # Image 1's two agreeing answers stay confident whoever is trusted.
    assert await _reopen(sessions, cid, estimates) == [(0, "agreed")]
    async with sessions() as session:
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.chain == cid, AuditEntry.action == "item.reopened")
        )
    assert entry is not None and entry.details["confidence_now"] == pytest.approx(now["circle"])


@pytest.mark.parametrize(
    ("redundancy", "status"),
    [
        # At the maximum already: nobody left to ask.
        ({"min_annotators": 2, "max_annotators": 2, "target_confidence": TARGET}, "running"),
        # The operator turned the re-check off.
        (
            {
                "min_annotators": 2,
                "max_annotators": 4,
                "target_confidence": TARGET,
                "reopen_below_target": False,
            },
            "running",
        ),
        # Publishing: too late to re-open anything.
        ({"min_annotators": 2, "max_annotators": 4, "target_confidence": TARGET}, "publishing"),
    ],
)
async def test_nothing_is_reopened_without_room_consent_or_time(
    sessions: async_sessionmaker[AsyncSession], redundancy: dict[str, Any], status: str
) -> None:
    cid = f"reopen-c-{redundancy['max_annotators']}-{status}"
    await _campaign(sessions, cid, redundancy=redundancy)
    async with sessions.begin() as session:
        await session.execute(update(Campaign).where(Campaign.id == cid).values(status=status))
    assert await _reopen(sessions, cid, _estimates(cid, 0.6)) == []
    assert {i.status for i in await _items(sessions, cid)} == {"done"}
