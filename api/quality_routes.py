"""Operators: what a campaign has learned about its annotators, and giving someone a second chance.

- ``GET /campaigns/{id}/reliability``: every annotator (and voting model) the campaign has
  estimated: status, estimated accuracy, vote weight, evidence, gold answers and mean gold score.
- ``POST /campaigns/{id}/annotators/{annotator_id}/reinstate``: let a blocked annotator, or one
  sent to retraining, work again (their voided answers stay voided). Audited.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from api.context import Operator, Session
from db.models import AnnotatorQuality, Campaign
from services.errors import NotFound
from services.reliability import POPULATION, reinstate

router = APIRouter(tags=["operators"])


def _row(q: AnnotatorQuality) -> dict[str, Any]:
    return {
        "annotator_id": q.annotator_id,
        "status": q.status,
        "accuracy": q.accuracy,
        "weight": q.weight,
        "answers": q.answers,
        "gold_answers": q.gold_answers,
        "gold_score": q.gold_score_sum / q.gold_answers if q.gold_answers else None,
        "reason": q.reason,
        "updated_at": q.updated_at,
    }


@router.get("/campaigns/{campaign_id}/reliability")
async def reliability(campaign_id: str, session: Session, _: Operator) -> dict[str, Any]:
    if await session.get(Campaign, campaign_id) is None:
        raise NotFound(f"no campaign {campaign_id}")
    rows = (
        await session.scalars(
            select(AnnotatorQuality)
            .where(AnnotatorQuality.campaign_id == campaign_id)
            .order_by(AnnotatorQuality.annotator_id)
        )
    ).all()
    return {
        "campaign_id": campaign_id,
        "annotators": [_row(q) for q in rows if q.annotator_id != POPULATION],
    }


@router.post("/campaigns/{campaign_id}/annotators/{annotator_id}/reinstate")
async def reinstate_annotator(
    campaign_id: str, annotator_id: str, session: Session, operator: Operator
) -> dict[str, Any]:
    if await session.get(Campaign, campaign_id) is None:
        raise NotFound(f"no campaign {campaign_id}")
    return _row(await reinstate(session, campaign_id, annotator_id, operator))
