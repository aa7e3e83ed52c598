"""Operators: launch campaigns, see their status, and register the workforce."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.context import Context, Operator, Session
from db.models import Campaign
from schemas.campaign_spec import SLUG
from services.campaigns import (
    campaign_status,
    create_campaign,
    publish_snapshot,
    start_campaign,
    validate_spec,
)
from services.people import create_person
from services.prelabels import import_prelabels

router = APIRouter(tags=["operators"])


class CampaignCreated(BaseModel):
    id: str
    name: str
    item_count: int
    workflow_id: str | None
    status: str


@router.post("/campaigns", status_code=201, response_model=CampaignCreated)
async def launch_campaign(
    ctx: Context,
    _: Operator,
    spec: Annotated[dict[str, Any], Body(description="A campaign spec (schemas/campaign_spec.py)")],
    dry_run: Annotated[bool, Query(description="Validate only; store and start nothing.")] = False,
) -> CampaignCreated:
    parsed = validate_spec(spec)
    if dry_run:
        return CampaignCreated(
            id="", name=parsed.name, item_count=0, workflow_id=None, status="valid"
        )
    campaign = await create_campaign(
        ctx.sessions, parsed, created_by="operator", s3_client=ctx.s3_client
    )
    workflow_id = await start_campaign(
        ctx.sessions, ctx.temporal, campaign.id, ctx.settings.temporal.task_queue
    )
    return CampaignCreated(
        id=campaign.id,
        name=campaign.name,
        item_count=campaign.item_count,
        workflow_id=workflow_id,
        status="running",
    )


@router.post("/campaigns/{campaign_id}/start", response_model=CampaignCreated)
async def resume_start(campaign_id: str, ctx: Context, _: Operator) -> CampaignCreated:
    workflow_id = await start_campaign(
        ctx.sessions, ctx.temporal, campaign_id, ctx.settings.temporal.task_queue
    )
    async with ctx.sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None
        return CampaignCreated(
            id=campaign.id,
            name=campaign.name,
            item_count=campaign.item_count,
            workflow_id=workflow_id,
            status=campaign.status,
        )


@router.get("/campaigns")
async def list_campaigns(session: Session, _: Operator) -> list[dict[str, Any]]:
    rows = await session.scalars(select(Campaign).order_by(Campaign.created_at.desc()).limit(200))
    return [
        {
            "id": c.id,
            "name": c.name,
            "status": c.status,
            "item_count": c.item_count,
            "dataset": c.dataset,
            "published_version": c.published_version,
        }
        for c in rows
    ]


@router.get("/campaigns/{campaign_id}")
async def get_campaign(campaign_id: str, session: Session, _: Operator) -> dict[str, Any]:
    return await campaign_status(session, campaign_id)


class PersonIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    role: Literal["annotator", "expert"] = "annotator"
    external_id: str | None = Field(None, max_length=128)
    max_concurrent: int = Field(1, ge=1, le=100)
    skills: list[str] = Field(default_factory=list)


class PersonCreated(BaseModel):
    id: str
    name: str
    role: str
    token: str = Field(description="Shown once: only its hash is stored.")


@router.post("/people", status_code=201, response_model=PersonCreated)
async def register_person(body: PersonIn, session: Session, _: Operator) -> PersonCreated:
    person, token = await create_person(
        session,
        name=body.name,
        role=body.role,
        external_id=body.external_id,
        max_concurrent=body.max_concurrent,
        skills=body.skills,
    )
    return PersonCreated(id=person.id, name=person.name, role=person.role, token=token)


class SnapshotIn(BaseModel):
    request_id: str = Field(
        default_factory=lambda: uuid.uuid4().hex,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="Repeat a request with the same ID to get the same version back.",
    )


@router.post("/campaigns/{campaign_id}/snapshot")
async def snapshot(
    campaign_id: str, ctx: Context, _: Operator, body: SnapshotIn | None = None
) -> dict[str, Any]:
    """Publish the labels final so far as a new dataset version, during the campaign."""
    request = body or SnapshotIn()
    result = await publish_snapshot(
        ctx.sessions,
        ctx.temporal,
        campaign_id,
        ctx.settings.temporal.task_queue,
        request.request_id,
    )
    return {**result.model_dump(), "request_id": request.request_id}


class PrelabelsIn(BaseModel):
    format: Literal["coco", "jsonl"] = Field(description="coco (a JSON text) or jsonl")
    model: str = Field("model", pattern=SLUG, description="The model's name, for provenance.")
    content: str = Field(min_length=1, description="The predictions file's text.")
    companion: str | None = Field(
        None, description="For a bare COCO results list: its images and categories (JSON)."
    )


@router.post("/campaigns/{campaign_id}/prelabels")
async def import_campaign_prelabels(
    campaign_id: str, body: PrelabelsIn, session: Session, _: Operator
) -> dict[str, Any]:
    """Import a model's predictions (services/prelabels.py): all of them, or none with a 422
    naming every bad line and field. The work order set at launch is not changed."""
    result = await import_prelabels(
        session,
        campaign_id,
        body.content,
        fmt=body.format,
        model=body.model,
        companion=body.companion,
        actor=("operator", "operator"),
    )
    return result.as_dict()
