"""a counter of each annotator's leases per campaign, for the gold schedule

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("annotator_progress") as batch:
        batch.add_column(sa.Column("leased", sa.Integer(), nullable=False, server_default="0"))
    # Rebuild the counters from the record: everyone who was ever leased a task has a row.
    op.execute("DELETE FROM annotator_progress")
    op.execute(
        "INSERT INTO annotator_progress (campaign_id, annotator_id, answered, leased) "
        "SELECT a.campaign_id, a.annotator_id, "
        "(SELECT COUNT(*) FROM responses r "
        "WHERE r.campaign_id = a.campaign_id AND r.annotator_id = a.annotator_id), "
        "COUNT(*) FROM assignments a GROUP BY a.campaign_id, a.annotator_id"
    )


def downgrade() -> None:
    with op.batch_alter_table("annotator_progress") as batch:
        batch.drop_column("leased")
