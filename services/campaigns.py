"""Launching campaigns and reading their status.

Launch is two steps with a durable hand-off: the campaign and all its items are committed in
one transaction (status ``created``), then the CampaignWorkflow is started under a deterministic
ID. If the start fails, nothing is lost: ``start_campaign`` can be called again, and a repeated
start reuses the running workflow instead of launching a second one.
"""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from db.models import Campaign, Consensus, Item
from schemas.campaign_spec import CampaignSpec, parse_spec
from schemas.workflow_io import (
    CampaignInput,
    PublishInput,
    PublishResult,
    campaign_workflow_id,
    item_id_for,
    snapshot_workflow_id,
)
from services import audit, prelabels
from services.errors import Conflict, InvalidInput, NotFound, Unavailable
from services.gold import GOLD, load_gold
from services.image_sources import list_images

INSERT_CHUNK = 5_000


def validate_spec(data: Any) -> CampaignSpec:
    spec, errors = parse_spec(data)
    if spec is None:
        raise InvalidInput(
            "the campaign spec has errors: " + "; ".join(f"{e.field}: {e.message}" for e in errors),
            errors=errors,
        )
    return spec


async def create_campaign(
    sessions: async_sessionmaker[AsyncSession],
    spec: CampaignSpec,
    *,
    created_by: str,
    base_dir: Path | None = None,
    s3_client: object = None,
) -> Campaign:
    """Commit the campaign and its items (status ``created``); no workflow runs yet."""
    images = list_images(spec.images, base_dir=base_dir, s3_client=s3_client)
    gold = load_gold(spec, base_dir)
    launch_prelabels = prelabels.load_for_launch(
        spec,
        images,
        base_dir=base_dir,
        gold=[prelabels.Target(g.uri, g.width, g.height) for g in gold],
    )
    if launch_prelabels is not None:  # ordinals are the work order
        images = launch_prelabels.work_order(images)
    campaign = Campaign(
        id=f"cmp_{uuid.uuid4().hex[:16]}",
        name=spec.name,
        dataset=spec.dataset_name,
        spec=spec.model_dump(mode="json"),
        status="created",
        # The most annotators an image may get (k when fixed), and what finalizes it.
        annotators_per_image=spec.max_annotators,
        agreement_threshold=spec.threshold,
        lease_timeout_s=spec.lease_timeout.total_seconds(),
        review_timeout_s=spec.review_timeout.total_seconds(),
        window=spec.window,
        item_count=len(images),
        created_by=created_by,
        secret=secrets.token_hex(32),
    )
    async with sessions.begin() as session:
        session.add(campaign)
        await session.flush()
        await audit.start_chain(session, campaign.id)
        await audit.append(
            session,
            action="campaign.created",
            actor=("operator", created_by),
            campaign_id=campaign.id,
            workflow_id=campaign_workflow_id(campaign.id),
            details={
                "name": spec.name,
                "dataset": spec.dataset_name,
                "items": len(images),
                "spec": campaign.spec,
            },
        )
        for start in range(0, len(images), INSERT_CHUNK):
            rows = [
                {
                    "id": item_id_for(campaign.id, n),
                    "campaign_id": campaign.id,
                    "ordinal": n,
                    "uri": image.uri,
                    "width": image.width,
                    "height": image.height,
                    "status": "pending",
                    "slots_taken": 0,
                    "slots_wanted": spec.min_annotators,
                }
                for n, image in enumerate(images[start : start + INSERT_CHUNK], start=start)
            ]
            await session.execute(insert(Item), rows)
        if gold:
            # After the images' ordinals, which are the only ones the campaign workflow opens.
            await session.execute(
                insert(Item),
                [
                    {
                        "id": item_id_for(campaign.id, len(images) + i),
                        "campaign_id": campaign.id,
                        "ordinal": len(images) + i,
                        "uri": g.uri,
                        "width": g.width,
                        "height": g.height,
                        "status": GOLD,
                        "kind": GOLD,
                        "gold_answer": g.answer,
                        "slots_taken": 0,
                        "slots_wanted": 0,
                    }
                    for i, g in enumerate(gold)
                ],
            )
        if launch_prelabels is not None:
            await prelabels.store_at_launch(
                session, campaign.id, launch_prelabels, created_by=created_by
            )
    return campaign


