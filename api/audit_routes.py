"""Auditors: a read-only view of who did what, when, and whether anything was changed.

The auditor has a token of their own; it opens only these routes, and every route reads
through an engine the database itself refuses to write through.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from api.context import Context, Token
from services.audit_views import (
    export_campaign,
    item_timeline,
    jsonl,
    read_only_session,
    trace_label,
    verify_campaign,
)
from services.errors import Forbidden

router = APIRouter(prefix="/audit", tags=["auditors"])
AUDITOR_ONLY = "only an auditor or an operator may read the audit log"


def require_auditor(ctx: Context, token: Token) -> str:
    for role, secret in (
        ("auditor", ctx.settings.api.auditor_token),
        ("operator", ctx.settings.api.operator_token),
    ):
        if secrets.compare_digest(token.encode(), secret.get_secret_value().encode()):
            return role
    raise Forbidden(AUDITOR_ONLY)


Auditor = Annotated[str, Depends(require_auditor)]


async def read_only(ctx: Context) -> AsyncIterator[AsyncSession]:
    async with read_only_session(ctx.settings.database_url) as session:
        yield session


ReadOnly = Annotated[AsyncSession, Depends(read_only)]


@router.get("/items/{item_id}/timeline")
async def timeline(
    item_id: str, ctx: Context, _: Auditor, session: ReadOnly
) -> list[dict[str, Any]]:
    events = await item_timeline(session, ctx.temporal, ctx.store, item_id)
    return [
        {"at": e.at, "source": e.source, "what": e.what, "actor": e.actor, "detail": e.detail}
        for e in events
    ]


@router.get("/labels/{dataset}/{version}/{item_id}")
async def label(
    dataset: str, version: int, item_id: str, ctx: Context, _: Auditor, session: ReadOnly
) -> dict[str, Any]:
    return await trace_label(session, ctx.store, dataset, version, item_id)


@router.get("/campaigns/{campaign_id}/verify")
async def verify(campaign_id: str, ctx: Context, _: Auditor, session: ReadOnly) -> dict[str, Any]:
    report = await verify_campaign(session, ctx.store, campaign_id)
    return {
        "campaign_id": campaign_id,
        "ok": report.ok,
        "entries": report.entries,
        "anchors": report.anchors,
        "first_problem": report.first_problem,
        "problems": report.problems,
    }


@router.get("/campaigns/{campaign_id}/export")
async def export(
    campaign_id: str,
    ctx: Context,
    _: Auditor,
    session: ReadOnly,
    part: Annotated[Literal["audit", "histories"], Query()] = "audit",
) -> StreamingResponse:
    """The campaign's audit log, or its workflow histories, as JSON Lines."""
    entries, histories = await export_campaign(session, ctx.temporal, ctx.store, campaign_id)
    rows = entries if part == "audit" else histories
    return StreamingResponse(
        jsonl(rows),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{campaign_id}-{part}.jsonl"'},
    )
