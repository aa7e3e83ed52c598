"""The annotator pulls work: claiming a slot, submitting an answer, skipping.

The database is the source of truth for leases and responses; the ItemWorkflow is told about a
response only after it is committed, so an acknowledged answer can never be lost.

Rules, in one place:
- A claim picks the lowest-ordinal open item that still has a free slot and that this
  annotator never held. Items are locked with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL) or under
  SQLite's write lock, so two annotators asking at once never get one slot.
- Leases that ran out are expired by the next claim in the campaign; their slot goes back.
- An annotator at their concurrency limit gets their oldest live lease back (a reload of the
  page resumes work instead of failing).
- A campaign may require skills; an annotator who lacks one of them is refused (403).
- A single-task link leases its one image (``claim_item``) under the same rules.
- A late answer (its lease ran out) is still counted when its slot is free, because throwing
  away finished work helps nobody. If someone else took the slot, it is refused with 409.
- A repeated submission (same idempotency key) is acknowledged with the first response, once.
- An item asks for ``slots_wanted`` annotators: k with fixed redundancy; with adaptive
  redundancy it starts at the minimum and the item's workflow raises it one at a time.
- Gold items are mixed in at the campaign's rate, one in each block of about ``1 / rate`` tasks
  at an unpredictable place (``services.gold``); an answer to one is scored against the known
  answer in the same transaction, and never goes to a workflow.
- An annotator whom the campaign blocked or sent to retraining gets no more work in it (403).
- With ``redundancy.route_contested``, a contested image (an adaptive one that asked for more
  than the minimum) goes first to annotators the model rates at least average; the others get
  fresh images only, until a contested image has waited ``route_hold`` since it asked.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    Annotator,
    AnnotatorProgress,
    AnnotatorQuality,
    Assignment,
    Campaign,
    Item,
    Response,
    utcnow,
)
from schemas.annotations import ResponseBody, validate_response
from schemas.campaign_spec import RedundancySpec
from schemas.ontology import Ontology
from schemas.workflow_io import item_workflow_id
from services import audit
from services.consensus import score_against
from services.errors import (
    ALREADY_ANSWERED,
    ASSIGNMENT_NOT_IN_CAMPAIGN,
    ASSIGNMENT_SKIPPED,
    CAMPAIGN_NOT_RUNNING,
    LEASE_EXPIRED_REASSIGNED,
    NOT_YOUR_ASSIGNMENT,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
)
from services.gold import GOLD, gold_is_due, gold_salt, next_gold
from services.people import new_id
from services.reliability import (
    ACTIVE,
    MODEL_PREFIX,
    POPULATION,
    decide,
    gold_verdict,
    reliability_of,
)

MISSING_SKILLS = "this campaign needs skills you do not have"
AT_CONCURRENCY_LIMIT = "you hold as many open tasks as you may; finish or skip one first"
BLOCKED_IN_CAMPAIGN = "this campaign no longer gives you work; contact its operators"
# Accuracies are floats written by a fit: an annotator exactly at the average is trusted.
TRUST_SLACK = 1e-9
RETRAINING_REQUIRED = (
    "this campaign needs you to retrain before you continue; contact its operators"
)


@dataclass(frozen=True)
class Task:
    assignment: Assignment
    item: Item
    resumed: bool


@dataclass(frozen=True)
class Submission:
    response: Response
    duplicate: bool
    late: bool
    ordinal: int
    gold: bool = False  # an answer to a gold item: it goes to the reliability model, not a workflow
    # Set when this answer completes its image (every wanted answer is in): the image's other
    # counted answers as (response_id, annotator_id), oldest first. The API wakes the item's
    # workflow only then, with all of them in one signal; None means "not yet, or not open".
    completes_with: list[tuple[str, str]] | None = None


async def _completes_with(
    session: AsyncSession, item: Item, response_id: str
) -> list[tuple[str, str]] | None:
    """The other counted answers when ``response_id`` leaves ``item`` wanting nothing more.

    Runs under the item's row lock (taken by the submit), so of two answers committing at once
    exactly one sees the image complete."""
    if item.kind == GOLD or item.status != "open":
        return None
    counted = await counted_answers(session, item.id)
    if len(counted) < item.slots_wanted:
        return None
    return [(r, a) for r, a in counted if r != response_id]


async def counted_answers(session: AsyncSession, item_id: str) -> list[tuple[str, str]]:
    """An item's answers that count (not voided), as (response_id, annotator_id), oldest first:
    what the submit names in its wake-up and what the item's reconciliation reads."""
    rows = await session.execute(
        select(Response.id, Response.annotator_id)
        .where(Response.item_id == item_id, Response.voided_at.is_(None))
        .order_by(Response.submitted_at, Response.id)
    )
    return [(r, a) for r, a in rows.all()]


