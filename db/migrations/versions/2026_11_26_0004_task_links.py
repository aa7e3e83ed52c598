"""task links, and the skills a campaign requires

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

(Planned as 0003 on 0002; the audit log took 0003 first, so this one follows it.)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(
            sa.Column("required_skills", sa.JSON(), nullable=False, server_default="[]")
        )
    op.create_table(
        "task_links",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("person_id", sa.String(length=40), nullable=False),
        sa.Column("campaign_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=True),
        sa.Column("issued_by", sa.String(length=128), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"], ["annotators.id"], name=op.f("fk_task_links_person_id_annotators")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_task_links_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name=op.f("fk_task_links_item_id_items")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_links")),
    )
    with op.batch_alter_table("task_links") as batch:
        batch.create_index(batch.f("ix_task_links_person_id"), ["person_id"], unique=False)
        batch.create_index(batch.f("ix_task_links_campaign_id"), ["campaign_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("task_links") as batch:
        batch.drop_index(batch.f("ix_task_links_campaign_id"))
        batch.drop_index(batch.f("ix_task_links_person_id"))
    op.drop_table("task_links")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("required_skills")
