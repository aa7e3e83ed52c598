"""Activities of the CampaignWorkflow: start items in batches, reconcile, publish the dataset."""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter, defaultdict
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities import audit_record
from db.models import Campaign, Consensus, DatasetVersion, Item, Response, utcnow
from quality import CampaignItem, GeometryAlpha, krippendorff_alpha_nominal
from schemas.ontology import Ontology
from schemas.workflow_io import (
    CampaignPlan,
    CampaignStatusInput,
    FinishedItem,
    ItemInput,
    OpenItemsInput,
    OpenItemsResult,
    PublishInput,
    PublishResult,
    ReconcileInput,
    ReconcileResult,
    ResponseRef,
    item_id_for,
    item_workflow_id,
    outcome_of,
)
from services.consensus import class_specs, response_objects, tag_labels
from services.reliability import reliability_of, uses_reliability
from storage import (
    BaseMoved,
    ObjectStore,
    PublishedVersion,
    PublishRequest,
    RecordSpool,
    iter_lines,
    merge_point,
    publish_version,
    read_manifest,
)

T = TypeVar("T")

# Starting workflows is one RPC each; a few dozen at once keeps the server busy without
# flooding it.
START_CONCURRENCY = 32
DEFAULT_REFIT_EVERY = 50
FITS_PER_CAMPAIGN = 50
# Items read per query while publishing (their answers are one more query, by item id).
PUBLISH_CHUNK = 500


def refit_every(campaign: Campaign) -> int | None:
    """Finished items between fits of the reliability model (None: the campaign has none).

    Unless the spec sets it: about ``FITS_PER_CAMPAIGN`` fits, at least ``DEFAULT_REFIT_EVERY``
    images apart. Each fit reads every answer of the campaign, so a fixed interval would make
    the fits' total work grow with the square of the campaign's size (100,000 images: 2,000
    fits of up to 300,000 answers); this keeps it linear. The adaptive-redundancy benchmark
    also refits about 50 times per pass."""
    if not uses_reliability(campaign):
        return None
    rules = reliability_of(campaign)
    if rules is not None and rules.refit_every is not None:
        return rules.refit_every
    return max(DEFAULT_REFIT_EVERY, math.ceil(campaign.item_count / FITS_PER_CAMPAIGN))


def first_wanted(campaign: Campaign) -> int | None:
    """Adaptive redundancy: the minimum to collect first (None: fixed k)."""
    redundancy = campaign.spec.get("redundancy")
    return int(redundancy["min_annotators"]) if redundancy else None


def item_input(
    campaign: Campaign,
    ordinal: int,
    *,
    wanted: int | None = None,
    attempt: int = 0,
    responses: Sequence[ResponseRef] = (),
) -> ItemInput:
    """What an item's workflow starts with: the campaign's settings, and for a re-opened item
    its attempt, the answers that still count and how many it asks for."""
    return ItemInput(
        campaign_id=campaign.id,
        item_id=item_id_for(campaign.id, ordinal),
        ordinal=ordinal,
        annotators_per_image=campaign.annotators_per_image,
        wanted=wanted if wanted is not None else first_wanted(campaign),
        attempt=attempt,
        # How often a waiting item reconciles with the database: once per lease.
        reconcile_seconds=campaign.lease_timeout_s,
        review_timeout_seconds=campaign.review_timeout_s,
        responses=list(responses),
    )


class CampaignActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], client: Client, store: ObjectStore
    ) -> None:
        self._sessions = sessions
        self._client = client
        self._store = store

    @activity.defn
    async def load_plan(self, campaign_id: str) -> CampaignPlan:
        async with self._sessions.begin() as session:
            campaign = await session.get(Campaign, campaign_id)
            if campaign is None:
                raise RuntimeError(f"campaign {campaign_id} is not in the database")
            if campaign.status == "created":
                campaign.status = "running"
            return CampaignPlan(
                total=campaign.item_count, window=campaign.window, refit_every=refit_every(campaign)
            )

    @activity.defn
    async def open_items(self, input: OpenItemsInput) -> OpenItemsResult:
        """Start the ItemWorkflows of a batch, then open the items to annotators.

        Workflows first: an item must never be claimable before its workflow can receive the
        answer. A retry re-runs both steps; both are idempotent.
        """
        async with self._sessions() as session:
            campaign = await session.get(Campaign, input.campaign_id)
            if campaign is None:
                raise RuntimeError(f"campaign {input.campaign_id} is not in the database")
        ordinals = range(input.first_ordinal, input.first_ordinal + input.count)
        semaphore = asyncio.Semaphore(START_CONCURRENCY)
        task_queue = activity.info().task_queue

        async def start(ordinal: int) -> bool:
            async with semaphore:
                try:
                    await self._client.start_workflow(
                        "ItemWorkflow",
                        item_input(campaign, ordinal),
                        id=item_workflow_id(input.campaign_id, ordinal),
                        task_queue=task_queue,
                        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    )
                except WorkflowAlreadyStartedError:
                    return False  # finished already: an earlier attempt ran it to the end
                activity.heartbeat(ordinal)
                return True  # started now, or still running from an earlier attempt

        results = await asyncio.gather(*(start(n) for n in ordinals))
        async with self._sessions.begin() as session:
            await session.execute(
                update(Item)
                .where(
                    Item.campaign_id == input.campaign_id,
                    Item.ordinal >= input.first_ordinal,
                    Item.ordinal < input.first_ordinal + input.count,
                    Item.status == "pending",
                )
                .values(status="open", opened_at=utcnow())
            )
        running = sum(results)
        return OpenItemsResult(running=running, already_finished=len(results) - running)

    @activity.defn
    async def reconcile_in_flight(self, input: ReconcileInput) -> ReconcileResult:
        if not input.ordinals:
            return ReconcileResult(finished=[])
        async with self._sessions() as session:
            rows = await session.execute(
                select(Item.ordinal, Consensus.method)
                .join(Consensus, Consensus.item_id == Item.id)
                .where(Item.campaign_id == input.campaign_id, Item.ordinal.in_(input.ordinals))
            )
            return ReconcileResult(
                finished=[FinishedItem(ordinal=o, outcome=outcome_of(m)) for o, m in rows.all()]
            )

    @activity.defn
    async def set_status(self, input: CampaignStatusInput) -> None:
        async with self._sessions.begin() as session:
            campaign = await session.get(Campaign, input.campaign_id, with_for_update=True)
            if campaign is None or campaign.status == input.status:
                return  # a retry after our own commit
            previous, campaign.status = campaign.status, input.status
            await audit_record.record(
                session,
                "campaign.status_changed",
                campaign_id=campaign.id,
                details={"from": previous, "to": input.status},
            )

    async def _merge_and_publish(self, campaign: Campaign, publish_id: str) -> PublishedVersion:
        """The campaign's labels merged with the other campaigns' labels of the dataset's newest
        version, published as the next version (``BaseMoved`` if another publisher took that
        number first)."""
        with RecordSpool() as spool:
            records = _CampaignRecords(campaign, spool)
            await records.read(self._sessions)
            agreement = records.agreement()
            # A dataset accumulates campaigns: the new version keeps the other campaigns'
            # labels of the version it builds on, and replaces this campaign's.
            number, campaigns, agreement_by_campaign = await _with_heartbeats(
                asyncio.to_thread(
                    _spool_other_campaigns,
                    self._store,
                    campaign.dataset,
                    campaign.id,
                    spool,
                    records.class_counts,
                ),
                "reading the latest version",
            )
            request = PublishRequest(
                dataset=campaign.dataset,
                publish_id=publish_id,
                campaigns=campaigns,
                created_by=f"campaign:{campaign.id}",
                records=spool,
                class_counts=dict(records.class_counts),
                agreement={
                    **agreement,
                    "by_campaign": {**agreement_by_campaign, campaign.id: agreement},
                },
                extra={"campaign_name": campaign.name, "ontology": campaign.spec["ontology"]},
                version=number,
            )
            return await _with_heartbeats(
                asyncio.to_thread(publish_version, self._store, request), "publishing"
            )

    @activity.defn
    async def publish(self, input: PublishInput) -> PublishResult:
        """Publish every final label of the campaign as a new immutable dataset version.

        The records are read in chunks and spooled to local disk, and the version is built one
        partition at a time, so the worker's memory does not grow with the campaign.
        """
        async with self._sessions() as session:
            campaign = await session.get(Campaign, input.campaign_id)
            if campaign is None:
                raise RuntimeError(f"campaign {input.campaign_id} is not in the database")
        for attempt in range(1, MERGE_ATTEMPTS + 1):
            try:
                version = await self._merge_and_publish(campaign, input.publish_id)
                break
            except BaseMoved:
                # Another campaign published into the dataset while we merged: merge again.
                if attempt == MERGE_ATTEMPTS:
                    raise
                activity.heartbeat(f"the dataset moved on; merging again ({attempt})")

        async with self._sessions.begin() as session:
            known = await session.scalar(
                select(DatasetVersion).where(DatasetVersion.publish_id == input.publish_id)
            )
            if known is None:
                await audit_record.record(
                    session,
                    "dataset.published",
                    campaign_id=campaign.id,
                    details={
                        "dataset": version.dataset,
                        "version": version.version,
                        "parent": version.parent,
                        "manifest_uri": version.manifest_uri,
                        "items": version.item_count,
                        "publish_id": input.publish_id,
                        "snapshot": input.snapshot,
                    },
                )
                session.add(
                    DatasetVersion(
                        dataset=version.dataset,
                        version=version.version,
                        campaign_id=campaign.id,
                        publish_id=input.publish_id,
                        manifest_uri=version.manifest_uri,
                        item_count=version.item_count,
                    )
                )
            row = await session.get(Campaign, campaign.id, with_for_update=True)
            assert row is not None
            row.published_version, row.manifest_uri = version.version, version.manifest_uri
            if not input.snapshot and row.status != "completed":
                await audit_record.record(
                    session,
                    "campaign.status_changed",
                    campaign_id=campaign.id,
                    details={"from": row.status, "to": "completed"},
                )
                row.status = "completed"
        return PublishResult(
            dataset=version.dataset,
            version=version.version,
            manifest_uri=version.manifest_uri,
            item_count=version.item_count,
        )


