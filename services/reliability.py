"""What a campaign knows about each annotator, and what it does about a bad one.

The model (``refit``), learned from gold answers and from agreement with the others:

* **Single-label classes:** Quorum's default Dawid-Skene (a confusion matrix per annotator, EM
  with Dirichlet priors so a newcomer is not over-trusted), fitted on every counted answer of
  the campaign with the gold items clamped to their known class. An annotator's accuracy is the
  expected diagonal of their confusion matrix; their vote weight is the one-coin log-odds
  ``log((K-1) a / (1-a))`` (zero at or below chance).
* **Everything else (multi-label, geometry):** a quality in [0, 1], the smoothed mean of their
  gold scores and of their answers' agreement with the consensus of finished images (the same
  measure that decides agreement). It is also their weight.

The rules (``apply_rules``): an annotator whose estimated accuracy is below the campaign's
``min_accuracy`` with at least ``min_evidence`` scored answers is blocked (or sent to
retraining). Their live leases go back to the pool, their answers on images still collecting
are voided (kept for the record, never counted, their slot freed), and with
``reopen_answered`` the finished images they answered are re-opened to be labeled again.
Every step is an audit entry. A voided answer's image hears of it by signal (after commit).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    AnnotatorQuality,
    Assignment,
    Campaign,
    Consensus,
    Item,
    Prelabel,
    Response,
    utcnow,
)
from quality.adaptive import one_coin_matrix, shrunk_confusions, smoothed_accuracy, vote_weight
from quality.dawid_skene import DEFAULT_METHOD, DawidSkene, make_aggregator
from schemas.campaign_spec import ReliabilitySpec
from schemas.ontology import Ontology
from schemas.workflow_io import ItemOutcome, outcome_of
from services import audit
from services.consensus import score_against
from services.gold import GOLD

ACTIVE, BLOCKED, RETRAINING = "active", "blocked", "retraining"
MODEL_PREFIX = "model:"


POPULATION = "*population"
"""The annotator_quality row that holds the campaign's average annotator (never a person)."""


@dataclass(frozen=True)
class Estimate:
    accuracy: float
    weight: float
    evidence: int
    confusion: list[list[float]] | None = None  # single-label classes: rows = true class


@dataclass
class RuleOutcome:
    """What the rules did, for the caller to announce after the commit."""

    judged: list[str] = field(default_factory=list)  # annotators blocked or sent to retrain
    voided: list[tuple[int, str]] = field(default_factory=list)  # (item ordinal, response id)
    reopened: list[tuple[int, ItemOutcome]] = field(default_factory=list)  # (ordinal, before)


def reliability_of(campaign: Campaign) -> ReliabilitySpec | None:
    raw = campaign.spec.get("reliability")
    return ReliabilitySpec.model_validate(raw) if raw else None


def uses_reliability(campaign: Campaign) -> bool:
    """Gold, rules, adaptive redundancy or a voting model: the campaign keeps a reliability
    model."""
    voting_model = (campaign.spec.get("prelabels") or {}).get("mode") == "voter"
    return voting_model or any(campaign.spec.get(k) for k in ("gold", "reliability", "redundancy"))


async def weights_for(
    session: AsyncSession, campaign_id: str, annotator_ids: Iterable[str]
) -> dict[str, Estimate]:
    """The current estimates of these annotators (those the model has seen)."""
    ids = sorted(set(annotator_ids))
    rows = (
        await session.scalars(
            select(AnnotatorQuality).where(
                AnnotatorQuality.campaign_id == campaign_id,
                AnnotatorQuality.annotator_id.in_(ids),
            )
        )
    ).all()
    return {
        q.annotator_id: Estimate(q.accuracy, q.weight, q.answers + q.gold_answers, q.confusion)
        for q in rows
        if q.accuracy is not None and q.weight is not None
    }


async def population_confusion(session: AsyncSession, campaign_id: str) -> list[list[float]] | None:
    """The campaign's average annotator's confusion matrix, once the model has been fitted."""
    return await session.scalar(
        select(AnnotatorQuality.confusion).where(
            AnnotatorQuality.campaign_id == campaign_id,
            AnnotatorQuality.annotator_id == POPULATION,
        )
    )


# --- fitting ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    item_id: str
    annotator_id: str
    body: dict[str, Any]
    gold_score: float | None