async def _campaign(session: AsyncSession, campaign_id: str) -> Campaign:
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}")
    return campaign


async def expire_leases(session: AsyncSession, campaign_id: str, now: datetime) -> int:
    """Mark run-out leases expired and give their slots back. Returns how many expired."""
    expired_items = (
        await session.execute(
            update(Assignment)
            .where(
                Assignment.campaign_id == campaign_id,
                Assignment.state == "leased",
                Assignment.lease_expires_at < now,
            )
            .values(state="expired", finished_at=now)
            .returning(Assignment.id, Assignment.item_id, Assignment.annotator_id)
        )
    ).all()
    counts = Counter(item_id for _, item_id, _ in expired_items)
    for item_id, n in sorted(counts.items()):
        await session.execute(
            update(Item).where(Item.id == item_id).values(slots_taken=Item.slots_taken - n)
        )
    for assignment_id, item_id, annotator_id in sorted(expired_items):
        await _audit(
            session,
            "assignment.expired",
            audit.SYSTEM_ACTOR,
            campaign_id,
            item_id,
            {"assignment_id": assignment_id, "annotator_id": annotator_id},
        )
    return sum(counts.values())


async def _audit(
    session: AsyncSession,
    action: str,
    actor: tuple[audit.ActorType, str],
    campaign_id: str,
    item_id: str,
    details: dict[str, Any],
) -> None:
    await audit.append(
        session,
        action=action,
        actor=actor,
        campaign_id=campaign_id,
        item_id=item_id,
        workflow_id=workflow_id_of(campaign_id, item_id),
        details=details,
    )


def workflow_id_of(campaign_id: str, item_id: str) -> str:
    """The item's workflow (a gold item has none, and its ordinal is past the images')."""
    return item_workflow_id(campaign_id, int(item_id.rsplit("-", 1)[1]))


def _person(annotator: Annotator) -> tuple[audit.ActorType, str]:
    return ("expert" if annotator.role == "expert" else "annotator", annotator.id)


