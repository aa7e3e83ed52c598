"""What an auditor reads: item timelines, label traces, verification, and exports.

Everything here only reads. The auditor's sessions are read-only at the database level too
(see ``read_only_sessions``), so a bug here cannot change state.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError

from db.audit_models import AuditEntry, AuditHead
from db.engine import create_engine, create_sessionmaker
from db.models import Annotator, Consensus, Item, Response
from schemas.workflow_io import item_workflow_id
from services.audit import HISTORY_PREFIX, ChainReport, load_anchors, verify_chain
from services.errors import NotFound
from storage import ObjectNotFound, ObjectStore, read_record


@asynccontextmanager
async def read_only_session(url: str) -> AsyncIterator[AsyncSession]:
    """A session on an engine the database itself refuses to write through."""
    engine = create_engine(url, read_only=True)
    try:
        async with create_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()


def entry_json(e: AuditEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "chain": e.chain,
        "seq": e.seq,
        "at": e.at.isoformat(),
        "actor": f"{e.actor_type}:{e.actor_id}",
        "action": e.action,
        "campaign_id": e.campaign_id,
        "item_id": e.item_id,
        "workflow_id": e.workflow_id,
        "run_id": e.run_id,
        "details": e.details,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }


# --- workflow histories --------------------------------------------------------------------------


def _summarize_event(event: dict[str, Any]) -> str:
    kind = event.get("eventType", "")
    for key, value in event.items():
        if not key.endswith("Attributes") or not isinstance(value, dict):
            continue
        if "activityType" in value:
            return f"{kind} {value['activityType'].get('name', '')}"
        if "signalName" in value:
            return f"{kind} {value['signalName']}"
        if "workflowType" in value:
            return f"{kind} {value['workflowType'].get('name', '')}"
        if "startToFireTimeout" in value:
            return f"{kind} {value['startToFireTimeout']}"
    return str(kind)


async def workflow_histories(
    client: Client | None, store: ObjectStore, workflow_id: str
) -> list[tuple[str, dict[str, Any]]]:
    """(run ID, history JSON) of every run of a workflow: archived runs from the store, and
    runs Temporal still has (the open one, or closed ones not archived yet)."""
    runs: dict[str, dict[str, Any]] = {}
    for key in await asyncio.to_thread(
        lambda: list(store.list(f"{HISTORY_PREFIX}/{workflow_id}/"))
    ):
        run_id = key.rsplit("/", 1)[1].removesuffix(".json")
        if "/" not in key.removeprefix(f"{HISTORY_PREFIX}/{workflow_id}/"):
            runs[run_id] = json.loads(await asyncio.to_thread(store.get, key))
    if client is not None:
        try:
            async for run in client.list_workflows(f'WorkflowId = "{workflow_id}"'):
                if run.run_id not in runs:
                    history = await client.get_workflow_handle(
                        workflow_id, run_id=run.run_id
                    ).fetch_history()
                    runs[run.run_id] = json.loads(history.to_json())
        except RPCError:
            pass  # Temporal unreachable: the archive is the record
    return sorted(runs.items(), key=lambda kv: kv[1]["events"][0]["eventTime"])


@dataclass(frozen=True)
class TimelineEvent:
    at: str
    source: str  # "audit" or "workflow"
    what: str
    actor: str
    detail: dict[str, Any]

    def line(self) -> str:
        return f"{self.at}  {self.source:8}  {self.what:40}  {self.actor}"


async def item_timeline(
    session: AsyncSession, client: Client | None, store: ObjectStore, item_id: str
) -> list[TimelineEvent]:
    """An item's audit entries and its workflow events, merged in time order; and the
    publications of its campaign that came after its consensus."""
    item = await session.get(Item, item_id)
    if item is None:
        raise NotFound(f"no item {item_id}")
    entries = (
        await session.scalars(
            select(AuditEntry)
            .where(
                or_(
                    AuditEntry.item_id == item_id,
                    (AuditEntry.campaign_id == item.campaign_id)
                    & AuditEntry.action.in_(["dataset.published", "dataset.rolled_back"]),
                )
            )
            .order_by(AuditEntry.at, AuditEntry.seq)
        )
    ).all()
    events = [
        TimelineEvent(
            at=e.at.isoformat(),
            source="audit",
            what=e.action,
            actor=f"{e.actor_type}:{e.actor_id}",
            detail={**e.details, "seq": e.seq, "run_id": e.run_id},
        )
        for e in entries
    ]
    for run_id, history in await workflow_histories(
        client, store, item_workflow_id(item.campaign_id, item.ordinal)
    ):
        for event in history["events"]:
            events.append(
                TimelineEvent(
                    at=_normalize_time(event["eventTime"]),
                    source="workflow",
                    what=_summarize_event(event),
                    actor="temporal",
                    detail={"run_id": run_id, "event_id": int(event["eventId"])},
                )
            )
    return sorted(events, key=lambda e: (e.at, e.source != "audit"))


def _normalize_time(value: str) -> str:
    """Temporal writes RFC 3339 with nanoseconds and Z; make it comparable with isoformat()."""
    head, _, frac = value.rstrip("Z").partition(".")
    micro = (frac + "000000")[:6]
    return datetime.fromisoformat(f"{head}.{micro}+00:00").isoformat()


# --- tracing a published label -------------------------------------------------------------------


async def trace_label(
    session: AsyncSession, store: ObjectStore, dataset: str, version: int, item_id: str
) -> dict[str, Any]:
    """From a published label back to the answers and the people who gave them."""
    try:
        record = await asyncio.to_thread(read_record, store, dataset, version, item_id)
    except ObjectNotFound:
        raise NotFound(f"no version {version} of dataset {dataset}") from None
    if record is None:
        raise NotFound(f"item {item_id} is not in {dataset} version {version}")
    response_ids = [r["response_id"] for r in record.get("responses", [])]
    responses = {
        r.id: r
        for r in (
            await session.scalars(select(Response).where(Response.id.in_(response_ids)))
        ).all()
    }
    people = {
        p.id: p
        for p in (
            await session.scalars(
                select(Annotator).where(
                    Annotator.id.in_(
                        [r.annotator_id for r in responses.values()]
                        + [record.get("reviewer_id") or ""]
                    )
                )
            )
        ).all()
    }
    consensus = await session.get(Consensus, item_id)
    answers = []
    for rid in response_ids:
        stored = responses.get(rid)
        person = people.get(stored.annotator_id) if stored else None
        answers.append(
            {
                "response_id": rid,
                "annotator_id": stored.annotator_id if stored else None,
                "annotator_name": person.name if person else None,
                "annotator_external_id": person.external_id if person else None,
                "submitted_at": stored.submitted_at.isoformat() if stored else None,
                "answer": stored.body if stored else None,
                "matches_published_record": stored is not None,
            }
        )
    reviewer = people.get(record.get("reviewer_id") or "")
    return {
        "dataset": dataset,
        "version": version,
        "item_id": item_id,
        "label": {"labels": record.get("labels"), "objects": record.get("objects")},
        "method": record.get("method"),
        "agreement": record.get("agreement"),
        "confidence": record.get("confidence"),
        "answers": answers,
        "reviewer": {"id": reviewer.id, "name": reviewer.name} if reviewer else None,
        "workflow": {"workflow_id": record.get("workflow_id"), "run_id": record.get("run_id")},
        "consensus_in_database_matches": consensus is not None
        and sorted(consensus.response_ids) == sorted(response_ids),
    }


# --- verification and export ---------------------------------------------------------------------


async def verify_campaign(
    session: AsyncSession, store: ObjectStore, campaign_id: str
) -> ChainReport:
    """The chain, its anchors, and every archived history whose hash the chain recorded."""
    if await session.get(AuditHead, campaign_id) is None:
        raise NotFound(f"no audit chain for campaign {campaign_id}")
    anchors = await asyncio.to_thread(load_anchors, store, campaign_id)
    report = await verify_chain(session, campaign_id, anchors)
    archived = (
        await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.chain == campaign_id, AuditEntry.action == "history.archived")
            .order_by(AuditEntry.seq)
        )
    ).all()
    for entry in archived:
        key = entry.details["key"]
        try:
            body = await asyncio.to_thread(store.get, key)
        except ObjectNotFound:
            report.problems.append(f"archived history {key} (entry id {entry.id}) is missing")
            continue
        if hashlib.sha256(body).hexdigest() != entry.details["sha256"]:
            report.problems.append(
                f"archived history {key} was changed: its hash differs from entry id {entry.id}"
            )
    return report


async def export_campaign(
    session: AsyncSession, client: Client | None, store: ObjectStore, campaign_id: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The campaign's audit log and its workflows' histories, as JSON Lines rows."""
    entries = [
        entry_json(e)
        for e in (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.chain == campaign_id).order_by(AuditEntry.seq)
            )
        ).all()
    ]
    if not entries:
        raise NotFound(f"no audit log for campaign {campaign_id}")
    workflow_ids = sorted({e["workflow_id"] for e in entries if e["workflow_id"]})
    histories = []
    for wid in workflow_ids:
        for run_id, history in await workflow_histories(client, store, wid):
            histories.append({"workflow_id": wid, "run_id": run_id, "history": history})
    return entries, histories


def jsonl(rows: list[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n"
