"""Keeping what Temporal forgets: closed workflows' histories, and anchors of the audit log.

The Temporal server drops closed workflows after its retention period, so every closed run's
history is exported as JSON (the format ``Replayer`` and ``temporal workflow show`` use) to the
object store, write-once, under ``audit/histories/<workflow id>/<run id>.json``.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client

from schemas.workflow_io import ArchiveInput, ArchiveRoundResult
from services import audit
from services.audit import history_key, write_anchors
from storage import ObjectStore

PAGE = 500
VISIBILITY_LAG = timedelta(seconds=60)


class ArchiveActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], client: Client, store: ObjectStore
    ) -> None:
        self._sessions = sessions
        self._client = client
        self._store = store

    @activity.defn
    async def archive_round(self, input: ArchiveInput) -> ArchiveRoundResult:
        """Export the histories of runs closed since the checkpoint, then anchor the log."""
        exported = kept = 0
        since = datetime.fromisoformat(input.since.replace("Z", "+00:00"))
        newest = since
        query = (
            f'TaskQueue = "{input.task_queue}" AND ExecutionStatus != "Running" '
            f'AND CloseTime > "{_iso(since)}"'
        )
        async for run in self._client.list_workflows(query, page_size=PAGE):
            if run.close_time is not None:
                newest = max(newest, run.close_time.astimezone(UTC))
            if run.id == activity.info().workflow_id:
                continue  # the archiver's own earlier runs are not audit material
            key = history_key(run.id, run.run_id)
            if await asyncio.to_thread(self._store.exists, key):
                kept += 1
                continue
            history = await self._client.get_workflow_handle(
                run.id, run_id=run.run_id
            ).fetch_history()
            created = await asyncio.to_thread(self._store.create, key, history.to_json().encode())
            exported += int(created)
            kept += int(not created)
            activity.heartbeat(exported)
        async with self._sessions.begin() as session:
            anchors = await write_anchors(session, self._store)
        # The checkpoint trails the newest close by VISIBILITY_LAG: visibility is eventually
        # consistent, so a run that closed just before the newest one may only appear later.
        # Re-listing the overlap is cheap (the store already has those, and create is
        # write-once).
        next_since = max(since, newest - VISIBILITY_LAG)
        return ArchiveRoundResult(
            exported=exported, already_kept=kept, next_since=_iso(next_since), anchors=len(anchors)
        )

    async def _record(
        self, workflow_id: str, run_id: str, key: str, body: bytes, events: int
    ) -> None:
        """Put the archived history's hash in its campaign's chain: a later change to the file
        is then caught by verification, even on a store without write-once guarantees."""
        async with self._sessions.begin() as session:
            await audit.append(
                session,
                action="history.archived",
                actor=audit.SYSTEM_ACTOR,
                campaign_id=audit.campaign_of_workflow(workflow_id),
                workflow_id=workflow_id,
                run_id=run_id,
                details={"key": key, "sha256": hashlib.sha256(body).hexdigest(), "events": events},
            )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