MERGE_ATTEMPTS = 20
"""Merges in one activity attempt before it fails (and Temporal retries it): each lost race
means another campaign's version was committed, so this many in a row is contention worth a
look rather than a loop."""


async def _with_heartbeats(work: Awaitable[T], detail: str, every: float = 10.0) -> T:
    """Await blocking work in a thread while telling Temporal this activity is alive."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=every)
        if done:
            return task.result()
        activity.heartbeat(detail)


def _spool_other_campaigns(
    store: ObjectStore,
    dataset: str,
    campaign_id: str,
    spool: RecordSpool,
    class_counts: Counter[str],
) -> tuple[int, tuple[str, ...], dict[str, Any]]:
    """Add the records of the other campaigns of the version to merge (``merge_point``; read
    one partition at a time); return the number the new version must take, its campaigns and
    the other campaigns' agreement."""
    latest, number = merge_point(store, dataset)
    if latest is None:
        return number, (campaign_id,), {}
    manifest = read_manifest(store, dataset, latest)
    for item_id, line in iter_lines(store, manifest):
        record = json.loads(line)
        if record.get("campaign_id") == campaign_id:
            continue  # replaced by this publish
        class_counts.update(o["label"] for o in record.get("objects") or [])
        spool.add_line(item_id, line)
    campaigns = tuple(sorted({*manifest.get("campaigns", []), campaign_id}))
    earlier = dict(manifest.get("agreement", {}).get("by_campaign", {}))
    earlier.pop(campaign_id, None)
    return number, campaigns, earlier


