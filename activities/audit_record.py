"""Audit entries written by activities: the system is the actor, and the entry names the
workflow and run that did it (what an auditor follows into the workflow's history)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from services import audit


async def record(
    session: AsyncSession,
    action: str,
    *,
    campaign_id: str,
    details: dict[str, Any],
    item_id: str | None = None,
) -> None:
    info = activity.info()
    await audit.append(
        session,
        action=action,
        actor=audit.SYSTEM_ACTOR,
        campaign_id=campaign_id,
        item_id=item_id,
        workflow_id=info.workflow_id,
        run_id=info.workflow_run_id,
        details=details,
    )
