"""a per-campaign secret, never shown to annotators, for the gold schedule and order

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Left empty for existing campaigns: they keep the schedule they started with (salted with
    # their creation time), so no annotator's gold tasks move in the middle of a campaign.
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("secret", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("secret")
