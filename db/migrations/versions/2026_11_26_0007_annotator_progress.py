"""a counter of each annotator's answers per campaign, instead of a count per claim

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "annotator_progress",
        sa.Column("campaign_id", sa.String(length=40), nullable=False),
        sa.Column("annotator_id", sa.String(length=40), nullable=False),
        sa.Column("answered", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_annotator_progress_campaign_id_campaigns"),
        ),
        sa.ForeignKeyConstraint(
            ["annotator_id"],
            ["annotators.id"],
            name=op.f("fk_annotator_progress_annotator_id_annotators"),
        ),
        sa.PrimaryKeyConstraint("campaign_id", "annotator_id", name=op.f("pk_annotator_progress")),
    )
    # Campaigns already under way keep their annotators' counts.
    op.execute(
        "INSERT INTO annotator_progress (campaign_id, annotator_id, answered) "
        "SELECT campaign_id, annotator_id, COUNT(*) FROM responses "
        "GROUP BY campaign_id, annotator_id"
    )


def downgrade() -> None:
    op.drop_table("annotator_progress")
