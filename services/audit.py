"""Appending to and verifying the tamper-evident audit log.

An entry is appended in the same transaction as the state change it records, so the log and
the state can never disagree: both commit or neither does. (A refused request rolls back its
transaction; its refusal is then logged in a transaction of its own.)

The hash of an entry is SHA-256 over the canonical JSON (sorted keys, no spaces, UTF-8) of its
chain, seq, time, actor, action, campaign, item, workflow and run IDs, details, and the previous
entry's hash. ``verify_chain`` recomputes every hash, checks that sequence numbers have no gaps,
that the chain ends at the recorded head, and that every anchor written to the object store
still matches: a rewrite of the database that also recomputes the hashes is caught there.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from db.audit_models import GENESIS_HASH, GLOBAL_CHAIN, AuditEntry, AuditHead
from db.models import utcnow
from storage import ObjectStore

ActorType = Literal["operator", "annotator", "expert", "auditor", "system"]
SYSTEM_ACTOR: tuple[ActorType, str] = ("system", "quorum")
ANCHOR_PREFIX = "audit/anchors"
HISTORY_PREFIX = "audit/histories"


def history_key(workflow_id: str, run_id: str) -> str:
    """Where a closed run's history is kept: write-once, by workflow ID and run ID."""
    return f"{HISTORY_PREFIX}/{workflow_id}/{run_id}.json"


def campaign_of_workflow(workflow_id: str) -> str | None:
    """The campaign a workflow belongs to (``campaign/<id>`` or ``campaign/<id>/item/<n>``)."""
    parts = workflow_id.split("/")
    return parts[1] if len(parts) >= 2 and parts[0] == "campaign" else None


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(
    *,
    chain: str,
    seq: int,
    at: datetime,
    actor_type: str,
    actor_id: str,
    action: str,
    campaign_id: str | None,
    item_id: str | None,
    workflow_id: str | None,
    run_id: str | None,
    details: dict[str, Any],
    prev_hash: str,
) -> str:
    body = {
        "chain": chain,
        "seq": seq,
        "at": at.isoformat(timespec="microseconds"),
        "actor": [actor_type, actor_id],
        "action": action,
        "campaign_id": campaign_id,
        "item_id": item_id,
        "workflow_id": workflow_id,
        "run_id": run_id,
        "details": details,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical(body)).hexdigest()


def hash_of(entry: AuditEntry) -> str:
    return entry_hash(
        chain=entry.chain,
        seq=entry.seq,
        at=entry.at,
        actor_type=entry.actor_type,
        actor_id=entry.actor_id,
        action=entry.action,
        campaign_id=entry.campaign_id,
        item_id=entry.item_id,
        workflow_id=entry.workflow_id,
        run_id=entry.run_id,
        details=entry.details,
        prev_hash=entry.prev_hash,
    )


async def start_chain(session: AsyncSession, chain: str) -> None:
    """Create a chain's head; call it in the transaction that creates the campaign."""
    if await session.get(AuditHead, chain) is None:
        session.add(AuditHead(chain=chain, seq=0, hash=GENESIS_HASH, anchored_seq=0))
        await session.flush()


# session.info keys: the heads this session locked (and the transaction that holds the
# locks), and the entries waiting for their transaction's commit.
_LOCKED_HEADS = "quorum.audit.locked_heads"
_PENDING = "quorum.audit.pending"


async def _locked_head(session: AsyncSession, chain: str) -> AuditHead:
    """The chain's head, locked (``FOR UPDATE``) until the transaction ends; taken once per
    transaction (not inside a savepoint, whose rollback may drop the lock)."""
    nested = session.in_nested_transaction()
    held: tuple[Any, dict[str, AuditHead]] | None = session.info.get(_LOCKED_HEADS)
    if not nested and held is not None and held[0] is session.sync_session.get_transaction():
        head = held[1].get(chain)
        if head is not None:
            return head
    head = await session.scalar(select(AuditHead).where(AuditHead.chain == chain).with_for_update())
    if head is None:
        await start_chain(session, chain)
        head = await session.scalar(
            select(AuditHead).where(AuditHead.chain == chain).with_for_update()
        )
        assert head is not None
    if not nested:
        _remember_lock(session.sync_session, chain, head)
    return head