async def claim_next(
    session: AsyncSession, annotator: Annotator, campaign_id: str, *, now: datetime | None = None
) -> Task | None:
    """Lease the next image to this annotator, or None when there is nothing for them."""
    now = now or utcnow()
    campaign = await _campaign(session, campaign_id)
    _check_can_work(campaign, annotator)
    await _check_in_good_standing(session, campaign, annotator)
    await expire_leases(session, campaign_id, now)

    live = (
        await session.scalars(
            select(Assignment)
            .where(
                Assignment.annotator_id == annotator.id,
                Assignment.campaign_id == campaign_id,
                Assignment.state == "leased",
            )
            .order_by(Assignment.leased_at)
        )
    ).all()
    if len(live) >= annotator.max_concurrent:
        item = await session.get(Item, live[0].item_id)
        assert item is not None
        return Task(assignment=live[0], item=item, resumed=True)

    held_before = exists().where(
        Assignment.item_id == Item.id, Assignment.annotator_id == annotator.id
    )
    gold_rate = (campaign.spec.get("gold") or {}).get("rate")
    if gold_rate:
        tasks_before = await session.scalar(
            select(AnnotatorProgress.leased).where(
                AnnotatorProgress.campaign_id == campaign_id,
                AnnotatorProgress.annotator_id == annotator.id,
            )
        )
        salt = gold_salt(
            campaign_id, campaign.secret, campaign.created_at.isoformat(), annotator.id
        )
        if gold_is_due(float(gold_rate), int(tasks_before or 0), salt):
            candidates = await session.scalars(
                select(Item.id).where(
                    Item.campaign_id == campaign_id, Item.status == GOLD, ~held_before
                )
            )
            gold_id = next_gold(candidates, salt)
            if gold_id is not None:
                gold = await session.get(Item, gold_id)
                assert gold is not None
                return await _lease(session, annotator, campaign, gold, now)
    claimable = [
        Item.campaign_id == campaign_id,
        Item.status == "open",
        Item.slots_taken < Item.slots_wanted,
        ~held_before,
    ]
    routing = _routing(campaign)
    trusted = True
    if routing is not None:
        least, hold = routing
        contested = Item.slots_wanted > least
        trusted = await _is_trusted(session, campaign_id, annotator.id)
        if trusted:
            item = await _first_claimable(session, [*claimable, contested])
            if item is not None:
                return await _lease(session, annotator, campaign, item, now, routed="contested")
        else:  # contested images are held for trusted annotators until their hold is over
            claimable.append(
                or_(
                    ~contested,
                    Item.contested_at.is_(None),
                    Item.contested_at <= now - hold,
                )
            )
    item = await _first_claimable(session, claimable)
    if item is None:
        return None
    routed = None
    if routing is not None and item.slots_wanted > routing[0]:
        # A contested image found here: by a trusted annotator whose first query skipped it
        # while another transaction held its row, or by anyone once its hold was over.
        routed = "contested" if trusted else "hold_expired"
    return await _lease(session, annotator, campaign, item, now, routed=routed)


async def _first_claimable(session: AsyncSession, where: list[Any]) -> Item | None:
    """The lowest-ordinal item matching ``where``, locked (one slot never goes to two)."""
    return await session.scalar(
        select(Item)
        .where(*where)
        .order_by(Item.ordinal)
        .limit(1)
        .with_for_update(skip_locked=True, of=Item)
    )


def _routing(campaign: Campaign) -> tuple[int, timedelta] | None:
    """(min_annotators, route_hold) when the campaign routes contested images, else None."""
    redundancy = campaign.spec.get("redundancy")
    if not redundancy or not redundancy.get("route_contested"):
        return None
    spec = RedundancySpec.model_validate(redundancy)
    return spec.min_annotators, spec.route_hold


async def _is_trusted(session: AsyncSession, campaign_id: str, annotator_id: str) -> bool:
    """Whether the model rates this annotator at least the campaign's average (weighted by
    answers); someone it has not estimated yet has not shown otherwise, and is trusted."""
    mine = await session.scalar(
        select(AnnotatorQuality.accuracy).where(
            AnnotatorQuality.campaign_id == campaign_id,
            AnnotatorQuality.annotator_id == annotator_id,
        )
    )
    if mine is None:
        return True
    rated = (
        AnnotatorQuality.campaign_id == campaign_id,
        AnnotatorQuality.accuracy.is_not(None),
        AnnotatorQuality.answers > 0,
        AnnotatorQuality.status == ACTIVE,
        AnnotatorQuality.annotator_id != POPULATION,
        ~AnnotatorQuality.annotator_id.startswith(MODEL_PREFIX),
    )
    total, weighted = (
        await session.execute(
            select(
                func.sum(AnnotatorQuality.answers),
                func.sum(AnnotatorQuality.answers * AnnotatorQuality.accuracy),
            ).where(*rated)
        )
    ).one()
    if not total:
        return True
    return float(mine) >= float(weighted) / float(total) - TRUST_SLACK


