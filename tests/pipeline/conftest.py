"""A running Quorum on real servers: Temporal dev server, SQLite or PostgreSQL, MinIO.

Each test gets its own database, bucket and task queue, an in-process worker, and the API
driven through httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from api.app import create_app
from api.context import AppContext
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade_database
from db.models import Item
from infra.devstack import MinioServer, PostgresServer, TemporalDevServer
from infra.settings import (
    ApiSettings,
    DatabaseSettings,
    S3Settings,
    Settings,
    StoreSettings,
    TemporalSettings,
)
from infra.temporal_client import connect
from schemas.workflow_io import CampaignResult, campaign_workflow_id
from simulation.crowd import Oracle, SimulatedAnnotator, annotate_until_empty, register
from simulation.images import generate_images
from storage import open_store, s3_client
from workers.registry import WORKFLOWS, build_activities

OPERATOR = "test-operator-token"


def settings_for(
    temporal: TemporalDevServer,
    db_url: str,
    minio: MinioServer,
    bucket: str,
    home: Path,
    task_queue: str,
) -> Settings:
    return Settings(
        environment="test",
        home=home,
        temporal=TemporalSettings(address=temporal.address, task_queue=task_queue),
        database=DatabaseSettings(url=db_url),
        store=StoreSettings(backend="s3", bucket=bucket),
        s3=S3Settings(
            endpoint_url=minio.endpoint_url,
            access_key_id=minio.access_key,
            secret_access_key=minio.secret_key,
        ),
        api=ApiSettings(operator_token=OPERATOR),
    )


@dataclass
class Pipeline:
    settings: Settings
    temporal: Client
    sessions: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    tmp: Path
    worker: Worker | None = None
    truth: dict[str, str] = field(default_factory=dict)

    def start_worker(self) -> Worker:
        ctx: AppContext = self.http._transport.app.state.ctx  # type: ignore[attr-defined]
        self.worker = Worker(
            self.temporal,
            task_queue=self.settings.temporal.task_queue,
            workflows=list(WORKFLOWS),
            activities=build_activities(self.sessions, self.temporal, ctx.store),
        )
        return self.worker

    @property
    def oracle(self) -> Oracle:
        """The truth, looked up the way an operator can: annotators never see item IDs."""
        return Oracle(OPERATOR, self.truth)

    async def item_of(self, campaign_id: str, task: dict[str, Any]) -> str:
        """The item a leased task is for (``task`` as ``tasks/next`` returns it)."""
        return await self.oracle.item_of(self.http, campaign_id, task["assignment_id"])

    def spec(self, **overrides: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": "test-campaign",
            "images": {"directory": str(self.tmp / "images")},
            "ontology": {"classes": [{"name": "circle"}, {"name": "square"}, {"name": "triangle"}]},
            "annotators_per_image": 2,
            "agreement_threshold": 1.0,
            "lease_timeout": "30s",
            "review_timeout": "5m",
        }
        spec.update(overrides)
        return spec

    async def launch(self, images: int, *, wait_open: bool = True, **overrides: Any) -> str:
        labeled = generate_images(self.tmp / "images", images)
        r = await self.http.post("/campaigns", json=self.spec(**overrides), headers=operator())
        assert r.status_code == 201, r.text
        campaign_id: str = r.json()["id"]
        for n, image in enumerate(labeled):
            self.truth[f"{campaign_id}-{n}"] = image.label
        if wait_open:
            await self.wait_open(campaign_id, min(images, overrides.get("window", 256)))
        return campaign_id

    async def wait_open(self, campaign_id: str, count: int, within: float = 30) -> None:
        """Wait until the campaign workflow has opened its first ``count`` items."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            async with self.sessions() as s:
                opened = await s.scalar(
                    select(func.count())
                    .select_from(Item)
                    .where(
                        Item.campaign_id == campaign_id,
                        Item.kind == "image",  # gold items are never opened: never pending
                        Item.status != "pending",
                    )
                )
            if (opened or 0) >= count:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"only {opened} of {count} items opened in {within}s")
            await asyncio.sleep(0.05)

    async def people(
        self, accuracies: list[float], role: str = "annotator"
    ) -> list[SimulatedAnnotator]:
        out = []
        for n, acc in enumerate(accuracies):
            body = await register(self.http, OPERATOR, f"{role}-{n}", role=role)
            out.append(
                SimulatedAnnotator(
                    name=body["name"], accuracy=acc, token=body["token"], id=body["id"]
                )
            )
        return out

    def campaign_handle(self, campaign_id: str) -> WorkflowHandle[Any, CampaignResult]:
        return self.temporal.get_workflow_handle(
            campaign_workflow_id(campaign_id), result_type=CampaignResult
        )

    async def crowd_until_done(
        self, campaign_id: str, crowd: list[SimulatedAnnotator], within: float = 60
    ) -> tuple[CampaignResult, list[int]]:
        """Let the crowd work until the campaign's result is in; returns it and their counts."""
        done = asyncio.Event()
        workers = [
            asyncio.create_task(
                annotate_until_empty(
                    self.http, a, campaign_id, self.oracle, until=done, idle_sleep=0.05
                )
            )
            for a in crowd
        ]
        try:
            result = await self.result(campaign_id, within)
        except TimeoutError:
            # Say where it stuck: which items are not done, and what the campaign believes.
            async with self.sessions() as s:
                stuck = (
                    await s.execute(
                        select(Item.ordinal, Item.status, Item.slots_taken).where(
                            Item.campaign_id == campaign_id, Item.status != "done"
                        )
                    )
                ).all()
            progress = await self.campaign_handle(campaign_id).query("progress")
            raise AssertionError(f"campaign not done: items {stuck}, progress {progress}") from None
        finally:
            done.set()
        return result, list(await asyncio.gather(*workers))

    async def result(self, campaign_id: str, within: float = 60) -> CampaignResult:
        return await asyncio.wait_for(self.campaign_handle(campaign_id).result(), within)


def operator() -> dict[str, str]:
    return {"Authorization": f"Bearer {OPERATOR}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'quorum.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def pipeline_unstarted(
    temporal_server: TemporalDevServer, minio_server: MinioServer, db_url: str, tmp_path: Path
) -> AsyncIterator[Pipeline]:
    """Everything but the worker: tests that crash workers start their own."""
    bucket = f"q-{uuid.uuid4().hex[:12]}"
    minio_server.ensure_bucket(bucket, versioning=True)
    settings = settings_for(
        temporal_server, db_url, minio_server, bucket, tmp_path, f"tq-{uuid.uuid4().hex[:8]}"
    )
    await upgrade_database(db_url)
    engine = create_engine(db_url)
    client = await connect(settings.temporal)
    ctx = AppContext(
        settings=settings,
        sessions=create_sessionmaker(engine),
        temporal=client,
        store=open_store(settings.store, settings.s3, settings.home),
        s3_client=s3_client(settings.s3),
    )
    app = create_app(ctx)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://quorum.test", timeout=30
    ) as http:
        yield Pipeline(
            settings=settings, temporal=client, sessions=ctx.sessions, http=http, tmp=tmp_path
        )
    await engine.dispose()


@pytest.fixture
async def pipeline(pipeline_unstarted: Pipeline) -> AsyncIterator[Pipeline]:
    async with pipeline_unstarted.start_worker():
        yield pipeline_unstarted
