"""The append-only audit log: one hash chain per campaign (and one for everything else).

Each entry's hash covers its contents and the previous entry's hash, so changing or deleting
any row breaks the chain from that row on. ``audit_heads`` holds each chain's last sequence
number and hash; appending locks that row, which orders the entries of a chain.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base

GLOBAL_CHAIN = "global"
GENESIS_HASH = "0" * 64


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    __table_args__ = (
        UniqueConstraint("chain", "seq"),
        Index("ix_audit_entries_item", "item_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    chain: Mapped[str] = mapped_column(String(64))  # a campaign ID, or "global"
    seq: Mapped[int]
    at: Mapped[datetime]
    actor_type: Mapped[str] = mapped_column(String(16))  # operator, annotator, expert, system
    actor_id: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(48))
    campaign_id: Mapped[str | None] = mapped_column(String(40))
    item_id: Mapped[str | None] = mapped_column(String(64))
    workflow_id: Mapped[str | None] = mapped_column(String(200))
    run_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    __tablename__ = "audit_heads"

    chain: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int]
    hash: Mapped[str] = mapped_column(String(64))
    anchored_seq: Mapped[int] = mapped_column(default=0)
    anchored_key: Mapped[str | None] = mapped_column(Text)
