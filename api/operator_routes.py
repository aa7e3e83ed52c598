"""Operators: task links, the skills a campaign requires, and the workforce at work.

- ``POST /campaigns/{id}/links`` issues a signed link for one person (their queue, or one
  image); ``GET`` lists a campaign's links; ``POST /links/{id}/revoke`` ends one for good.
- ``PUT /campaigns/{id}/required-skills``: annotators must have all of them to get work.
- ``PUT /people/{id}/status``: block a person (their tokens and links stop working) or unblock.
- ``GET /campaigns/{id}/workforce``: who is working, their counts and their speed;
  ``GET /campaigns/{id}/leases``: the outstanding leases;
  ``GET /campaigns/{id}/assignments/{assignment}``: which item a lease is for (annotators see
  only the assignment, so that a gold item looks like any other).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import ColumnElement, Float, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.context import Context, Operator, Session
from db.models import Annotator, Assignment, Campaign, Item, TaskLink, utcnow
from schemas.campaign_spec import parse_duration
from services.errors import NotFound
from services.links import campaign_links, issue_link, link_state, revoke_link

router = APIRouter(tags=["operators"])

SKILL = r"^[A-Za-z0-9][A-Za-z0-9 _.:-]{0,63}$"


class LinkIn(BaseModel):
    person_id: str = Field(min_length=1, max_length=40)
    kind: Literal["campaign", "task"] = "campaign"
    item_id: str | None = Field(None, description="With kind 'task': the one image it opens.")
    ttl: timedelta = Field(
        timedelta(days=7), description='How long the link works: seconds, or "90m", "12h", "7d".'
    )

    @field_validator("ttl", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value)


class LinkOut(BaseModel):
    id: str
    kind: str
    person_id: str
    campaign_id: str
    item_id: str | None
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    state: str


class LinkIssued(LinkOut):
    url: str = Field(description="The page to open: /work/<token>, or /review/<token>.")
    token: str = Field(description="Shown once; it is also the bearer token of the JSON API.")


def _link_out(link: TaskLink) -> dict[str, Any]:
    return {
        "id": link.id,
        "kind": link.kind,
        "person_id": link.person_id,
        "campaign_id": link.campaign_id,
        "item_id": link.item_id,
        "issued_at": link.issued_at,
        "expires_at": link.expires_at,
        "revoked_at": link.revoked_at,
        "state": link_state(link),
    }


@router.post("/campaigns/{campaign_id}/links", status_code=201, response_model=LinkIssued)
async def create_link(
    campaign_id: str,
    body: LinkIn,
    request: Request,
    ctx: Context,
    session: Session,
    operator: Operator,
) -> LinkIssued:
    issued = await issue_link(
        session,
        secret=ctx.settings.api.link_secret.get_secret_value(),
        campaign_id=campaign_id,
        person_id=body.person_id,
        kind=body.kind,
        item_id=body.item_id,
        ttl=body.ttl,
        issued_by=operator,
    )
    person = await session.get(Annotator, body.person_id)
    assert person is not None
    base = (ctx.settings.api.public_url or str(request.base_url)).rstrip("/")
    page = "review" if person.role == "expert" else "work"
    return LinkIssued(
        **_link_out(issued.link), url=f"{base}/{page}/{issued.token}", token=issued.token
    )


@router.get("/campaigns/{campaign_id}/links", response_model=list[LinkOut])
async def list_links(campaign_id: str, session: Session, _: Operator) -> list[LinkOut]:
    await _campaign(session, campaign_id)
    return [LinkOut(**_link_out(link)) for link in await campaign_links(session, campaign_id)]


@router.post("/links/{link_id}/revoke", response_model=LinkOut)
async def revoke(link_id: str, session: Session, _: Operator) -> LinkOut:
    return LinkOut(**_link_out(await revoke_link(session, link_id)))


class SkillsIn(BaseModel):
    skills: list[str] = Field(max_length=50)

    @field_validator("skills")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        for skill in value:
            if not re.match(SKILL, skill):
                raise ValueError(f"{skill!r} is not a skill name (letters, digits, ' _.:-')")
        return sorted(set(value))


@router.put("/campaigns/{campaign_id}/required-skills")
async def set_required_skills(
    campaign_id: str, body: SkillsIn, session: Session, _: Operator
) -> dict[str, Any]:
    campaign = await _campaign(session, campaign_id)
    campaign.required_skills = body.skills
    return {"campaign_id": campaign.id, "required_skills": campaign.required_skills}


class StatusIn(BaseModel):
    status: Literal["active", "blocked"]


@router.put("/people/{person_id}/status")
async def set_person_status(
    person_id: str, body: StatusIn, session: Session, _: Operator
) -> dict[str, str]:
    person = await session.get(Annotator, person_id)
    if person is None:
        raise NotFound(f"no person {person_id}")
    person.status = body.status
    return {"id": person.id, "status": person.status}


async def _campaign(session: AsyncSession, campaign_id: str) -> Campaign:
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}")
    return campaign


def _seconds(session: AsyncSession, column: Any) -> ColumnElement[float]:
    """A timestamp column as epoch seconds, in the dialect's own SQL."""
    if session.get_bind().dialect.name == "sqlite":
        return func.julianday(column) * 86400.0
    return func.extract("epoch", column).cast(Float)