def _fit_classes(
    answers: Sequence[_Answer], classes: Sequence[str], gold: Mapping[str, str]
) -> dict[str, Estimate]:
    index = {c: i for i, c in enumerate(classes)}
    rows = [
        (a.item_id, a.annotator_id, index[labels[0]])
        for a in answers
        if len(labels := sorted({o["label"] for o in a.body.get("objects", [])})) == 1
        and labels[0] in index
    ]
    if not rows:
        return {}
    tasks, workers, labels = (list(col) for col in zip(*rows, strict=True))
    model = make_aggregator(DEFAULT_METHOD)
    assert isinstance(model, DawidSkene)
    model.n_classes = len(classes)
    model.fit((tasks, workers, labels), gold={t: index[g] for t, g in gold.items() if g in index})
    counts: dict[str, int] = defaultdict(int)
    for w in workers:
        counts[w] += 1
    # Confusion matrices for the adaptive posterior, shrunk towards the population's (see
    # quality.adaptive.shrunk_confusions); the same construction the benchmark measures.
    task_row = {t: i for i, t in enumerate(model.tasks_.tolist())}
    worker_code = {w: i for i, w in enumerate(model.workers_.tolist())}
    confusions, population = shrunk_confusions(
        model.predict_proba()[np.array([task_row[t] for t in tasks])],
        np.array([worker_code[w] for w in workers]),
        np.array(labels),
        len(worker_code),
        one_coin_matrix(smoothed_accuracy(0.0, 0.0), len(classes)),
    )
    estimates = {
        w: Estimate(
            acc, vote_weight(acc, len(classes)), counts[w], confusions[worker_code[w]].tolist()
        )
        for w, acc in model.worker_accuracy().items()
    }
    estimates[POPULATION] = Estimate(
        float(np.mean(np.diagonal(population))), 0.0, len(tasks), population.tolist()
    )
    return estimates


def _fit_scores(
    scores: Mapping[str, list[float]],
) -> dict[str, Estimate]:
    out = {}
    for annotator_id, values in scores.items():
        quality = smoothed_accuracy(sum(values), len(values))
        out[annotator_id] = Estimate(quality, quality, len(values))
    return out


async def refit(session: AsyncSession, campaign: Campaign) -> dict[str, Estimate]:
    """Fit the campaign's model on its counted answers and store every annotator's estimate."""
    ontology = Ontology.model_validate(campaign.spec["ontology"])
    rows = (
        await session.execute(
            select(
                Response.item_id,
                Response.annotator_id,
                Response.body,
                Response.gold_score,
                Item.kind,
                Item.gold_answer,
            )
            .join(Item, Item.id == Response.item_id)
            .where(Response.campaign_id == campaign.id, Response.voided_at.is_(None))
        )
    ).all()
    answers = [_Answer(r.item_id, r.annotator_id, r.body, r.gold_score) for r in rows]
    if (campaign.spec.get("prelabels") or {}).get("mode") == "voter":
        # The model's predictions on the images people answered: its reliability is learned
        # from the same evidence as theirs.
        answered = {a.item_id for a in answers}
        answers += [
            _Answer(item_id, f"{MODEL_PREFIX}{model}", body, None)
            for item_id, model, body in (
                await session.execute(
                    select(Prelabel.item_id, Prelabel.model, Prelabel.body).where(
                        Prelabel.campaign_id == campaign.id
                    )
                )
            ).all()
            if item_id in answered
        ]
    single_label = ontology.is_classification and not ontology.multi_label
    if single_label:
        gold = {
            r.item_id: labels[0]
            for r in rows
            if r.kind == GOLD
            and r.gold_answer
            and len(labels := sorted({o["label"] for o in r.gold_answer["objects"]})) == 1
        }
        estimates = await asyncio.to_thread(_fit_classes, answers, ontology.class_names, gold)
    else:
        estimates = await asyncio.to_thread(
            _fit_scores, await _agreement_scores(session, campaign, ontology, answers)
        )
    existing = {
        q.annotator_id: q
        for q in (
            await session.scalars(
                select(AnnotatorQuality).where(AnnotatorQuality.campaign_id == campaign.id)
            )
        ).all()
    }
    for annotator_id, estimate in sorted(estimates.items()):
        quality = existing.get(annotator_id)
        if quality is None:
            quality = AnnotatorQuality(
                campaign_id=campaign.id,
                annotator_id=annotator_id,
                status=ACTIVE,
                gold_answers=0,
                gold_score_sum=0.0,
            )
            session.add(quality)
        quality.accuracy, quality.weight = estimate.accuracy, estimate.weight
        quality.answers, quality.confusion = estimate.evidence, estimate.confusion
    await session.flush()
    return estimates


