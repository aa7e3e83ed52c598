"""adaptive campaigns created before the re-check keep the rules they started with

``redundancy.stop_when_futile`` (default off) and ``redundancy.reopen_below_target`` (default
on) arrived after the first adaptive campaigns. Such a campaign stopped futile images and never
re-checked stopped ones; without the fields in its spec, an upgrade would switch both mid-flight.
This writes the old behaviour into those specs, explicitly.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

campaigns = sa.table("campaigns", sa.column("id", sa.String), sa.column("spec", sa.JSON))
BEFORE = {"stop_when_futile": True, "reopen_below_target": False}


def upgrade() -> None:
    bind = op.get_bind()
    for campaign_id, spec in bind.execute(sa.select(campaigns.c.id, campaigns.c.spec)).all():
        redundancy = (spec or {}).get("redundancy")
        if not redundancy or all(key in redundancy for key in BEFORE):
            continue
        spec = {**spec, "redundancy": {**BEFORE, **redundancy}}
        bind.execute(campaigns.update().where(campaigns.c.id == campaign_id).values(spec=spec))


def downgrade() -> None:
    """The fields stay: the code before 0010 ignores them."""
