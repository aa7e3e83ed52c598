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

from db.models import Annotator, TaskLink
from infra.settings import Settings
from services.errors import OPERATOR_ONLY, UNKNOWN_TOKEN, Forbidden, Unauthorized
from services.links import enforce_scope, is_link_token, verify_link
from services.people import authenticate
from storage import ObjectStore


@dataclass
class AppContext:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    temporal: Client
    store: ObjectStore
    s3_client: Any = None  # for campaigns whose images live in S3
    # For transactions that only read (who sent this request); ``sessions`` when None.
    # On SQLite they then skip the write lock that every ``sessions`` transaction takes.
    read_sessions: async_sessionmaker[AsyncSession] | None = None

    @property
    def readers(self) -> async_sessionmaker[AsyncSession]:
        return self.read_sessions or self.sessions


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


def bearer_token(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization.split(" ", 1)[1].strip()
    # An <img> cannot send a header: a GET (which changes nothing) may carry a task link's
    # token, already part of the page's own URL, as ``access_token`` in its query (RFC 6750
    # section 2.3). The pages send no Referer. Long-lived tokens stay in headers.
    query_token = request.query_params.get("access_token")
    if request.method == "GET" and query_token and is_link_token(query_token):
        return query_token
    raise Unauthorized("send 'Authorization: Bearer <token>'")


Token = Annotated[str, Depends(bearer_token)]


def require_operator(ctx: Context, token: Token) -> str:
    expected = ctx.settings.api.operator_token.get_secret_value()
    if not secrets.compare_digest(token.encode(), expected.encode()):
        raise Forbidden(OPERATOR_ONLY)
    return "operator"


Operator = Annotated[str, Depends(require_operator)]


async def require_person(request: Request, ctx: Context, token: Token) -> Annotator:
    """The person behind a person token, or behind a task link (held to the link's scope)."""
    async with ctx.readers() as session:
        if is_link_token(token):
            grant = await verify_link(
                session, token, ctx.settings.api.link_secret.get_secret_value()
            )
            route = request.scope.get("route")
            await enforce_scope(
                session, grant.link, request.path_params, getattr(route, "path", None)
            )
            session.expunge(grant.link)
            request.state.link = grant.link
            person = grant.person
        else:
            person = await authenticate(session, token)
        session.expunge(person)
        return person


Person = Annotated[Annotator, Depends(require_person)]


def link_of(request: Request) -> TaskLink | None:
    """The task link this request came with, if any (after ``Person`` was resolved)."""
    link: TaskLink | None = getattr(request.state, "link", None)
    return link


__all__ = [
    "UNKNOWN_TOKEN",
    "AppContext",
    "Context",
    "Operator",
    "Person",
    "Session",
    "link_of",
]