async def _agreement_scores(
    session: AsyncSession, campaign: Campaign, ontology: Ontology, answers: Sequence[_Answer]
) -> dict[str, list[float]]:
    """Per annotator: their gold scores, and their agreement with each finished consensus."""
    scores: dict[str, list[float]] = defaultdict(list)
    for a in answers:
        if a.gold_score is not None:
            scores[a.annotator_id].append(a.gold_score)
    done = {
        item_id: (body, size)
        for item_id, body, width, height in (
            await session.execute(
                select(Consensus.item_id, Consensus.body, Item.width, Item.height)
                .join(Item, Item.id == Consensus.item_id)
                .where(Consensus.campaign_id == campaign.id, Consensus.method != "review")
            )
        ).all()
        for size in [(width, height) if width and height else None]
    }

    def score_all() -> None:
        for a in answers:
            if a.item_id in done:
                body, size = done[a.item_id]
                scores[a.annotator_id].append(score_against(ontology, a.body, body, size))

    await asyncio.to_thread(score_all)
    return scores


# --- rules --------------------------------------------------------------------------------------


def gold_verdict(quality: AnnotatorQuality, rules: ReliabilitySpec) -> str | None:
    """The reason to take this annotator off, on their gold answers alone (None: no reason)."""
    if quality.gold_answers < rules.min_evidence:
        return None
    accuracy = smoothed_accuracy(quality.gold_score_sum, quality.gold_answers)
    if accuracy >= rules.min_accuracy:
        return None
    return (
        f"estimated gold accuracy {accuracy:.3f} is below {rules.min_accuracy} "
        f"after {quality.gold_answers} gold answers"
    )


def model_verdict(estimate: Estimate, rules: ReliabilitySpec) -> str | None:
    """The reason to take this annotator off, on the campaign's model (None: no reason)."""
    if estimate.evidence < rules.min_evidence or estimate.accuracy >= rules.min_accuracy:
        return None
    return (
        f"estimated accuracy {estimate.accuracy:.3f} is below {rules.min_accuracy} "
        f"after {estimate.evidence} answers"
    )


async def apply_rules(
    session: AsyncSession, campaign: Campaign, estimates: Mapping[str, Estimate]
) -> RuleOutcome:
    """Block (or send to retraining) whoever the evidence says is below the bar, and settle
    the blocks decided at gold answers since the last fit.

    Two kinds of evidence, either enough: gold answers (direct, ``gold_verdict``) and the
    model's estimate from agreement with the others (``model_verdict``)."""
    outcome = RuleOutcome()
    rules = reliability_of(campaign)
    if rules is None or campaign.status != "running":
        return outcome
    records = (
        await session.scalars(
            select(AnnotatorQuality).where(AnnotatorQuality.campaign_id == campaign.id)
        )
    ).all()
    verdicts: dict[str, str | None] = {}
    for quality in records:
        if quality.annotator_id.startswith(MODEL_PREFIX) or quality.annotator_id == POPULATION:
            continue  # a model is down-weighted by its estimate, never blocked
        if quality.status == ACTIVE:
            estimate = estimates.get(quality.annotator_id)
            reason = gold_verdict(quality, rules) or (
                model_verdict(estimate, rules) if estimate else None
            )
            if reason is not None:
                verdicts[quality.annotator_id] = reason
        elif not quality.settled:
            verdicts[quality.annotator_id] = None  # decided at a gold answer; settle it
    if not verdicts:
        return outcome
    await _lock_in_submit_order(session, campaign.id, sorted(verdicts))
    for annotator_id, reason in sorted(verdicts.items()):
        record = await session.get(
            AnnotatorQuality,
            (campaign.id, annotator_id),
            with_for_update=True,
            populate_existing=True,
        )
        if record is None:
            continue
        if reason is not None and record.status == ACTIVE:
            await decide(session, campaign, record, rules, reason)
        if record.status != ACTIVE and not record.settled:
            await settle(session, campaign, record, reopen=rules.reopen_answered, outcome=outcome)
    return outcome


async def _lock_in_submit_order(
    session: AsyncSession, campaign_id: str, annotator_ids: Sequence[str]
) -> None:
    """Lock what settling will change in the order a submission locks it (assignment, item,
    then the annotator's record and the audit chain), so the two never deadlock."""
    leased = (
        await session.execute(
            select(Assignment.id, Assignment.item_id)
            .where(
                Assignment.campaign_id == campaign_id,
                Assignment.annotator_id.in_(annotator_ids),
                Assignment.state == "leased",
            )
            .order_by(Assignment.id)
            .with_for_update()
        )
    ).all()
    answered = (
        await session.scalars(
            select(Response.item_id).where(
                Response.campaign_id == campaign_id,
                Response.annotator_id.in_(annotator_ids),
                Response.voided_at.is_(None),
            )
        )
    ).all()
    item_ids = sorted({item_id for _, item_id in leased} | set(answered))
    if item_ids:
        await session.execute(
            select(Item.id).where(Item.id.in_(item_ids)).order_by(Item.id).with_for_update()
        )


