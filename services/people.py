"""Annotators and experts: records, bearer tokens, and authentication.

A token is shown once, at creation; only its SHA-256 is stored, so a database leak does not
leak working tokens. Signed, expiring task links come with the workforce issue.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Annotator
from schemas.campaign_spec import FieldError
from services.errors import PERSON_BLOCKED, UNKNOWN_TOKEN, Conflict, Forbidden, Unauthorized

Role = Literal["annotator", "expert"]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


async def create_person(
    session: AsyncSession,
    *,
    name: str,
    role: Role,
    external_id: str | None = None,
    max_concurrent: int = 1,
    skills: list[str] | None = None,
) -> tuple[Annotator, str]:
    """Create a person and return it with its bearer token (the only time the token is seen)."""
    if external_id is not None and await session.scalar(
        select(Annotator.id).where(Annotator.external_id == external_id)
    ):
        raise Conflict(
            f"external_id: {external_id!r} is already registered",
            errors=[FieldError(field="external_id", message="already registered")],
        )
    token = secrets.token_urlsafe(32)
    person = Annotator(
        id=new_id("ann" if role == "annotator" else "exp"),
        name=name,
        external_id=external_id,
        role=role,
        status="active",
        max_concurrent=max_concurrent,
        skills=skills or [],
        token_hash=hash_token(token),
    )
    session.add(person)
    await session.flush()
    return person, token


async def authenticate(session: AsyncSession, token: str) -> Annotator:
    person = await session.scalar(
        select(Annotator).where(Annotator.token_hash == hash_token(token))
    )
    if person is None:
        raise Unauthorized(UNKNOWN_TOKEN)
    if person.status != "active":
        raise Forbidden(PERSON_BLOCKED)
    return person