def _remember_lock(session: Session, chain: str, head: AuditHead) -> None:
    transaction = session.get_transaction()
    held: tuple[Any, dict[str, AuditHead]] | None = session.info.get(_LOCKED_HEADS)
    if held is None or held[0] is not transaction:
        held = (transaction, {})
        session.info[_LOCKED_HEADS] = held
    held[1][chain] = head


def _chain_entry(entry: AuditEntry, head: AuditHead, at: datetime | None) -> None:
    """Give ``entry`` its place after ``head`` (locked) and move the head to it."""
    entry.at = at or utcnow()
    entry.seq, entry.prev_hash = head.seq + 1, head.hash
    entry.hash = hash_of(entry)
    head.seq, head.hash = entry.seq, entry.hash


async def append(
    session: AsyncSession,
    *,
    action: str,
    actor: tuple[ActorType, str],
    campaign_id: str | None = None,
    item_id: str | None = None,
    workflow_id: str | None = None,
    run_id: str | None = None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry to its campaign's chain (or the global one), in the caller's
    transaction.

    The entry takes its place in the chain when the transaction commits: the head row is
    locked then, every entry of the transaction is chained (in the order appended) and
    written, and the commit follows. The head's lock orders concurrent appends, and is held
    for those last few statements only, however long the transaction ran before; with one
    chain per campaign, that lock is what every claim and answer of a campaign queues for.
    Until the commit, ``seq``, ``hash`` and (unless given) ``at`` are unset. Inside a savepoint
    the entry is chained at once instead, under the same lock.
    """
    entry = AuditEntry(
        chain=campaign_id or GLOBAL_CHAIN,
        actor_type=actor[0],
        actor_id=actor[1],
        action=action,
        campaign_id=campaign_id,
        item_id=item_id,
        workflow_id=workflow_id,
        run_id=run_id,
        # Store exactly what is hashed: the details after a JSON round trip.
        details=json.loads(canonical(details or {})),
    )
    if session.in_nested_transaction():
        _chain_entry(entry, await _locked_head(session, entry.chain), at)
        session.add(entry)
        return entry
    if session.sync_session.get_transaction() is None:
        await session.connection()  # begin the transaction that will carry the entry
    pending: list[tuple[Any, AuditEntry, datetime | None]]
    pending = session.info.setdefault(_PENDING, [])
    pending.append((session.sync_session.get_transaction(), entry, at))
    return entry


@event.listens_for(Session, "before_commit")
def _chain_pending_entries(session: Session) -> None:
    """Lock the heads of the chains this transaction appended to (in chain order, so two
    transactions never wait for each other in a cycle), chain the entries, add them; the
    commit's flush writes them. Entries of an earlier, rolled-back transaction are dropped."""
    pending: list[tuple[Any, AuditEntry, datetime | None]] | None = session.info.pop(_PENDING, None)
    transaction = session.get_transaction()
    mine = [(entry, at) for owner, entry, at in pending or () if owner is transaction]
    if not mine:
        return
    held: tuple[Any, dict[str, AuditHead]] | None = session.info.get(_LOCKED_HEADS)
    locked = held[1] if held is not None and held[0] is transaction else {}
    for chain in sorted({entry.chain for entry, _ in mine}):
        head = locked.get(chain)
        if head is None:
            head = _lock_head_now(session, chain)
        for entry, at in mine:
            if entry.chain == chain:
                _chain_entry(entry, head, at)
                session.add(entry)


def _lock_head_now(session: Session, chain: str) -> AuditHead:
    query = select(AuditHead).where(AuditHead.chain == chain).with_for_update()
    head = session.scalars(query).first()
    if head is None:
        session.add(AuditHead(chain=chain, seq=0, hash=GENESIS_HASH, anchored_seq=0))
        session.flush()
        head = session.scalars(query).one()
    _remember_lock(session, chain, head)
    return head


@dataclass
class ChainReport:
    chain: str
    entries: int = 0
    anchors: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> str | None:
        return self.problems[0] if self.problems else None


async def verify_chain(
    session: AsyncSession, chain: str, anchors: list[dict[str, Any]]
) -> ChainReport:
    """Check every link of a chain and every anchor; problems are listed in chain order."""
    report = ChainReport(chain=chain, anchors=len(anchors))
    head = await session.get(AuditHead, chain)
    entries = (
        await session.scalars(
            select(AuditEntry).where(AuditEntry.chain == chain).order_by(AuditEntry.seq)
        )
    ).all()
    report.entries = len(entries)
    by_seq = {e.seq: e for e in entries}
    expected_prev = GENESIS_HASH
    expected_seq = 1
    for entry in entries:
        if entry.seq != expected_seq:
            missing = ", ".join(str(s) for s in range(expected_seq, entry.seq))
            report.problems.append(
                f"entries seq {missing} are missing before entry id {entry.id} (deleted)"
            )
            expected_prev = entry.prev_hash  # keep checking the rest of the chain
        if entry.prev_hash != expected_prev:
            report.problems.append(
                f"entry id {entry.id} (seq {entry.seq}, {entry.action}) does not follow the "
                f"entry before it: its previous-hash was changed or an entry was replaced"
            )
        if hash_of(entry) != entry.hash:
            report.problems.append(
                f"entry id {entry.id} (seq {entry.seq}, {entry.action}, actor "
                f"{entry.actor_type}:{entry.actor_id}) was changed after it was written: "
                f"its contents no longer match its hash"
            )
        expected_prev = entry.hash
        expected_seq = entry.seq + 1
    last_seq = entries[-1].seq if entries else 0
    if head is None:
        if entries:
            report.problems.append(f"the head of chain {chain} is missing")
    elif head.seq != last_seq or head.hash != (entries[-1].hash if entries else GENESIS_HASH):
        report.problems.append(
            f"the chain ends at seq {last_seq} but its head says seq {head.seq}: "
            f"entries after seq {last_seq} were deleted, or the head was rewritten"
        )
    for anchor in sorted(anchors, key=lambda a: int(a["seq"])):
        anchored = by_seq.get(int(anchor["seq"]))
        if anchored is None:
            report.problems.append(
                f"anchor at seq {anchor['seq']} names an entry that no longer exists"
            )
        elif anchored.hash != anchor["hash"]:
            report.problems.append(
                f"anchor at seq {anchor['seq']} does not match entry id {anchored.id}: the "
                f"log was rewritten after it was anchored"
            )
    return report


def anchor_key(chain: str, seq: int) -> str:
    return f"{ANCHOR_PREFIX}/{chain}/{seq:012d}.json"


def load_anchors(store: ObjectStore, chain: str) -> list[dict[str, Any]]:
    return [json.loads(store.get(key)) for key in store.list(f"{ANCHOR_PREFIX}/{chain}/")]


async def write_anchors(session: AsyncSession, store: ObjectStore) -> list[str]:
    """Write the head of every chain that grew since its last anchor, write-once.

    An anchor outlives the database: whoever can rewrite the database cannot rewrite an
    object that was created write-once (and, on a versioned bucket, kept in its history).
    """
    written = []
    heads = (
        await session.scalars(
            select(AuditHead).where(AuditHead.seq > AuditHead.anchored_seq).with_for_update()
        )
    ).all()
    for head in heads:
        key = anchor_key(head.chain, head.seq)
        body = canonical(
            {"chain": head.chain, "seq": head.seq, "hash": head.hash, "at": utcnow().isoformat()}
        )
        await asyncio.to_thread(store.create, key, body)  # False: an earlier try wrote it
        head.anchored_seq, head.anchored_key = head.seq, key
        written.append(key)
    return written
