"""What every request needs: settings, the database, Temporal and the dataset store.

Built once per app (in its lifespan, or handed in by tests) and reached through dependencies.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from db.models import Annotator
from infra.settings import Settings
from services.errors import OPERATOR_ONLY, UNKNOWN_TOKEN, Forbidden, Unauthorized
from services.people import authenticate
from storage import ObjectStore


@dataclass
class AppContext:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    temporal: Client
    store: ObjectStore
    s3_client: Any = None  # for campaigns whose images live in S3


def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Context = Annotated[AppContext, Depends(get_context)]


async def get_session(ctx: Context) -> AsyncIterator[AsyncSession]:
    # The request owns the transaction: committed when the handler returns, rolled back if it
    # raises, so a refused request changes nothing.
    async with ctx.sessions.begin() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]


def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("send 'Authorization: Bearer <token>'")
    return authorization.split(" ", 1)[1].strip()


Token = Annotated[str, Depends(bearer_token)]


def require_operator(ctx: Context, token: Token) -> str:
    expected = ctx.settings.api.operator_token.get_secret_value()
    if not secrets.compare_digest(token.encode(), expected.encode()):
        raise Forbidden(OPERATOR_ONLY)
    return "operator"


Operator = Annotated[str, Depends(require_operator)]


async def require_person(ctx: Context, token: Token) -> Annotator:
    async with ctx.sessions() as session:
        person = await authenticate(session, token)
        session.expunge(person)
        return person


Person = Annotated[Annotator, Depends(require_person)]

__all__ = ["UNKNOWN_TOKEN", "AppContext", "Context", "Operator", "Person", "Session"]
