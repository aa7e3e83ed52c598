"""the append-only, hash-chained audit log

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("chain", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=48), nullable=False),
        sa.Column("campaign_id", sa.String(length=40), nullable=True),
        sa.Column("item_id", sa.String(length=64), nullable=True),
        sa.Column("workflow_id", sa.String(length=200), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entries")),
        sa.UniqueConstraint("chain", "seq", name=op.f("uq_audit_entries_chain_seq")),
    )
    op.create_index("ix_audit_entries_item", "audit_entries", ["item_id", "at"])
    op.create_table(
        "audit_heads",
        sa.Column("chain", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("anchored_seq", sa.Integer(), nullable=False),
        sa.Column("anchored_key", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("chain", name=op.f("pk_audit_heads")),
    )
    # The global chain exists from the start, so concurrent first appends never race to
    # create it.
    op.execute(
        "INSERT INTO audit_heads (chain, seq, hash, anchored_seq) "
        "VALUES ('global', 0, '" + "0" * 64 + "', 0)"
    )


def downgrade() -> None:
    op.drop_table("audit_heads")
    op.drop_index("ix_audit_entries_item", table_name="audit_entries")
    op.drop_table("audit_entries")