class _CampaignRecords:
    """Reads a campaign's final labels in chunks into a spool, as label records with their
    provenance, counting classes and accumulating the campaign's agreement as it goes."""

    def __init__(self, campaign: Campaign, spool: RecordSpool) -> None:
        self.campaign_id = campaign.id
        self.spool = spool
        self.ontology = Ontology.model_validate(campaign.spec["ontology"])
        self.nominal = self.ontology.is_classification and not self.ontology.multi_label
        self.geometry = None if self.nominal else GeometryAlpha(class_specs(self.ontology))
        self.codes: dict[str, int] = {}
        self.units: list[tuple[int, ...]] = []  # nominal: each item's first labels, as codes
        self.class_counts: Counter[str] = Counter()
        self.methods: Counter[str] = Counter()
        self.agreements: list[float] = []

    async def read(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        last = -1
        while True:
            async with sessions() as session:
                items = (
                    await session.execute(
                        select(
                            Item.id,
                            Item.ordinal,
                            Item.uri,
                            Item.width,
                            Item.height,
                            Consensus.body,
                            Consensus.confidence,
                            Consensus.agreement,
                            Consensus.method,
                            Consensus.review_id,
                            Consensus.reviewer_id,
                            Consensus.workflow_id,
                            Consensus.run_id,
                            Consensus.finalized_at,
                        )
                        .join(Consensus, Consensus.item_id == Item.id)
                        .where(Item.campaign_id == self.campaign_id, Item.ordinal > last)
                        .order_by(Item.ordinal)
                        .limit(PUBLISH_CHUNK)
                    )
                ).all()
                if not items:
                    return
                answers: dict[str, list[Row[Any]]] = defaultdict(list)
                for answer in await session.execute(
                    select(
                        Response.id,
                        Response.item_id,
                        Response.annotator_id,
                        Response.body,
                        Response.submitted_at,
                        Response.late,
                    )
                    # Voided answers (their annotator was blocked) are neither provenance
                    # nor metrics.
                    .where(
                        Response.item_id.in_([item.id for item in items]),
                        Response.voided_at.is_(None),
                    )
                    .order_by(Response.item_id, Response.submitted_at, Response.id)
                ):
                    answers[answer.item_id].append(answer)
            await asyncio.to_thread(self._take, items, answers)
            last = items[-1].ordinal
            activity.heartbeat(f"read {len(self.agreements)} items")

    def _take(self, items: Sequence[Row[Any]], answers: dict[str, list[Row[Any]]]) -> None:
        metric_items: list[CampaignItem] = []
        for item in items:
            objects = item.body["objects"]
            self.class_counts.update(o["label"] for o in objects)
            self.methods[item.method] += 1
            self.agreements.append(item.agreement)
            given = answers.get(item.id, [])
            responses = [
                {
                    "response_id": r.id,
                    "annotator_id": r.annotator_id,
                    "labels": tag_labels(r.body["objects"]),
                    "objects": r.body["objects"],
                    "submitted_at": r.submitted_at.isoformat(),
                    "late": r.late,
                }
                for r in given
            ]
            if self.nominal:
                self.units.append(
                    tuple(
                        self.codes.setdefault(r["labels"][0], len(self.codes))
                        for r in responses
                        if r["labels"]
                    )
                )
            else:
                size = (item.width, item.height) if item.width and item.height else None
                metric_items.append(
                    CampaignItem(responses=response_objects(given), image_size=size)
                )
            self.spool.add(
                {
                    "item_id": item.id,
                    "campaign_id": self.campaign_id,
                    "image": item.uri,
                    "width": item.width,
                    "height": item.height,
                    "labels": tag_labels(objects),
                    "objects": objects,
                    "confidence": item.confidence,
                    "agreement": item.agreement,
                    "method": item.method,
                    "responses": responses,
                    "review_id": item.review_id,
                    "reviewer_id": item.reviewer_id,
                    "workflow_id": item.workflow_id,
                    "run_id": item.run_id,
                    "finalized_at": item.finalized_at.isoformat(),
                }
            )
        if self.geometry is not None and metric_items:
            self.geometry.add(metric_items)

    def agreement(self) -> dict[str, Any]:
        """The campaign's agreement summary, over every item read."""
        alpha: float | None = None
        if self.agreements:
            if self.nominal:
                alpha = krippendorff_alpha_nominal(self.units)
            elif self.geometry is not None:
                alpha = self.geometry.value()
        # Nominal alpha for single-label classes; otherwise alpha with the distance
        # 1 - similarity over matched objects. nan (no variation at all) is reported as null.
        if alpha is not None and alpha != alpha:
            alpha = None
        return {
            "items": len(self.agreements),
            "mean_item_agreement": (
                sum(self.agreements) / len(self.agreements) if self.agreements else None
            ),
            "krippendorff_alpha": alpha,
            "krippendorff_alpha_nominal": alpha,
            "methods": dict(self.methods),
        }
