"""Activities of the CampaignWorkflow: start items in batches, reconcile, publish the dataset."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities import audit_record
from db.models import Campaign, Consensus, DatasetVersion, Item, Response, utcnow
from quality import CampaignItem, geometry_alpha, krippendorff_alpha_nominal
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
    ObjectStore,
    PublishRequest,
    latest_version,
    publish_version,
    read_manifest,
    read_records,
)

T = TypeVar("T")

# Starting workflows is one RPC each; a few dozen at once keeps the server busy without
# flooding it.
START_CONCURRENCY = 32
DEFAULT_REFIT_EVERY = 50


def refit_every(campaign: Campaign) -> int | None:
    """Finished items between fits of the reliability model (None: the campaign has none)."""
    if not uses_reliability(campaign):
        return None
    rules = reliability_of(campaign)
    return rules.refit_every if rules else DEFAULT_REFIT_EVERY


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

    @activity.defn
    async def publish(self, input: PublishInput) -> PublishResult:
        """Publish every final label of the campaign as a new immutable dataset version."""
        async with self._sessions() as session:
            campaign = await session.get(Campaign, input.campaign_id)
            if campaign is None:
                raise RuntimeError(f"campaign {input.campaign_id} is not in the database")
            records, _, agreement = await _campaign_records(session, campaign)

        # A dataset accumulates campaigns: the new version keeps the other campaigns' labels
        # of the version it builds on, and replaces this campaign's.
        records, campaigns, agreement_by_campaign = await asyncio.to_thread(
            _merge_with_latest, self._store, campaign.dataset, campaign.id, records
        )
        class_counts = dict(Counter(o["label"] for record in records for o in record["objects"]))
        request = PublishRequest(
            dataset=campaign.dataset,
            publish_id=input.publish_id,
            campaigns=campaigns,
            created_by=f"campaign:{campaign.id}",
            records=records,
            class_counts=class_counts,
            agreement={
                **agreement,
                "by_campaign": {**agreement_by_campaign, campaign.id: agreement},
            },
            extra={"campaign_name": campaign.name, "ontology": campaign.spec["ontology"]},
        )
        version = await _with_heartbeats(
            asyncio.to_thread(publish_version, self._store, request), "publishing"
        )

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


async def _with_heartbeats(work: Awaitable[T], detail: str, every: float = 10.0) -> T:
    """Await blocking work in a thread while telling Temporal this activity is alive."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=every)
        if done:
            return task.result()
        activity.heartbeat(detail)


def _merge_with_latest(
    store: ObjectStore, dataset: str, campaign_id: str, records: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], tuple[str, ...], dict[str, Any]]:
    latest = latest_version(store, dataset)
    if latest is None:
        return records, (campaign_id,), {}
    manifest = read_manifest(store, dataset, latest)
    kept = [r for r in read_records(store, dataset, latest) if r.get("campaign_id") != campaign_id]
    campaigns = tuple(sorted({*manifest.get("campaigns", []), campaign_id}))
    earlier = dict(manifest.get("agreement", {}).get("by_campaign", {}))
    earlier.pop(campaign_id, None)
    return kept + records, campaigns, earlier


async def _campaign_records(
    session: AsyncSession, campaign: Campaign
) -> tuple[list[dict[str, Any]], dict[str, int], dict[str, Any]]:
    """Label records with their provenance, class counts, and the campaign's agreement."""
    ontology = Ontology.model_validate(campaign.spec["ontology"])
    by_item: dict[str, list[Response]] = defaultdict(list)
    for response in await session.scalars(
        select(Response)
        # Voided answers (their annotator was blocked) are neither provenance nor metrics.
        .where(Response.campaign_id == campaign.id, Response.voided_at.is_(None))
        .order_by(Response.item_id, Response.submitted_at, Response.id)
    ):
        by_item[response.item_id].append(response)

    rows = await session.execute(
        select(Item, Consensus)
        .join(Consensus, Consensus.item_id == Item.id)
        .where(Item.campaign_id == campaign.id)
        .order_by(Item.ordinal)
    )
    records: list[dict[str, Any]] = []
    class_counts: Counter[str] = Counter()
    methods: Counter[str] = Counter()
    agreements: list[float] = []
    metric_items: list[CampaignItem] = []
    for item, consensus in rows.all():
        objects = consensus.body["objects"]
        class_counts.update(o["label"] for o in objects)
        methods[consensus.method] += 1
        agreements.append(consensus.agreement)
        answers = by_item.get(item.id, [])
        size = (item.width, item.height) if item.width and item.height else None
        metric_items.append(CampaignItem(responses=response_objects(answers), image_size=size))
        records.append(
            {
                "item_id": item.id,
                "campaign_id": campaign.id,
                "image": item.uri,
                "width": item.width,
                "height": item.height,
                "labels": tag_labels(objects),
                "objects": objects,
                "confidence": consensus.confidence,
                "agreement": consensus.agreement,
                "method": consensus.method,
                "responses": [
                    {
                        "response_id": r.id,
                        "annotator_id": r.annotator_id,
                        "labels": tag_labels(r.body["objects"]),
                        "objects": r.body["objects"],
                        "submitted_at": r.submitted_at.isoformat(),
                        "late": r.late,
                    }
                    for r in answers
                ],
                "review_id": consensus.review_id,
                "reviewer_id": consensus.reviewer_id,
                "workflow_id": consensus.workflow_id,
                "run_id": consensus.run_id,
                "finalized_at": consensus.finalized_at.isoformat(),
            }
        )

    alpha: float | None = None
    if metric_items and ontology.is_classification and not ontology.multi_label:
        units = [[r["labels"][0] for r in record["responses"] if r["labels"]] for record in records]
        alpha = krippendorff_alpha_nominal(units)
    elif metric_items:
        alpha = geometry_alpha(metric_items, class_specs(ontology))
    agreement = {
        "items": len(records),
        "mean_item_agreement": sum(agreements) / len(agreements) if agreements else None,
        # Nominal alpha for single-label classes; otherwise alpha with the distance
        # 1 - similarity over matched objects. nan (no variation at all) is reported as null.
        "krippendorff_alpha": None if alpha is None or alpha != alpha else alpha,
        "krippendorff_alpha_nominal": None if alpha is None or alpha != alpha else alpha,
        "methods": dict(methods),
    }
    return records, dict(class_counts), agreement
