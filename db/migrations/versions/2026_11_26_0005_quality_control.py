"""quality control: gold items, adaptive slots, voided answers, annotator quality, prelabels

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("slots_wanted", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("kind", sa.String(length=8), nullable=False, server_default="image")
        )
        batch.add_column(sa.Column("gold_answer", sa.JSON(), nullable=True))
    # Items of campaigns launched before adaptive redundancy ask for the campaign's fixed k.
    op.execute(
        "UPDATE items SET slots_wanted = (SELECT annotators_per_image FROM campaigns "
        "WHERE campaigns.id = items.campaign_id)"
    )
    with op.batch_alter_table("responses") as batch:
        batch.add_column(sa.Column("gold_score", sa.Float(), nullable=True))
        batch.add_column(sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("void_reason", sa.Text(), nullable=True))
    op.create_table(
        "annotator_quality",
        sa.Column("campaign_id", sa.String(length=40), nullable=False),
        sa.Column("annotator_id", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("gold_answers", sa.Integer(), nullable=False),
        sa.Column("gold_score_sum", sa.Float(), nullable=False),
        sa.Column("answers", sa.Integer(), nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("weight", sa.Float(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("settled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_annotator_quality_campaign_id_campaigns"),
        ),
        sa.PrimaryKeyConstraint("campaign_id", "annotator_id", name=op.f("pk_annotator_quality")),
    )
    op.create_table(
        "prelabels",
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", sa.String(length=40), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("uncertainty", sa.Float(), nullable=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name=op.f("fk_prelabels_item_id_items")),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_prelabels_campaign_id_campaigns")
        ),
        sa.PrimaryKeyConstraint("item_id", name=op.f("pk_prelabels")),
    )
    with op.batch_alter_table("prelabels") as batch:
        batch.create_index(batch.f("ix_prelabels_campaign_id"), ["campaign_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("prelabels") as batch:
        batch.drop_index(batch.f("ix_prelabels_campaign_id"))
    op.drop_table("prelabels")
    op.drop_table("annotator_quality")
    with op.batch_alter_table("responses") as batch:
        batch.drop_column("void_reason")
        batch.drop_column("voided_at")
        batch.drop_column("gold_score")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("gold_answer")
        batch.drop_column("kind")
        batch.drop_column("slots_wanted")