async def decide(
    session: AsyncSession,
    campaign: Campaign,
    quality: AnnotatorQuality,
    rules: ReliabilitySpec,
    reason: str,
) -> None:
    """Take the annotator off the campaign now (their next claim is refused); ``settle`` then
    undoes what their answers would have decided."""
    status = BLOCKED if rules.action == "block" else RETRAINING
    quality.status, quality.reason, quality.settled = status, reason, False
    await audit.append(
        session,
        action="annotator.blocked" if status == BLOCKED else "annotator.sent_to_retraining",
        actor=audit.SYSTEM_ACTOR,
        campaign_id=campaign.id,
        details={
            "annotator_id": quality.annotator_id,
            "reason": reason,
            "accuracy": quality.accuracy,
            "gold_answers": quality.gold_answers,
            "gold_score_sum": quality.gold_score_sum,
            "answers": quality.answers,
            "reopen_answered": rules.reopen_answered,
        },
    )


async def settle(
    session: AsyncSession,
    campaign: Campaign,
    quality: AnnotatorQuality,
    *,
    reopen: bool,
    outcome: RuleOutcome,
) -> None:
    """Revoke a judged annotator's leases, void their answers on images still open (and, with
    ``reopen``, re-open the finished ones they answered)."""
    annotator_id, status = quality.annotator_id, quality.status
    quality.settled = True
    outcome.judged.append(annotator_id)
    now = utcnow()
    leases = (
        await session.execute(
            update(Assignment)
            .where(
                Assignment.campaign_id == campaign.id,
                Assignment.annotator_id == annotator_id,
                Assignment.state == "leased",
            )
            .values(state="revoked", finished_at=now)
            .returning(Assignment.id, Assignment.item_id)
        )
    ).all()
    for assignment_id, item_id in sorted(leases):
        await session.execute(
            update(Item).where(Item.id == item_id).values(slots_taken=Item.slots_taken - 1)
        )
        await audit.append(
            session,
            action="assignment.revoked",
            actor=audit.SYSTEM_ACTOR,
            campaign_id=campaign.id,
            item_id=item_id,
            details={"assignment_id": assignment_id, "annotator_id": annotator_id},
        )
    answered = (
        await session.execute(
            select(Response, Item)
            .join(Item, Item.id == Response.item_id)
            .where(
                Response.campaign_id == campaign.id,
                Response.annotator_id == annotator_id,
                Response.voided_at.is_(None),
                Item.kind != GOLD,
            )
            .order_by(Item.ordinal)
            .with_for_update(of=Item)
        )
    ).all()
    for response, item in answered:
        if item.status == "done" and not reopen:
            continue  # left as decided; the audit entry above says they were judged
        previous = None
        if item.status == "done":
            previous = await session.scalar(
                select(Consensus.method).where(Consensus.item_id == item.id)
            )
            await undecide(session, item)
            outcome.reopened.append((item.ordinal, outcome_of(previous or "majority_vote")))
        response.voided_at, response.void_reason = now, f"annotator {status}: {quality.reason}"
        if item.status in {"open", "pending"}:
            item.slots_taken -= 1
        outcome.voided.append((item.ordinal, response.id))
        await audit.append(
            session,
            action="response.voided",
            actor=audit.SYSTEM_ACTOR,
            campaign_id=campaign.id,
            item_id=item.id,
            details={
                "response_id": response.id,
                "annotator_id": annotator_id,
                "item_status": item.status,
                "reopened_from": previous,
            },
        )
        if previous is not None:
            await audit.append(
                session,
                action="item.reopened",
                actor=audit.SYSTEM_ACTOR,
                campaign_id=campaign.id,
                item_id=item.id,
                details={"previous_method": previous, "because_of": annotator_id},
            )


async def undecide(session: AsyncSession, item: Item) -> None:
    """Take a finished item's decision back (its consensus goes) and open it to annotators
    again; the caller says why in the audit log and has the campaign restart it."""
    await session.execute(delete(Consensus).where(Consensus.item_id == item.id))
    item.status, item.finished_at, item.agreement = "open", None, None


async def reinstate(
    session: AsyncSession, campaign_id: str, annotator_id: str, operator: str
) -> AnnotatorQuality:
    """An operator lets a blocked or retrained annotator work again (their voided answers stay
    voided)."""
    quality = await session.get(AnnotatorQuality, (campaign_id, annotator_id), with_for_update=True)
    if quality is None or quality.status == ACTIVE:
        from services.errors import Conflict

        raise Conflict(f"annotator {annotator_id} is not blocked in campaign {campaign_id}")
    previous = quality.status
    quality.status, quality.reason = ACTIVE, f"reinstated by {operator}"
    await audit.append(
        session,
        action="annotator.reinstated",
        actor=("operator", operator),
        campaign_id=campaign_id,
        details={"annotator_id": annotator_id, "previous_status": previous},
    )
    return quality