async def _lease(
    session: AsyncSession,
    annotator: Annotator,
    campaign: Campaign,
    item: Item,
    now: datetime,
    *,
    renew: Assignment | None = None,
    routed: str | None = None,
) -> Task:
    """Lease ``item`` to ``annotator`` (or renew their own run-out lease): take the slot, and
    put it on the record."""
    expires = now + timedelta(seconds=campaign.lease_timeout_s)
    if renew is not None:
        renew.state, renew.leased_at, renew.lease_expires_at = "leased", now, expires
        renew.finished_at = None
        assignment = renew
    else:
        assignment = Assignment(
            id=new_id("asg"),
            campaign_id=campaign.id,
            item_id=item.id,
            annotator_id=annotator.id,
            state="leased",
            leased_at=now,
            lease_expires_at=expires,
        )
        session.add(assignment)
        await _count(session, campaign.id, annotator.id, "leased")
    item.slots_taken += 1
    await session.flush()
    await _audit(
        session,
        "assignment.leased",
        _person(annotator),
        campaign.id,
        item.id,
        {
            "assignment_id": assignment.id,
            "lease_expires_at": expires.isoformat(),
            "renewed": renew is not None,
            **({"routed": routed} if routed else {}),
        },
    )
    return Task(assignment=assignment, item=item, resumed=False)


def _check_can_work(campaign: Campaign, annotator: Annotator) -> None:
    if campaign.status not in {"running", "created"}:
        raise Conflict(CAMPAIGN_NOT_RUNNING)
    missing = sorted(set(campaign.required_skills) - set(annotator.skills))
    if missing:
        raise Forbidden(f"{MISSING_SKILLS}: {', '.join(missing)}")


def judges_annotators(campaign: Campaign) -> bool:
    """Whether this campaign keeps a reliability record that can block people."""
    return bool(campaign.spec.get("gold") or campaign.spec.get("reliability"))


async def _check_in_good_standing(
    session: AsyncSession, campaign: Campaign, annotator: Annotator
) -> None:
    if not judges_annotators(campaign):
        return
    status = await session.scalar(
        select(AnnotatorQuality.status).where(
            AnnotatorQuality.campaign_id == campaign.id,
            AnnotatorQuality.annotator_id == annotator.id,
        )
    )
    if status == "blocked":
        raise Forbidden(BLOCKED_IN_CAMPAIGN)
    if status == "retraining":
        raise Forbidden(RETRAINING_REQUIRED)


async def claim_item(
    session: AsyncSession,
    annotator: Annotator,
    campaign_id: str,
    item_id: str,
    *,
    now: datetime | None = None,
) -> Task | None:
    """Lease one given image (a single-task link), or None when it does not need this person.

    The same rules as ``claim_next``: a free slot, never twice to one person, skills, and the
    concurrency limit. A lease of theirs that ran out is renewed if its slot is still free.
    """
    now = now or utcnow()
    campaign = await _campaign(session, campaign_id)
    _check_can_work(campaign, annotator)
    await _check_in_good_standing(session, campaign, annotator)
    await expire_leases(session, campaign_id, now)
    item = await session.scalar(
        select(Item).where(Item.id == item_id, Item.campaign_id == campaign_id).with_for_update()
    )
    if item is None:
        raise NotFound(f"no image {item_id} in campaign {campaign_id}")
    held = await session.scalar(
        select(Assignment).where(
            Assignment.item_id == item_id, Assignment.annotator_id == annotator.id
        )
    )
    if held is not None and held.state == "leased":
        return Task(assignment=held, item=item, resumed=True)
    if held is not None and held.state != "expired":
        return None  # answered or skipped: never twice
    if item.status != "open" or item.slots_taken >= item.slots_wanted:
        return None
    live = await session.scalar(
        select(func.count())
        .select_from(Assignment)
        .where(Assignment.annotator_id == annotator.id, Assignment.state == "leased")
        .where(Assignment.campaign_id == campaign_id)
    )
    if (live or 0) >= annotator.max_concurrent:
        raise Conflict(AT_CONCURRENCY_LIMIT)
    return await _lease(session, annotator, campaign, item, now, renew=held)


