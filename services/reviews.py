"""Expert review of items whose annotators disagreed.

An expert can accept one annotator's answer, accept the computed majority, or submit their own.
The first decision on an item wins; a repeat of the same decision (same idempotency key) is
acknowledged again, any other second decision is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Annotator, Campaign, Item, Response, Review
from schemas.annotations import ResponseBody, validate_response
from schemas.campaign_spec import FieldError
from schemas.ontology import Ontology
from schemas.workflow_io import item_workflow_id
from services import audit
from services.consensus import assess, strip_provenance
from services.errors import (
    ALREADY_REVIEWED,
    EXPERT_ONLY,
    ITEM_NOT_IN_REVIEW,
    RESPONSE_NOT_FOR_ITEM,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
)
from services.people import new_id

Decision = Literal["accept_response", "accept_consensus", "edit"]


@dataclass(frozen=True)
class ReviewOutcome:
    review: Review
    ordinal: int
    campaign_id: str
    duplicate: bool


async def item_responses(session: AsyncSession, item_id: str) -> list[Response]:
    """The answers that count: a blocked annotator's (voided) are neither shown nor accepted."""
    return list(
        (
            await session.scalars(
                select(Response)
                .where(Response.item_id == item_id, Response.voided_at.is_(None))
                .order_by(Response.submitted_at, Response.id)
            )
        ).all()
    )


def _size(item: Item) -> tuple[int, int] | None:
    return (item.width, item.height) if item.width and item.height else None


def summarize(ontology: Ontology, item: Item, responses: list[Response]) -> dict[str, Any]:
    """What an expert sees: every answer, the computed consensus, and which objects matched."""
    assessment = assess(ontology, responses, _size(item))
    return {
        "width": item.width,
        "height": item.height,
        "answers": [
            {"response_id": r.id, "annotator_id": r.annotator_id, "body": r.body} for r in responses
        ],
        "majority": {
            "labels": assessment.labels,
            "confidence": assessment.confidence,
            "tie": assessment.tie,
        },
        "consensus": {"objects": assessment.objects},
        "agreement": assessment.agreement,
        "agreement_details": assessment.details,
    }


async def pending_reviews(
    session: AsyncSession, campaign_id: str, limit: int = 100
) -> list[dict[str, Any]]:
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}")
    ontology = Ontology.model_validate(campaign.spec["ontology"])
    items = (
        await session.scalars(
            select(Item)
            .where(Item.campaign_id == campaign_id, Item.status == "review")
            .order_by(Item.ordinal)
            .limit(limit)
        )
    ).all()
    out = []
    for item in items:
        responses = await item_responses(session, item.id)
        out.append(
            {
                "item_id": item.id,
                "ordinal": item.ordinal,
                "uri": item.uri,
                **summarize(ontology, item, responses),
            }
        )
    return out


async def decide(
    session: AsyncSession,
    expert: Annotator,
    item_id: str,
    *,
    decision: Decision,
    idempotency_key: str,
    response_id: str | None = None,
    body: ResponseBody | None = None,
) -> ReviewOutcome:
    if expert.role != "expert":
        raise Forbidden(EXPERT_ONLY)
    item = await session.scalar(select(Item).where(Item.id == item_id).with_for_update())
    if item is None:
        raise NotFound(f"no item {item_id}")
    existing = await session.scalar(select(Review).where(Review.item_id == item_id))
    if existing is not None:
        if existing.expert_id == expert.id and existing.idempotency_key == idempotency_key:
            return ReviewOutcome(existing, item.ordinal, item.campaign_id, duplicate=True)
        raise Conflict(ALREADY_REVIEWED)
    if item.status != "review":
        raise Conflict(ITEM_NOT_IN_REVIEW)

    campaign = await session.get(Campaign, item.campaign_id)
    assert campaign is not None
    ontology = Ontology.model_validate(campaign.spec["ontology"])
    responses = await item_responses(session, item_id)

    if decision == "accept_response":
        chosen = next((r for r in responses if r.id == response_id), None)
        if chosen is None:
            raise InvalidInput(
                RESPONSE_NOT_FOR_ITEM,
                errors=[FieldError(field="response_id", message=RESPONSE_NOT_FOR_ITEM)],
            )
        label_body = ResponseBody.model_validate(chosen.body)
    elif decision == "accept_consensus":
        computed = assess(ontology, responses, _size(item))
        label_body = ResponseBody.model_validate(
            {"objects": [strip_provenance(o) for o in computed.objects]}
        )
    else:
        if body is None:
            raise InvalidInput(
                "body: an edited decision needs a body",
                errors=[FieldError(field="body", message="required when decision is 'edit'")],
            )
        errors = validate_response(ontology, body, _size(item))
        if errors:
            raise InvalidInput(
                "the decision has errors: " + "; ".join(f"{e.field}: {e.message}" for e in errors),
                errors=errors,
            )
        label_body = body

    review = Review(
        id=new_id("rev"),
        item_id=item_id,
        campaign_id=item.campaign_id,
        expert_id=expert.id,
        decision=decision,
        accepted_response_id=response_id if decision == "accept_response" else None,
        body=label_body.model_dump(mode="json"),
        idempotency_key=idempotency_key,
    )
    session.add(review)
    await session.flush()
    await audit.append(
        session,
        action="review.decided",
        actor=("expert", expert.id),
        campaign_id=item.campaign_id,
        item_id=item_id,
        workflow_id=item_workflow_id(item.campaign_id, item.ordinal),
        details={
            "review_id": review.id,
            "decision": decision,
            "accepted_response_id": review.accepted_response_id,
            "objects": review.body["objects"],
        },
    )
    return ReviewOutcome(review, item.ordinal, item.campaign_id, duplicate=False)
