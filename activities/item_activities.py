"""Activities of the ItemWorkflow: read responses, measure agreement, commit the consensus.

Every write is idempotent (the item row is locked and its status checked first), because
Temporal retries an activity that crashed after its commit but before reporting back.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client

from activities import audit_record
from db.models import Campaign, Consensus, Item, Response, Review, utcnow
from schemas.ontology import Ontology
from schemas.workflow_io import (
    SIGNAL_ITEM_FINISHED,
    FinalizeReviewInput,
    FinalizeReviewResult,
    ItemFinished,
    ItemOutcome,
    ResolveItemInput,
    ResolveItemResult,
    ResponseRef,
    campaign_workflow_id,
)
from services.consensus import assess, decided_objects, tag_labels

# Agreement is a ratio of small integers (2/3 = 0.666...); an operator who writes 0.66 or
# 0.6667 means "two of three", so compare with a little slack.
THRESHOLD_SLACK = 1e-4


class ItemActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], client: Client) -> None:
        self._sessions = sessions
        self._client = client

    @activity.defn
    async def list_responses(self, item_id: str) -> list[ResponseRef]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(Response.id, Response.annotator_id)
                .where(Response.item_id == item_id)
                .order_by(Response.submitted_at)
            )
            return [ResponseRef(response_id=r, annotator_id=a) for r, a in rows.all()]

    @activity.defn
    async def find_review(self, item_id: str) -> str | None:
        async with self._sessions() as session:
            return await session.scalar(select(Review.id).where(Review.item_id == item_id))

    @activity.defn
    async def resolve_item(self, input: ResolveItemInput) -> ResolveItemResult:
        """Measure agreement; finalize the majority if it clears the threshold, else escalate."""
        async with self._sessions.begin() as session:
            item = await _locked_item(session, input.item_id)
            if item.status == "done":
                # A retry after our own commit: report it again (the campaign ignores repeats).
                result = ResolveItemResult(outcome="agreed", agreement=item.agreement or 0.0)
            elif item.status == "review":
                return ResolveItemResult(outcome="review", agreement=item.agreement or 0.0)
            else:
                campaign = await session.get(Campaign, item.campaign_id)
                assert campaign is not None
                ontology = Ontology.model_validate(campaign.spec["ontology"])
                responses = list(
                    (
                        await session.scalars(
                            select(Response)
                            .where(Response.id.in_(input.response_ids))
                            .order_by(Response.submitted_at, Response.id)
                        )
                    ).all()
                )
                result_of = assess(ontology, responses, _size(item))
                threshold = ontology.threshold_for(
                    sorted({o["label"] for o in result_of.objects}), campaign.agreement_threshold
                )
                item.agreement = result_of.agreement
                await self._audit(
                    session,
                    item,
                    "agreement.computed",
                    {
                        "agreement": result_of.agreement,
                        "threshold": threshold,
                        "tie": result_of.tie,
                        "responses": [r.id for r in responses],
                        "annotators": [r.annotator_id for r in responses],
                    },
                )
                if result_of.agreement + THRESHOLD_SLACK >= threshold and not result_of.tie:
                    await self._add_consensus(
                        session,
                        item,
                        objects=result_of.objects,
                        method="majority_vote" if ontology.is_classification else "consensus",
                        confidence=result_of.confidence,
                        agreement=result_of.agreement,
                        responses=responses,
                    )
                    result = ResolveItemResult(outcome="agreed", agreement=result_of.agreement)
                else:
                    item.status = "review"
                    await self._audit(
                        session,
                        item,
                        "item.escalated",
                        {
                            "agreement": result_of.agreement,
                            "threshold": threshold,
                            "tie": result_of.tie,
                        },
                    )
                    return ResolveItemResult(outcome="review", agreement=result_of.agreement)
            campaign_id, ordinal = item.campaign_id, item.ordinal
        await self._notify_campaign(campaign_id, ordinal, "agreed")
        return result

    @activity.defn
    async def finalize_review(self, input: FinalizeReviewInput) -> FinalizeReviewResult:
        """Commit the expert's decision as the consensus, or the majority if review timed out."""
        async with self._sessions.begin() as session:
            item = await _locked_item(session, input.item_id)
            if item.status == "done":
                outcome = await _finished_outcome(session, item.id)
            else:
                responses = list(
                    (
                        await session.scalars(
                            select(Response)
                            .where(Response.item_id == item.id)
                            .order_by(Response.submitted_at)
                        )
                    ).all()
                )
                # A decision committed just as the review timed out still wins over the
                # majority: look for one even when the workflow saw none.
                review = (
                    await session.get(Review, input.review_id)
                    if input.review_id is not None
                    else await session.scalar(select(Review).where(Review.item_id == item.id))
                )
                if input.review_id is not None and review is None:
                    raise RuntimeError(f"review {input.review_id} is not in the database")
                if review is not None:
                    outcome = "reviewed"
                    support = (
                        [review.accepted_response_id]
                        if review.accepted_response_id
                        else [r.id for r in responses]
                        if review.decision == "accept_consensus"
                        else []
                    )
                    await self._add_consensus(
                        session,
                        item,
                        objects=decided_objects(review.body, support),
                        method="review",
                        confidence=1.0,
                        agreement=item.agreement or 0.0,
                        responses=responses,
                        review=review,
                    )
                else:
                    campaign = await session.get(Campaign, item.campaign_id)
                    assert campaign is not None
                    ontology = Ontology.model_validate(campaign.spec["ontology"])
                    majority = assess(ontology, responses, _size(item))
                    outcome = "review_timed_out"
                    await self._add_consensus(
                        session,
                        item,
                        objects=majority.objects,
                        method="review_timed_out",
                        confidence=majority.confidence,
                        agreement=item.agreement or 0.0,
                        responses=responses,
                    )
            result = FinalizeReviewResult(outcome=outcome, agreement=item.agreement or 0.0)
            campaign_id, ordinal = item.campaign_id, item.ordinal
        await self._notify_campaign(campaign_id, ordinal, result.outcome)
        return result

    async def _add_consensus(
        self,
        session: AsyncSession,
        item: Item,
        *,
        objects: list[dict[str, Any]],
        method: str,
        confidence: float,
        agreement: float,
        responses: list[Response],
        review: Review | None = None,
    ) -> None:
        info = activity.info()
        session.add(
            Consensus(
                item_id=item.id,
                campaign_id=item.campaign_id,
                body={"objects": objects},
                method=method,
                confidence=confidence,
                agreement=agreement,
                response_ids=[r.id for r in responses],
                annotator_ids=[r.annotator_id for r in responses],
                review_id=review.id if review else None,
                reviewer_id=review.expert_id if review else None,
                workflow_id=info.workflow_id or "",
                run_id=info.workflow_run_id or "",
            )
        )
        item.status = "done"
        item.finished_at = utcnow()
        await self._audit(
            session,
            item,
            "consensus.finalized",
            {
                "method": method,
                "labels": tag_labels(objects),
                "objects": len(objects),
                "confidence": confidence,
                "agreement": agreement,
                "responses": [r.id for r in responses],
                "review_id": review.id if review else None,
                "reviewer_id": review.expert_id if review else None,
            },
        )

    async def _audit(
        self, session: AsyncSession, item: Item, action: str, details: dict[str, Any]
    ) -> None:
        await audit_record.record(
            session, action, campaign_id=item.campaign_id, item_id=item.id, details=details
        )

    async def _notify_campaign(self, campaign_id: str, ordinal: int, outcome: ItemOutcome) -> None:
        # After the commit: the campaign ignores a repeat, and a crash before this line is
        # covered by the activity retry (and by the campaign's own reconciliation).
        await self._client.get_workflow_handle(campaign_workflow_id(campaign_id)).signal(
            SIGNAL_ITEM_FINISHED, ItemFinished(ordinal=ordinal, outcome=outcome)
        )


async def _locked_item(session: AsyncSession, item_id: str) -> Item:
    item = await session.scalar(select(Item).where(Item.id == item_id).with_for_update())
    if item is None:
        raise RuntimeError(f"item {item_id} is not in the database")
    return item


async def _finished_outcome(session: AsyncSession, item_id: str) -> ItemOutcome:
    method = await session.scalar(select(Consensus.method).where(Consensus.item_id == item_id))
    return outcome_of(method or "majority_vote")


def _size(item: Item) -> tuple[int, int] | None:
    return (item.width, item.height) if item.width and item.height else None


def outcome_of(method: str) -> ItemOutcome:
    outcomes: dict[str, ItemOutcome] = {
        "majority_vote": "agreed",
        "consensus": "agreed",
        "review": "reviewed",
    }
    return outcomes.get(method, "review_timed_out")
