"""Experts: the items awaiting review, and the decision that becomes their consensus."""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.context import Context, Person
from schemas.annotations import AnnotationObject, ResponseBody
from schemas.workflow_io import SIGNAL_REVIEW_DECIDED, ReviewDecided, item_workflow_id
from services.errors import EXPERT_ONLY, Forbidden
from services.reviews import decide, pending_reviews

router = APIRouter(tags=["experts"])
log = logging.getLogger("quorum.api")


@router.get("/campaigns/{campaign_id}/reviews")
async def list_reviews(
    campaign_id: str, ctx: Context, person: Person, limit: int = Query(100, ge=1, le=1000)
) -> list[dict[str, Any]]:
    if person.role != "expert":
        raise Forbidden(EXPERT_ONLY)
    async with ctx.sessions() as session:
        return await pending_reviews(session, campaign_id, limit)


class DecisionIn(BaseModel):
    decision: Literal["accept_response", "accept_consensus", "edit"]
    idempotency_key: str = Field(min_length=8, max_length=128)
    response_id: str | None = Field(None, description="With accept_response: the answer kept.")
    objects: list[AnnotationObject] | None = Field(
        None, description="With edit: the expert's answer."
    )


@router.post("/items/{item_id}/review")
async def review_item(
    item_id: str, body: DecisionIn, ctx: Context, person: Person
) -> dict[str, Any]:
    async with ctx.sessions.begin() as session:
        outcome = await decide(
            session,
            person,
            item_id,
            decision=body.decision,
            idempotency_key=body.idempotency_key,
            response_id=body.response_id,
            body=ResponseBody(objects=body.objects) if body.objects is not None else None,
        )
    try:
        await ctx.temporal.get_workflow_handle(
            item_workflow_id(outcome.campaign_id, outcome.ordinal)
        ).signal(SIGNAL_REVIEW_DECIDED, ReviewDecided(review_id=outcome.review.id))
    except Exception:  # committed; the workflow finds the decision when it reconciles
        log.warning(
            "signal for review %s failed; the workflow will reconcile",
            outcome.review.id,
            exc_info=True,
        )
    return {
        "review_id": outcome.review.id,
        "duplicate": outcome.duplicate,
        "decided_at": outcome.review.decided_at.isoformat(),
    }