@router.get("/campaigns/{campaign_id}/workforce")
async def workforce(campaign_id: str, session: Session, _: Operator) -> dict[str, Any]:
    """Everyone who took work in this campaign: their counts, their pace, and who is working.

    ``working``: holds a live lease or answered within the last 10 minutes.
    ``seconds_per_answer``: mean time from lease to answer. ``answers_last_hour``: pace now.
    """
    campaign = await _campaign(session, campaign_id)
    now = utcnow()
    a = Assignment
    submitted = a.state == "submitted"
    live = (a.state == "leased") & (a.lease_expires_at > now)
    rows = (
        await session.execute(
            select(
                a.annotator_id,
                func.count().filter(submitted).label("answered"),
                func.count().filter(live).label("leased"),
                func.count().filter(a.state == "skipped").label("skipped"),
                func.count().filter(a.state == "expired").label("expired"),
                func.count().filter(submitted & (a.finished_at > now - timedelta(hours=1))),
                func.avg(
                    case(
                        (
                            submitted,
                            _seconds(session, a.finished_at) - _seconds(session, a.leased_at),
                        )
                    )
                ),
                func.max(a.leased_at),
                func.max(a.finished_at),
            )
            .where(a.campaign_id == campaign_id)
            .group_by(a.annotator_id)
        )
    ).all()
    people = {
        p.id: p
        for p in (
            await session.scalars(select(Annotator).where(Annotator.id.in_([r[0] for r in rows])))
        ).all()
    }
    out = []
    for pid, answered, leased, skipped, expired, last_hour, mean_s, last_lease, last_done in rows:
        person = people[pid]
        last = max((t for t in (last_lease, last_done) if t is not None), default=None)
        recent = last_done is not None and last_done > now - timedelta(minutes=10)
        out.append(
            {
                "id": pid,
                "name": person.name,
                "role": person.role,
                "status": person.status,
                "max_concurrent": person.max_concurrent,
                "working": bool(leased) or recent,
                "answered": answered,
                "leased": leased,
                "skipped": skipped,
                "expired": expired,
                "answers_last_hour": last_hour,
                "seconds_per_answer": round(float(mean_s), 3) if mean_s is not None else None,
                "last_activity_at": last,
            }
        )
    out.sort(key=lambda p: (not p["working"], -p["answered"], p["name"]))
    return {
        "campaign_id": campaign.id,
        "required_skills": campaign.required_skills,
        "working": sum(1 for p in out if p["working"]),
        "people": out,
    }


@router.get("/campaigns/{campaign_id}/leases")
async def leases(campaign_id: str, session: Session, _: Operator) -> list[dict[str, Any]]:
    """Leases not yet answered, skipped or expired. ``overdue`` ones ran out; their slot goes
    back at the campaign's next claim."""
    await _campaign(session, campaign_id)
    now = utcnow()
    rows = (
        await session.execute(
            select(Assignment, Item.ordinal, Annotator.name)
            .join(Item, Item.id == Assignment.item_id)
            .join(Annotator, Annotator.id == Assignment.annotator_id)
            .where(Assignment.campaign_id == campaign_id, Assignment.state == "leased")
            .order_by(Assignment.lease_expires_at)
            .limit(10_000)
        )
    ).all()
    return [
        {
            "assignment_id": asg.id,
            "item_id": asg.item_id,
            "ordinal": ordinal,
            "annotator_id": asg.annotator_id,
            "annotator_name": name,
            "leased_at": asg.leased_at,
            "lease_expires_at": asg.lease_expires_at,
            "seconds_left": round((asg.lease_expires_at - now).total_seconds(), 1),
            "overdue": asg.lease_expires_at <= now,
        }
        for asg, ordinal, name in rows
    ]


@router.get("/campaigns/{campaign_id}/assignments/{assignment_id}")
async def assignment(
    campaign_id: str, assignment_id: str, session: Session, _: Operator
) -> dict[str, Any]:
    """One assignment and the item it leased (an image of the campaign, or a gold item)."""
    row = (
        await session.execute(
            select(Assignment, Item.ordinal, Item.kind)
            .join(Item, Item.id == Assignment.item_id)
            .where(Assignment.id == assignment_id, Assignment.campaign_id == campaign_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"no assignment {assignment_id} in campaign {campaign_id}")
    asg, ordinal, kind = row
    return {
        "assignment_id": asg.id,
        "campaign_id": asg.campaign_id,
        "item_id": asg.item_id,
        "ordinal": ordinal,
        "kind": kind,
        "annotator_id": asg.annotator_id,
        "state": asg.state,
        "leased_at": asg.leased_at,
        "lease_expires_at": asg.lease_expires_at,
        "finished_at": asg.finished_at,
    }
