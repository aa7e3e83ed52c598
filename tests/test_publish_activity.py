"""The publish activity reads a campaign in chunks and spools it: the version it writes must be
the campaign's every final label, with the agreement of all of them, whatever the chunking.

Runs the activity in Temporal's ActivityEnvironment on SQLite and PostgreSQL, with a local
dataset store; the campaigns are written straight into the database
(``simulation.finished_campaign``).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

import activities.campaign_activities as campaign_activities
from activities.campaign_activities import CampaignActivities
from db.engine import create_sessionmaker
from db.models import Campaign, Consensus, DatasetVersion, Item, Response
from quality import CampaignItem, geometry_alpha, krippendorff_alpha_nominal
from schemas.ontology import Ontology
from schemas.workflow_io import PublishInput
from services.consensus import class_specs, response_objects
from simulation.finished_campaign import write_finished_campaign
from storage import LocalObjectStore, read_manifest, read_records, verify_version


@pytest.fixture
def sessions(migrated_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(migrated_engine)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Several chunks (and a last, partial one) even for a small campaign.
    monkeypatch.setattr(campaign_activities, "PUBLISH_CHUNK", 7)


async def _publish(
    sessions: async_sessionmaker[AsyncSession], store: LocalObjectStore, campaign_id: str, pid: str
) -> tuple[Any, list[Any]]:
    heartbeats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: heartbeats.append(details)
    activities = CampaignActivities(sessions, cast(Client, None), store)
    result = await env.run(
        activities.publish, PublishInput(campaign_id=campaign_id, publish_id=pid)
    )
    return result, heartbeats


async def _expected(
    sessions: async_sessionmaker[AsyncSession], campaign_id: str
) -> tuple[dict[str, list[Response]], dict[str, Consensus], float, Counter[str]]:
    """Answers and consensus from the database, all at once, and the alpha they give."""
    async with sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None
        answers: dict[str, list[Response]] = defaultdict(list)
        for r in await session.scalars(
            select(Response)
            .where(Response.campaign_id == campaign_id, Response.voided_at.is_(None))
            .order_by(Response.item_id, Response.submitted_at, Response.id)
        ):
            answers[r.item_id].append(r)
        consensus = {
            c.item_id: c
            for c in await session.scalars(
                select(Consensus).where(Consensus.campaign_id == campaign_id)
            )
        }
        items = list(
            await session.scalars(
                select(Item).where(Item.campaign_id == campaign_id).order_by(Item.ordinal)
            )
        )
    ontology = Ontology.model_validate(campaign.spec["ontology"])
    if ontology.is_classification:
        alpha = krippendorff_alpha_nominal(
            [[r.body["objects"][0]["label"] for r in answers[i.id]] for i in items]
        )
    else:
        alpha = geometry_alpha(
            [
                CampaignItem(
                    response_objects(answers[i.id]), image_size=(i.width or 0, i.height or 0)
                )
                for i in items
            ],
            class_specs(ontology),
        )
    classes = Counter(o["label"] for c in consensus.values() for o in c.body["objects"])
    return answers, consensus, alpha, classes


async def test_a_classification_campaign_is_published_whole_from_chunks(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    store = LocalObjectStore(tmp_path / "datasets")
    await write_finished_campaign(sessions, "pc1", 40, dataset="shapes", seed=1)
    # A blocked annotator's answer is voided: neither provenance nor metrics.
    async with sessions.begin() as session:
        await session.execute(
            update(Response)
            .where(Response.id == "re-pc1-3-1")
            .values(voided_at=datetime(2026, 1, 6, tzinfo=UTC), void_reason="blocked")
        )
    answers, consensus, alpha, classes = await _expected(sessions, "pc1")

    result, heartbeats = await _publish(sessions, store, "pc1", "pc1.final")

    assert (result.dataset, result.version, result.item_count) == ("shapes", 1, 40)
    assert len(heartbeats) >= 6  # one per chunk of 7 items
    manifest = read_manifest(store, "shapes", 1)
    assert manifest["agreement"]["items"] == 40
    assert manifest["agreement"]["krippendorff_alpha"] == pytest.approx(alpha, abs=1e-12)
    assert 0.3 < alpha < 0.95  # some dissent: a real value, not a degenerate 1 or nan
    assert manifest["agreement"]["methods"] == {"majority_vote": 40}
    assert manifest["class_counts"] == dict(classes)
    records = {r["item_id"]: r for r in read_records(store, "shapes", 1)}
    assert set(records) == set(consensus)
    for item_id, record in records.items():
        assert record["objects"] == consensus[item_id].body["objects"]
        assert [r["response_id"] for r in record["responses"]] == [r.id for r in answers[item_id]]
    assert len(records["pc1-3"]["responses"]) == 2
    assert verify_version(store, "shapes", 1) == []
    async with sessions() as session:
        row = await session.get(Campaign, "pc1")
        assert row is not None and (row.status, row.published_version) == ("completed", 1)
        versions = list(await session.scalars(select(DatasetVersion)))
        assert [(v.dataset, v.version, v.item_count) for v in versions] == [("shapes", 1, 40)]


async def test_a_second_campaign_keeps_the_first_ones_labels(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    store = LocalObjectStore(tmp_path / "datasets")
    await write_finished_campaign(sessions, "pa", 30, dataset="shapes", seed=2)
    await write_finished_campaign(sessions, "pb", 12, dataset="shapes", seed=3)
    *_, classes_a = await _expected(sessions, "pa")
    *_, alpha_b, classes_b = await _expected(sessions, "pb")
    await _publish(sessions, store, "pa", "pa.final")
    first = read_manifest(store, "shapes", 1)

    result, _ = await _publish(sessions, store, "pb", "pb.final")

    manifest = read_manifest(store, "shapes", result.version)
    assert (result.version, result.item_count) == (2, 42)
    assert manifest["campaigns"] == ["pa", "pb"]
    assert manifest["class_counts"] == dict(classes_a + classes_b)
    by_campaign = manifest["agreement"]["by_campaign"]
    assert by_campaign["pa"] == first["agreement"]["by_campaign"]["pa"]
    assert by_campaign["pb"]["krippendorff_alpha"] == pytest.approx(alpha_b, abs=1e-12)
    records = list(read_records(store, "shapes", 2))
    assert Counter(r["campaign_id"] for r in records) == {"pa": 30, "pb": 12}
    assert records == sorted(records, key=lambda r: r["item_id"])

    # Publishing the first campaign again replaces its records and keeps the second's.
    again, _ = await _publish(sessions, store, "pa", "pa.again")
    assert (again.version, again.item_count) == (3, 42)
    assert list(read_records(store, "shapes", 3)) == records  # nothing changed in between


class MeetAtTheCommit:
    """A real store whose first two manifest writes wait for each other: two publishers that
    merged the same version reach the commit of the same number together."""

    def __init__(self, inner: LocalObjectStore) -> None:
        self.inner = inner
        self.barrier = threading.Barrier(2, timeout=30)
        self.lock = threading.Lock()
        self.held = 0

    def create(self, key: str, data: bytes) -> bool:
        if key.endswith("/manifest.json"):
            with self.lock:
                self.held += 1
                wait = self.held <= 2
            if wait:
                self.barrier.wait()
        return self.inner.create(key, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_two_campaigns_publishing_into_one_dataset_at_once_keep_each_others_labels(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    store = MeetAtTheCommit(LocalObjectStore(tmp_path / "datasets"))
    await write_finished_campaign(sessions, "ra", 20, dataset="shapes", seed=5)
    await write_finished_campaign(sessions, "rb", 15, dataset="shapes", seed=6)
    shared = cast(LocalObjectStore, store)
    (a, _), (b, _) = await asyncio.gather(
        _publish(sessions, shared, "ra", "ra.final"), _publish(sessions, shared, "rb", "rb.final")
    )
    assert store.held == 3  # both met at version 1; the loser merged again and took 2
    assert sorted([a.version, b.version]) == [1, 2]
    records = list(read_records(shared, "shapes", 2))
    assert Counter(r["campaign_id"] for r in records) == {"ra": 20, "rb": 15}
    manifest = read_manifest(shared, "shapes", 2)
    assert manifest["campaigns"] == ["ra", "rb"]
    assert set(manifest["agreement"]["by_campaign"]) == {"ra", "rb"}
    assert verify_version(shared, "shapes", 2) == []
    async with sessions() as session:
        versions = {v.campaign_id: v.version for v in await session.scalars(select(DatasetVersion))}
    assert versions == {"ra": a.version, "rb": b.version}


async def test_a_box_campaign_gets_the_geometry_alpha_of_all_its_items(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    store = LocalObjectStore(tmp_path / "datasets")
    await write_finished_campaign(sessions, "pg", 25, kind="boxes", dataset="cars", seed=4)
    _, _, alpha, classes = await _expected(sessions, "pg")

    await _publish(sessions, store, "pg", "pg.final")

    manifest = read_manifest(store, "cars", 1)
    assert manifest["agreement"]["krippendorff_alpha"] == pytest.approx(alpha, abs=1e-9)
    assert 0.5 < alpha < 1.0
    assert manifest["class_counts"] == dict(classes)
    assert verify_version(store, "cars", 1) == []
