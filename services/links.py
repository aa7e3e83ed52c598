"""Task links: signed, expiring, revocable URLs that let one person work without installing
anything.

A link is a row in ``task_links`` (who, which campaign, optionally which image, until when,
revoked or not) and a token that names that row. The token is a JWT signed with HS256 by
PyJWT, with these claims:

    iss "quorum", aud "quorum-link", jti  the link's id,     sub  the person's id,
    cid the campaign's id,             knd  campaign|task, itm  the image (task links),
    iat and exp                        when it was issued and when it expires.

A token is accepted only when its signature, its issuer and audience, its expiry, and the row
it names all agree (same person, campaign, kind and image; not revoked; not expired), and the
person is active. A forged or altered token fails the signature; a revoked one fails the row.

Scope: a campaign link works on its own campaign's routes only; a task link works on its one
image only (its assignment, its review, its image, and the queue route that leases it).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import jwt
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Annotator, Assignment, Campaign, Item, TaskLink, utcnow
from schemas.campaign_spec import FieldError
from services import audit
from services.errors import PERSON_BLOCKED, Forbidden, InvalidInput, NotFound, Unauthorized
from services.gold import GOLD
from services.people import new_id

LinkKind = Literal["campaign", "task"]

ISSUER = "quorum"
AUDIENCE = "quorum-link"
ALGORITHM = "HS256"
MAX_TTL = timedelta(days=365)

LINK_INVALID = "this link is not valid; check that it was copied whole, or ask for a new one"
LINK_EXPIRED = "this link has expired; ask your coordinator for a new one"
LINK_REVOKED = "this link was revoked; ask your coordinator for a new one"
LINK_OTHER_CAMPAIGN = "this link is for another campaign"
LINK_OTHER_TASK = "this link is for another image"
LINK_OUT_OF_SCOPE = "a task link only works on its own campaign's tasks"
NOT_A_LINK = "this is not a task link"
TASK_LINKS_ANNOTATORS_ONLY = "task links are for annotators; give experts a campaign link"
# A task link names its item in the token and in /links/me, and gold is only ever mixed into
# queues: a link to it would hand the annotator a gold item's ID and never lease it.
TASK_LINK_NOT_GOLD = "a gold item cannot be given by a task link; it is only mixed into queues"

# The one route a task link may use without naming its image: the queue, which then leases
# that image and nothing else.
QUEUE_ROUTES = frozenset({"/campaigns/{campaign_id}/tasks/next"})


@dataclass(frozen=True)
class IssuedLink:
    link: TaskLink
    token: str


@dataclass(frozen=True)
class LinkGrant:
    """A verified link and the person it was issued to."""

    link: TaskLink
    person: Annotator


def is_link_token(token: str) -> bool:
    """Link tokens are JWTs (three dot-separated parts); person tokens never contain a dot."""
    return token.count(".") == 2


def _encode(claims: dict[str, Any], secret: str) -> str:
    # The key length policy is enforced by the settings (32 bytes in production); the dev
    # placeholder would otherwise warn on every link.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _decode(token: str, secret: str, now: datetime) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        # One fixed algorithm: the token's own "alg" header is never trusted ("none", RS/HS
        # confusion). Expiry is checked against ``now`` below, so tests can move the clock.
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            # iat is informational: another server's clock a second ahead must not refuse it.
            options={
                "require": ["exp", "iat", "jti", "sub", "iss", "aud"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
    exp = claims["exp"]
    if not isinstance(exp, int | float) or now.timestamp() >= exp:
        raise jwt.ExpiredSignatureError("expired")
    return claims


async def issue_link(
    session: AsyncSession,
    *,
    secret: str,
    campaign_id: str,
    person_id: str,
    kind: LinkKind,
    ttl: timedelta,
    issued_by: str,
    item_id: str | None = None,
    now: datetime | None = None,
) -> IssuedLink:
    """Store a link and return it with its signed token (the token is not stored)."""
    now = now or utcnow()
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}")
    person = await session.get(Annotator, person_id)
    if person is None:
        raise _invalid("person_id", f"no person {person_id}")
    if person.status != "active":
        raise _invalid("person_id", PERSON_BLOCKED)
    if ttl <= timedelta(0) or ttl > MAX_TTL:
        raise _invalid("ttl", f"must be more than 0 and at most {MAX_TTL.days} days")
    missing = sorted(set(campaign.required_skills) - set(person.skills))
    if person.role == "annotator" and missing:
        raise _invalid("person_id", f"this person lacks the campaign's skills: {missing}")
    if kind == "task":
        if person.role != "annotator":
            raise _invalid("kind", TASK_LINKS_ANNOTATORS_ONLY)
        if item_id is None:
            raise _invalid("item_id", "a task link names its image")
        item = await session.get(Item, item_id)
        if item is None or item.campaign_id != campaign_id:
            raise _invalid("item_id", f"no image {item_id} in campaign {campaign_id}")
        if item.kind == GOLD:
            raise _invalid("item_id", TASK_LINK_NOT_GOLD)
    elif item_id is not None:
        raise _invalid("item_id", "only task links name an image")

    link = TaskLink(
        id=new_id("lnk"),
        person_id=person.id,
        campaign_id=campaign_id,
        kind=kind,
        item_id=item_id,
        issued_by=issued_by,
        issued_at=now,
        expires_at=now + ttl,
    )
    session.add(link)
    await session.flush()
    await audit.append(
        session,
        action="link.issued",
        actor=("operator", issued_by),
        campaign_id=campaign_id,
        item_id=item_id,
        details={
            "link_id": link.id,
            "person_id": person.id,
            "kind": kind,
            "expires_at": link.expires_at.isoformat(),
        },
    )
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "jti": link.id,
        "sub": person.id,
        "cid": campaign_id,
        "knd": kind,
        "iat": int(now.timestamp()),
        "exp": int(link.expires_at.timestamp()),
    }
    if item_id is not None:
        claims["itm"] = item_id
    return IssuedLink(link=link, token=_encode(claims, secret))


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", errors=[FieldError(field=field, message=message)])


async def revoke_link(
    session: AsyncSession,
    link_id: str,
    now: datetime | None = None,
    *,
    revoked_by: str = "operator",
) -> TaskLink:
    """Revoke a link for good (revoking it again keeps the first time)."""
    link = await session.scalar(select(TaskLink).where(TaskLink.id == link_id).with_for_update())
    if link is None:
        raise NotFound(f"no link {link_id}")
    if link.revoked_at is None:
        link.revoked_at = now or utcnow()
        await audit.append(
            session,
            action="link.revoked",
            actor=("operator", revoked_by),
            campaign_id=link.campaign_id,
            item_id=link.item_id,
            details={"link_id": link.id, "person_id": link.person_id},
        )
    return link


async def verify_link(
    session: AsyncSession, token: str, secret: str, now: datetime | None = None
) -> LinkGrant:
    """The link and person a token stands for, or Unauthorized / Forbidden saying why not."""
    now = now or utcnow()
    try:
        claims = _decode(token, secret, now)
    except jwt.ExpiredSignatureError:
        raise Unauthorized(LINK_EXPIRED) from None
    except jwt.PyJWTError:
        raise Unauthorized(LINK_INVALID) from None
    link = await session.get(TaskLink, str(claims["jti"]))
    if (
        link is None
        or link.person_id != claims["sub"]
        or link.campaign_id != claims.get("cid")
        or link.kind != claims.get("knd")
        or link.item_id != claims.get("itm")
    ):
        raise Unauthorized(LINK_INVALID)
    if link.revoked_at is not None:
        raise Unauthorized(LINK_REVOKED)
    if link.expires_at <= now:
        raise Unauthorized(LINK_EXPIRED)
    person = await session.get(Annotator, link.person_id)
    if person is None:
        raise Unauthorized(LINK_INVALID)
    if person.status != "active":
        raise Forbidden(PERSON_BLOCKED)
    return LinkGrant(link=link, person=person)


async def enforce_scope(
    session: AsyncSession,
    link: TaskLink,
    path_params: Mapping[str, Any],
    route_path: str | None,
) -> None:
    """Refuse (403) a request outside the link's campaign, or outside its image."""
    campaign_id = path_params.get("campaign_id")
    item_id = path_params.get("item_id")
    assignment_id = path_params.get("assignment_id")
    if campaign_id is None and item_id is None and assignment_id is None:
        raise Forbidden(LINK_OUT_OF_SCOPE)
    if campaign_id is not None and campaign_id != link.campaign_id:
        raise Forbidden(LINK_OTHER_CAMPAIGN)
    if item_id is not None:
        item_campaign = await session.scalar(select(Item.campaign_id).where(Item.id == item_id))
        if item_campaign is None:
            raise NotFound(f"no item {item_id}")
        if item_campaign != link.campaign_id:
            raise Forbidden(LINK_OTHER_CAMPAIGN)
        if link.kind == "task" and item_id != link.item_id:
            raise Forbidden(LINK_OTHER_TASK)
    if assignment_id is not None:
        row = (
            await session.execute(
                select(Assignment.campaign_id, Assignment.item_id).where(
                    Assignment.id == assignment_id
                )
            )
        ).first()
        if row is None:
            raise NotFound(f"no assignment {assignment_id}")
        if row.campaign_id != link.campaign_id:
            raise Forbidden(LINK_OTHER_CAMPAIGN)
        if link.kind == "task" and row.item_id != link.item_id:
            raise Forbidden(LINK_OTHER_TASK)
    if (
        link.kind == "task"
        and item_id is None
        and assignment_id is None
        and route_path not in QUEUE_ROUTES
    ):
        raise Forbidden(LINK_OUT_OF_SCOPE)


async def campaign_links(session: AsyncSession, campaign_id: str) -> list[TaskLink]:
    return list(
        (
            await session.scalars(
                select(TaskLink)
                .where(TaskLink.campaign_id == campaign_id)
                .order_by(TaskLink.issued_at.desc())
            )
        ).all()
    )


def link_state(link: TaskLink, now: datetime | None = None) -> str:
    if link.revoked_at is not None:
        return "revoked"
    return "expired" if link.expires_at <= (now or utcnow()) else "active"
