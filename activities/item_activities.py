"""Activities of the ItemWorkflow: read responses, measure agreement, commit the consensus.

Every write is idempotent (the item row is locked and its status checked first), because
Temporal retries an activity that crashed after its commit but before reporting back.

A campaign with a reliability model (gold items, rules or adaptive redundancy) weighs each
answer by its annotator's estimated reliability, and never counts a voided answer. With
adaptive redundancy the decision is ``quality.adaptive.redundancy_decision`` on the posterior
confidence: stop, one more annotator, or expert review at the maximum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client

from activities import audit_record
from activities.campaign_activities import first_wanted
from db.models import Assignment, Campaign, Consensus, Item, Response, Review, utcnow
from quality.adaptive import (
    confusion_posterior,
    is_futile,
    redundancy_decision,
    smoothed_accuracy,
    vote_weight,
)
from schemas.campaign_spec import RedundancySpec
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
    outcome_of,
)
from services.consensus import Assessment, assess, decided_objects, tag_labels
from services.prelabels import voter_responses
from services.redundancy import class_votes
from services.reliability import POPULATION, Estimate, uses_reliability, weights_for
from services.task_assignment import counted_answers

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
            counted = await counted_answers(session, item_id)
        return [ResponseRef(response_id=r, annotator_id=a) for r, a in counted]

    @activity.defn
    async def find_review(self, item_id: str) -> str | None:
        async with self._sessions() as session:
            return await session.scalar(select(Review.id).where(Review.item_id == item_id))

    @activity.defn
    async def resolve_item(self, input: ResolveItemInput) -> ResolveItemResult:
        """Measure agreement; finalize the consensus if it clears the bar, else escalate (or,
        adaptive, ask for one more annotator)."""
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
                responses = list(
                    (
                        await session.scalars(
                            select(Response)
                            .where(Response.id.in_(input.response_ids))
                            .order_by(Response.submitted_at, Response.id)
                        )
                    ).all()
                )
                voided = [r.id for r in responses if r.voided_at is not None]
                responses = [r for r in responses if r.voided_at is None]
                if voided or len(responses) < item.slots_wanted:
                    # An answer stopped counting (its annotator was blocked): collect again.
                    return ResolveItemResult(
                        outcome="more",
                        agreement=item.agreement or 0.0,
                        wanted=item.slots_wanted,
                        voided=voided,
                    )
                decided = await self._decide(session, campaign, item, responses)
                if decided is not None:
                    return decided
                result = ResolveItemResult(outcome="agreed", agreement=item.agreement or 0.0)
            campaign_id, ordinal = item.campaign_id, item.ordinal
        await self._notify_campaign(campaign_id, ordinal, "agreed", input.attempt)
        return result

    async def _decide(
        self, session: AsyncSession, campaign: Campaign, item: Item, responses: list[Response]
    ) -> ResolveItemResult | None:
        """Finalize (returns None), escalate or ask for more, on the locked item."""
        ontology = Ontology.model_validate(campaign.spec["ontology"])
        redundancy = (
            RedundancySpec.model_validate(campaign.spec["redundancy"])
            if campaign.spec.get("redundancy")
            else None
        )
        # A model whose pre-labels vote is one more voter, with its own learned reliability; it
        # never counts towards the number of annotators an image needs.
        model = (await voter_responses(session, campaign.id, [item.id])).get(item.id)
        voters = [*responses, model] if model is not None else responses
        estimates: dict[str, Estimate] = {}
        if uses_reliability(campaign) or model is not None:
            estimates = await weights_for(
                session, campaign.id, [POPULATION, *(r.annotator_id for r in voters)]
            )
        weights = vote_weights(ontology, voters, estimates)
        result_of = assess(ontology, voters, _size(item), weights=weights)
        futile = False
        if redundancy is None:
            threshold = ontology.threshold_for(
                sorted({o["label"] for o in result_of.objects}), campaign.agreement_threshold
            )
            confidence = result_of.agreement
            passed = result_of.agreement + THRESHOLD_SLACK >= threshold and not result_of.tie
            decision = "stop" if passed else "escalate"
            method = "majority_vote" if ontology.is_classification else "consensus"
        else:
            threshold = redundancy.target_confidence
            adaptive = _adaptive_consensus(ontology, voters, estimates, result_of)
            result_of, confidence = adaptive.assessment, adaptive.confidence
            decision = redundancy_decision(
                confidence,
                len(responses),
                redundancy.min_annotators,
                redundancy.max_annotators,
                redundancy.target_confidence,
            )
            futile = decision == "more" and adaptive.futile and redundancy.stop_when_futile
            if futile:  # more answers could not change the decision: stop spending them
                decision = "stop"
            method = "adaptive"
        item.agreement = result_of.agreement
        await self._audit(
            session,
            item,
            "agreement.computed",
            {
                "agreement": result_of.agreement,
                "threshold": threshold,
                "tie": result_of.tie,
                "responses": [r.id for r in voters],
                "annotators": [r.annotator_id for r in voters],
                **(
                    {
                        "confidence": confidence,
                        "decision": decision,
                        "futile": futile,
                        "weights": weights,
                    }
                    if redundancy is not None or weights
                    else {}
                ),
            },
        )
        if decision == "stop":
            await self._add_consensus(
                session,
                item,
                objects=result_of.objects,
                method=method,
                confidence=result_of.confidence,
                agreement=result_of.agreement,
                responses=responses,
            )
            return None
        if decision == "more":
            item.slots_wanted, item.contested_at = len(responses) + 1, utcnow()
            await self._audit(
                session,
                item,
                "item.more_annotators",
                {"confidence": confidence, "target": threshold, "wanted": item.slots_wanted},
            )
            return ResolveItemResult(
                outcome="more", agreement=result_of.agreement, wanted=item.slots_wanted
            )
        item.status = "review"
        await self._audit(
            session,
            item,
            "item.escalated",
            {
                "agreement": result_of.agreement,
                "threshold": threshold,
                "tie": result_of.tie,
                **({"confidence": confidence} if redundancy is not None else {}),
            },
        )
        return ResolveItemResult(outcome="review", agreement=result_of.agreement)

    @activity.defn
    async def finalize_review(self, input: FinalizeReviewInput) -> FinalizeReviewResult:
        """Commit the expert's decision as the consensus, or the majority if review timed out.

        A timed-out review of an image with no counted answer left (every one was voided when
        its annotator was blocked) has no majority to fall back on: with ``reopen_unanswered``
        the image goes back to annotators instead ("reopened"), and the campaign is not told."""
        async with self._sessions.begin() as session:
            item = await _locked_item(session, input.item_id)
            if item.status == "done":
                outcome = await _finished_outcome(session, item.id)
            elif item.status == "open" and input.reopen_unanswered:
                # A retry after our own re-open below: report it again, change nothing.
                return FinalizeReviewResult(
                    outcome="reopened", agreement=0.0, wanted=item.slots_wanted
                )
            else:
                responses = list(
                    (
                        await session.scalars(
                            select(Response)
                            .where(Response.item_id == item.id, Response.voided_at.is_(None))
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
                elif not responses and input.reopen_unanswered:
                    await self._reopen_unanswered(session, item)
                    return FinalizeReviewResult(
                        outcome="reopened", agreement=0.0, wanted=item.slots_wanted
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
        await self._notify_campaign(campaign_id, ordinal, outcome, input.attempt)
        return result

    async def _reopen_unanswered(self, session: AsyncSession, item: Item) -> None:
        """Give an image whose review timed out with no counted answer back to annotators, as
        if new: the campaign's first number of annotators, every slot free."""
        campaign = await session.get(Campaign, item.campaign_id)
        assert campaign is not None
        wanted = first_wanted(campaign) or campaign.annotators_per_image
        voided = await session.scalar(
            select(func.count()).select_from(Response).where(Response.item_id == item.id)
        )
        # Slots held by live leases stay taken (an image in review has none, normally): their
        # expiry gives them back one by one.
        leased = await session.scalar(
            select(func.count())
            .select_from(Assignment)
            .where(Assignment.item_id == item.id, Assignment.state == "leased")
        )
        item.status, item.slots_taken, item.slots_wanted = "open", int(leased or 0), wanted
        item.agreement = None
        await self._audit(
            session,
            item,
            "item.reopened",
            {
                "previous_method": None,
                "reason": "the review timed out and every answer had been voided",
                "voided_answers": voided,
                "wanted": wanted,
            },
        )

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

    async def _notify_campaign(
        self, campaign_id: str, ordinal: int, outcome: ItemOutcome, attempt: int
    ) -> None:
        # After the commit: the campaign ignores a repeat, and a crash before this line is
        # covered by the activity retry (and by the campaign's own reconciliation).
        await self._client.get_workflow_handle(campaign_workflow_id(campaign_id)).signal(
            SIGNAL_ITEM_FINISHED, ItemFinished(ordinal=ordinal, outcome=outcome, attempt=attempt)
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


def vote_weights(
    ontology: Ontology, responses: list[Response], estimates: dict[str, Estimate]
) -> dict[str, float] | None:
    """Each answer's weight: its annotator's estimate, or the prior's for someone the model
    has not seen yet. None (plain votes) without estimates, or when every weight is zero."""
    if not estimates:
        return None
    single_label = ontology.is_classification and not ontology.multi_label
    prior = smoothed_accuracy(0.0, 0.0)
    default = vote_weight(prior, len(ontology.class_names)) if single_label else prior
    weights = {
        r.annotator_id: estimates[r.annotator_id].weight if r.annotator_id in estimates else default
        for r in responses
    }
    return weights if sum(weights.values()) > 0 else None


@dataclass(frozen=True)
class Adaptive:
    assessment: Assessment
    confidence: float
    futile: bool  # contested, and no next answer could change the decision


def _adaptive_consensus(
    ontology: Ontology,
    responses: list[Response],
    estimates: dict[str, Estimate],
    weighted: Assessment,
) -> Adaptive:
    """The consensus and its posterior confidence, for adaptive redundancy.

    Single-label classes: the Dawid-Skene posterior over the classes, each answer counted with
    its annotator's confusion matrix (the campaign's average annotator for someone not yet
    estimated; a one-coin matrix at the prior accuracy before the first fit); the consensus is
    its most probable class. ``futile``: the last answer did not raise the confidence and no
    further answer from an average annotator could change the leading class
    (``quality.adaptive.is_futile``), so asking for more would only spend answers.

    Everything else: the reliability-weighted agreement of the answers (a single answer is never
    confident on its own); never futile."""
    if not (ontology.is_classification and not ontology.multi_label):
        confidence = weighted.agreement if len(responses) > 1 else 0.0
        return Adaptive(weighted, confidence, futile=False)
    classes = ontology.class_names
    votes = class_votes(classes, responses, estimates)
    if not votes.labels:
        return Adaptive(weighted, 0.0, futile=False)
    labels, confusions = votes.labels, votes.confusions
    posterior = votes.posterior(classes)
    best = max(classes, key=lambda c: (posterior[c], -classes.index(c)))
    confidence = posterior[best]
    before = (
        max(confusion_posterior(labels[:-1], confusions[:-1], classes).values())
        if len(labels) > 1
        else 0.0
    )
    futile = is_futile(confidence, before, [posterior[c] for c in classes], votes.average)
    support = [rid for rid, label in zip(votes.voters, labels, strict=True) if label == best]
    objects = [
        {
            "type": "tag",
            "label": best,
            "attributes": {},
            "confidence": confidence,
            "support": support,
        }
    ]
    adaptive = Assessment(
        agreement=weighted.agreement,
        objects=objects,
        confidence=confidence,
        tie=False,
        details=weighted.details,
    )
    return Adaptive(adaptive, confidence, futile)