async def _owned_assignment(
    session: AsyncSession, annotator: Annotator, assignment_id: str, campaign_id: str | None
) -> Assignment:
    assignment = await session.scalar(
        select(Assignment).where(Assignment.id == assignment_id).with_for_update()
    )
    if assignment is None:
        raise NotFound(f"no assignment {assignment_id}")
    if assignment.annotator_id != annotator.id:
        raise Forbidden(NOT_YOUR_ASSIGNMENT)
    if campaign_id is not None and assignment.campaign_id != campaign_id:
        raise Forbidden(ASSIGNMENT_NOT_IN_CAMPAIGN)
    return assignment


async def submit_response(
    session: AsyncSession,
    annotator: Annotator,
    assignment_id: str,
    *,
    idempotency_key: str,
    body: ResponseBody,
    campaign_id: str | None = None,
    now: datetime | None = None,
) -> Submission:
    now = now or utcnow()
    assignment = await _owned_assignment(session, annotator, assignment_id, campaign_id)
    item = await session.scalar(select(Item).where(Item.id == assignment.item_id).with_for_update())
    assert item is not None

    previous = await session.scalar(
        select(Response).where(
            Response.annotator_id == annotator.id, Response.idempotency_key == idempotency_key
        )
    )
    if previous is not None:
        if previous.assignment_id != assignment.id:
            raise Conflict("this idempotency key was already used for another assignment")
        return Submission(
            response=previous,
            duplicate=True,
            late=previous.late,
            ordinal=item.ordinal,
            gold=item.kind == GOLD,
            # A repeat re-sends the wake-up: the first reply may have been lost before its signal.
            completes_with=await _completes_with(session, item, previous.id),
        )

    campaign = await _campaign(session, assignment.campaign_id)
    ontology = Ontology.model_validate(campaign.spec["ontology"])
    size = (item.width, item.height) if item.width and item.height else None
    errors = validate_response(ontology, body, size)
    if errors:
        raise InvalidInput(
            "the response has errors: " + "; ".join(f"{e.field}: {e.message}" for e in errors),
            errors=errors,
        )

    if assignment.state == "submitted":
        raise Conflict(ALREADY_ANSWERED)
    if assignment.state == "skipped":
        raise Conflict(ASSIGNMENT_SKIPPED)
    if assignment.state == "revoked":
        raise Forbidden(BLOCKED_IN_CAMPAIGN)
    gold = item.kind == GOLD
    late = assignment.state == "expired" or assignment.lease_expires_at < now
    if assignment.state == "expired" and not gold:
        # Its slot went back to the pool; take it again only if nobody else has.
        if item.status != "open" or item.slots_taken >= item.slots_wanted:
            raise Conflict(LEASE_EXPIRED_REASSIGNED)
        item.slots_taken += 1

    response = Response(
        id=new_id("rsp"),
        assignment_id=assignment.id,
        campaign_id=assignment.campaign_id,
        item_id=assignment.item_id,
        annotator_id=annotator.id,
        idempotency_key=idempotency_key,
        body=body.model_dump(mode="json"),
        late=late,
        submitted_at=now,
    )
    if gold:
        assert item.gold_answer is not None
        response.gold_score = score_against(ontology, response.body, item.gold_answer, size)
        await _add_gold_evidence(session, campaign, annotator.id, response.gold_score)
    session.add(response)
    await _count(session, assignment.campaign_id, annotator.id, "answered")
    assignment.state = "submitted"
    assignment.finished_at = now
    await session.flush()
    await _audit(
        session,
        "response.submitted",
        _person(annotator),
        assignment.campaign_id,
        assignment.item_id,
        {
            "response_id": response.id,
            "assignment_id": assignment.id,
            "late": late,
            "objects": len(body.objects),
            "idempotency_key": idempotency_key,
            **({"gold_score": response.gold_score} if gold else {}),
        },
    )
    return Submission(
        response=response,
        duplicate=False,
        late=late,
        ordinal=item.ordinal,
        gold=gold,
        completes_with=await _completes_with(session, item, response.id),
    )