async def start_campaign(
    sessions: async_sessionmaker[AsyncSession], client: Client, campaign_id: str, task_queue: str
) -> str:
    """Start (or find) the campaign's workflow; returns its workflow ID."""
    async with sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
        if campaign is None:
            raise NotFound(f"no campaign {campaign_id}")
    workflow_id = campaign_workflow_id(campaign_id)
    try:
        await client.start_workflow(
            "CampaignWorkflow",
            CampaignInput(campaign_id=campaign_id),
            id=workflow_id,
            task_queue=task_queue,
            # A second start of the same campaign attaches to the running one; a finished
            # campaign is never run again under the same ID.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        return workflow_id  # it ran before and finished: never run a campaign twice
    except Exception as exc:
        raise Unavailable(
            f"campaign {campaign_id} is saved but its workflow could not start ({exc}); "
            f"run `quorum campaign start {campaign_id}` once Temporal is reachable"
        ) from exc
    async with sessions.begin() as session:
        campaign = await session.get(Campaign, campaign_id)
        if campaign is not None and campaign.status == "created":
            campaign.status = "running"
            await audit.append(
                session,
                action="campaign.started",
                actor=audit.SYSTEM_ACTOR,
                campaign_id=campaign_id,
                workflow_id=workflow_id,
            )
    return workflow_id


async def campaign_status(session: AsyncSession, campaign_id: str) -> dict[str, Any]:
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}")
    by_status = dict(
        (
            await session.execute(
                select(Item.status, func.count())
                .where(Item.campaign_id == campaign_id)
                .group_by(Item.status)
            )
        ).all()
    )
    by_method = dict(
        (
            await session.execute(
                select(Consensus.method, func.count())
                .where(Consensus.campaign_id == campaign_id)
                .group_by(Consensus.method)
            )
        ).all()
    )
    mean_agreement = await session.scalar(
        select(func.avg(Item.agreement)).where(
            Item.campaign_id == campaign_id, Item.agreement.is_not(None)
        )
    )
    return {
        "id": campaign.id,
        "name": campaign.name,
        "dataset": campaign.dataset,
        "status": campaign.status,
        "item_count": campaign.item_count,
        "items": {s: int(by_status.get(s, 0)) for s in ("pending", "open", "review", "done")},
        "consensus": {m: int(n) for m, n in by_method.items()},
        "mean_agreement": float(mean_agreement) if mean_agreement is not None else None,
        "published_version": campaign.published_version,
        "manifest_uri": campaign.manifest_uri,
        "workflow_id": campaign_workflow_id(campaign.id),
    }


async def publish_snapshot(
    sessions: async_sessionmaker[AsyncSession],
    client: Client,
    campaign_id: str,
    task_queue: str,
    request_id: str,
) -> PublishResult:
    """Publish the items final so far as a new dataset version; the campaign goes on.

    The request ID makes it idempotent: the same request publishes one version, however
    often it is sent."""
    async with sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
        if campaign is None:
            raise NotFound(f"no campaign {campaign_id}")
        finished = await session.scalar(
            select(func.count()).select_from(Consensus).where(Consensus.campaign_id == campaign_id)
        )
    if not finished:
        raise Conflict(f"campaign {campaign_id} has no final labels yet; nothing to publish")
    workflow_id = snapshot_workflow_id(campaign_id, request_id)
    try:
        handle = await client.start_workflow(
            "SnapshotWorkflow",
            PublishInput(
                campaign_id=campaign_id,
                publish_id=f"{campaign_id}.snapshot.{request_id}",
                snapshot=True,
            ),
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            result_type=PublishResult,
        )
    except WorkflowAlreadyStartedError:  # this request already published: the same answer
        handle = client.get_workflow_handle(workflow_id, result_type=PublishResult)
    result: PublishResult = await handle.result()
    return result
