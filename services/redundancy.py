"""Adaptive redundancy for single-label classes: the posterior an image's answers give, and
the re-check that re-opens images whose confidence a refit has put below the target.

An image stops collecting when the Dawid-Skene posterior of its answers (each counted with its
annotator's confusion matrix) reaches the campaign's ``target_confidence``. Those matrices are
the reliability model's estimates *at that moment*. Early in a campaign the model has seen few
answers, and an image can stop on two answers from annotators it takes for better than they
are. ``reopen_below_target`` re-checks the stopped images after every refit (and after the
last image): one whose posterior under the new estimates is below the target gets one more
annotator, up to ``max_annotators``, and the decision is taken again when that answer arrives.

Images finalized below the target (the futility stop, review) are never re-opened: their
confidence was never claimed. Neither is a gold item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Campaign, Consensus, Item, Response, utcnow
from quality.adaptive import confusion_posterior, one_coin_matrix, smoothed_accuracy
from schemas.campaign_spec import RedundancySpec
from schemas.ontology import Ontology
from schemas.workflow_io import ItemOutcome, outcome_of
from services import audit
from services.consensus import AnswerRow
from services.gold import GOLD
from services.prelabels import voter_responses
from services.reliability import POPULATION, Estimate, undecide

ADAPTIVE = "adaptive"
"""The consensus method of an image that adaptive redundancy finalized."""
CHUNK = 500
"""Images whose answers are read per query during a re-check."""


@dataclass(frozen=True)
class ClassVotes:
    """The single-tag answers of an image, each with its annotator's confusion matrix."""

    labels: list[str]
    voters: list[str]  # the answers' IDs
    confusions: list[list[list[float]]]
    average: list[list[float]]  # the campaign's average annotator (or the prior's one-coin)

    def posterior(self, classes: Sequence[str]) -> dict[str, float]:
        return confusion_posterior(self.labels, self.confusions, classes)


def class_votes(
    classes: Sequence[str], answers: Sequence[AnswerRow], estimates: Mapping[str, Estimate]
) -> ClassVotes:
    """The answers that name exactly one class, with the matrix each is counted with: the
    annotator's estimated confusion matrix, or the average annotator's for someone the model
    has not seen (a one-coin matrix at the prior accuracy before the first fit)."""
    population = estimates.get(POPULATION)
    average = (
        population.confusion
        if population is not None and population.confusion is not None
        else one_coin_matrix(smoothed_accuracy(0.0, 0.0), len(classes)).tolist()
    )
    labels, voters, confusions = [], [], []
    for answer in answers:
        tags = sorted({o["label"] for o in answer.body.get("objects", [])})
        if len(tags) != 1:
            continue
        estimate = estimates.get(answer.annotator_id)
        labels.append(tags[0])
        voters.append(answer.id)
        confusions.append(
            estimate.confusion if estimate is not None and estimate.confusion else average
        )
    return ClassVotes(labels, voters, confusions, average)


def _label(body: dict[str, Any]) -> str | None:
    """The class an adaptive consensus gave its image (it has one tag)."""
    objects = body.get("objects") or []
    return str(objects[0]["label"]) if objects and "label" in objects[0] else None


async def reopen_below_target(
    session: AsyncSession, campaign: Campaign, estimates: Mapping[str, Estimate]
) -> list[tuple[int, ItemOutcome]]:
    """Re-open each image of a running adaptive campaign that stopped at the target and whose
    label's posterior under ``estimates`` (the refit just made) is below it now, if it has
    annotators left. Returns ``(ordinal, outcome it had)`` for each, like the rules'
    re-openings; the caller restarts them. Each re-opening is an ``item.reopened`` audit
    entry."""
    raw = campaign.spec.get("redundancy")
    if not raw or campaign.status != "running" or not estimates:
        return []
    redundancy = RedundancySpec.model_validate(raw)
    ontology = Ontology.model_validate(campaign.spec["ontology"])
    if not (redundancy.reopen_below_target and ontology.is_classification):
        return []
    if ontology.multi_label:  # the posterior is over single classes
        return []
    classes = ontology.class_names
    target = redundancy.target_confidence
    stopped = (
        await session.execute(
            select(Item.id, Consensus.confidence, Consensus.body)
            .join(Consensus, Consensus.item_id == Item.id)
            .where(
                Item.campaign_id == campaign.id,
                Item.status == "done",
                Item.kind != GOLD,
                Consensus.method == ADAPTIVE,
                Consensus.confidence >= target,
            )
            .order_by(Item.id)
        )
    ).all()
    below: dict[str, tuple[float, float, int]] = {}  # item -> (confidence then, now, answers)
    for start in range(0, len(stopped), CHUNK):
        chunk = {
            item_id: (then, _label(body)) for item_id, then, body in stopped[start : start + CHUNK]
        }
        # Plain rows with the columns class_votes reads (consensus.AnswerRow).
        answers: dict[str, list[AnswerRow]] = {item_id: [] for item_id in chunk}
        rows = await session.execute(
            select(Response.item_id, Response.id, Response.annotator_id, Response.body).where(
                Response.item_id.in_(list(chunk)), Response.voided_at.is_(None)
            )
        )
        for row in rows.all():
            answers[row.item_id].append(row)
        models = await voter_responses(session, campaign.id, list(chunk))
        for item_id, (then, label) in chunk.items():
            people = len(answers[item_id])
            if people >= redundancy.max_annotators:
                continue
            model = [models[item_id]] if item_id in models else []
            votes = class_votes(classes, [*answers[item_id], *model], estimates)
            if not votes.labels:
                continue
            # The confidence in the label the image was given, which the new estimates may
            # no longer favour at all (then its posterior is below a half, so below the target).
            now = votes.posterior(classes).get(label, 0.0) if label is not None else 0.0
            if now < target:
                below[item_id] = (then, now, people)
    if not below:
        return []
    reopened: list[tuple[int, ItemOutcome]] = []
    items = (
        await session.scalars(
            select(Item).where(Item.id.in_(sorted(below))).order_by(Item.id).with_for_update()
        )
    ).all()
    for item in items:
        if item.status != "done":
            continue  # changed since it was read: whoever changed it decided
        then, now, people = below[item.id]
        await undecide(session, item)
        item.slots_wanted, item.contested_at = people + 1, utcnow()
        reopened.append((item.ordinal, outcome_of(ADAPTIVE)))
        await audit.append(
            session,
            action="item.reopened",
            actor=audit.SYSTEM_ACTOR,
            campaign_id=campaign.id,
            item_id=item.id,
            details={
                "previous_method": ADAPTIVE,
                "reason": "confidence below the target after a refit",
                "confidence_when_stopped": then,
                "confidence_now": now,
                "target": target,
                "answers": people,
                "wanted": item.slots_wanted,
            },
        )
    return reopened