async def _add_gold_evidence(
    session: AsyncSession, campaign: Campaign, annotator_id: str, score: float
) -> None:
    """Count one scored gold answer on the annotator's record (created on their first)."""
    quality = await session.get(AnnotatorQuality, (campaign.id, annotator_id), with_for_update=True)
    if quality is None:
        quality = AnnotatorQuality(
            campaign_id=campaign.id,
            annotator_id=annotator_id,
            status="active",
            gold_answers=0,
            gold_score_sum=0.0,
            answers=0,
        )
        session.add(quality)
    quality.gold_answers += 1
    quality.gold_score_sum += score
    rules = reliability_of(campaign)
    if rules is not None and quality.status == ACTIVE:
        reason = gold_verdict(quality, rules)
        if reason is not None:  # refused from the next claim on; the refit settles the rest
            await decide(session, campaign, quality, rules, reason)


async def skip_assignment(
    session: AsyncSession,
    annotator: Annotator,
    assignment_id: str,
    *,
    campaign_id: str | None = None,
    now: datetime | None = None,
) -> Assignment:
    """Give the image back; it goes to someone else, and never again to this annotator."""
    now = now or utcnow()
    assignment = await _owned_assignment(session, annotator, assignment_id, campaign_id)
    if assignment.state == "submitted":
        raise Conflict(ALREADY_ANSWERED)
    if assignment.state == "leased":
        await session.execute(
            update(Item)
            .where(Item.id == assignment.item_id)
            .values(slots_taken=Item.slots_taken - 1)
        )
    if assignment.state in {"leased", "expired"}:
        assignment.state = "skipped"
        assignment.finished_at = now
        await _audit(
            session,
            "assignment.skipped",
            _person(annotator),
            assignment.campaign_id,
            assignment.item_id,
            {"assignment_id": assignment.id},
        )
    return assignment


async def record_refusal(
    session: AsyncSession,
    annotator: Annotator,
    assignment_id: str,
    *,
    reason: str,
    errors: list[dict[str, str]],
) -> None:
    """A refused submission, logged in a transaction of its own (the refused one rolled back)."""
    assignment = await session.get(Assignment, assignment_id)
    if assignment is None or assignment.annotator_id != annotator.id:
        return  # not attributable to an assignment of this person: nothing to put on record
    await _audit(
        session,
        "response.refused",
        _person(annotator),
        assignment.campaign_id,
        assignment.item_id,
        {"assignment_id": assignment_id, "reason": reason, "errors": errors},
    )


async def annotator_progress(session: AsyncSession, annotator_id: str, campaign_id: str) -> int:
    """How many answers this annotator gave in the campaign (one row read)."""
    return int(
        await session.scalar(
            select(AnnotatorProgress.answered).where(
                AnnotatorProgress.campaign_id == campaign_id,
                AnnotatorProgress.annotator_id == annotator_id,
            )
        )
        or 0
    )


async def _count(
    session: AsyncSession,
    campaign_id: str,
    annotator_id: str,
    counter: Literal["answered", "leased"],
) -> None:
    """One more on an annotator's counter, their row created at its first use (an upsert: two
    first uses at once cannot both insert)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    first = {"answered": 0, "leased": 0, counter: 1}
    stmt = insert(AnnotatorProgress).values(
        campaign_id=campaign_id, annotator_id=annotator_id, **first
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["campaign_id", "annotator_id"],
            set_={counter: getattr(AnnotatorProgress, counter) + 1},
        )
    )
