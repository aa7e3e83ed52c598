"""The Alembic history builds exactly the schema the models describe, on both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from db.engine import create_engine
from db.migrate import upgrade_database
from db.models import Base
from infra.devstack import PostgresServer


def _database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A new, empty database on ``backend``."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"m_{uuid.uuid4().hex[:10]}")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_migrations_match_the_models(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _database_url(backend, tmp_path, request)
    await upgrade_database(url)
    await upgrade_database(url)  # a second run is a no-op

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
            )
    finally:
        await engine.dispose()
    assert diff == []


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_the_annotator_counters_are_backfilled_from_the_record(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Campaigns under way when 0007 and 0008 arrive keep their annotators' answer and lease
    counts (the gold schedule and the task page read them)."""
    url = _database_url(backend, tmp_path, request)
    await upgrade_database(url, "0006")
    now = "2026-11-26 12:00:00+00:00"
    rows = [
        "INSERT INTO annotators (id, name, role, status, max_concurrent, skills, token_hash,"
        f" created_at) VALUES ('ann_a', 'a', 'annotator', 'active', 1, '[]', 'ha', '{now}'),"
        f" ('ann_b', 'b', 'annotator', 'active', 1, '[]', 'hb', '{now}')",
        "INSERT INTO campaigns (id, name, dataset, spec, status, annotators_per_image,"
        ' agreement_threshold, lease_timeout_s, review_timeout_s, "window", item_count,'
        " created_by,"
        f" created_at, updated_at) VALUES ('cmp', 'c', 'd', '{{}}', 'running', 2, 0.5, 60, 60,"
        f" 10, 3, 'op', '{now}', '{now}')",
        "INSERT INTO items (id, campaign_id, ordinal, uri, status, slots_taken) VALUES"
        " ('cmp-0', 'cmp', 0, 'u0', 'open', 2), ('cmp-1', 'cmp', 1, 'u1', 'open', 1),"
        " ('cmp-2', 'cmp', 2, 'u2', 'open', 1)",
        # a: three leases, two answered; b: one lease, unanswered.
        "INSERT INTO assignments (id, campaign_id, item_id, annotator_id, state, leased_at,"
        f" lease_expires_at) VALUES ('s1', 'cmp', 'cmp-0', 'ann_a', 'submitted', '{now}',"
        f" '{now}'), ('s2', 'cmp', 'cmp-1', 'ann_a', 'submitted', '{now}', '{now}'),"
        f" ('s3', 'cmp', 'cmp-2', 'ann_a', 'leased', '{now}', '{now}'),"
        f" ('s4', 'cmp', 'cmp-0', 'ann_b', 'leased', '{now}', '{now}')",
        "INSERT INTO responses (id, assignment_id, campaign_id, item_id, annotator_id,"
        " idempotency_key, body, late, submitted_at) VALUES"
        f" ('r1', 's1', 'cmp', 'cmp-0', 'ann_a', 'k1', '{{}}', false, '{now}'),"
        f" ('r2', 's2', 'cmp', 'cmp-1', 'ann_a', 'k2', '{{}}', false, '{now}')",
    ]
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for sql in rows:
                await conn.exec_driver_sql(sql)
        await upgrade_database(url)
        async with engine.connect() as conn:
            counters = (
                await conn.exec_driver_sql(
                    "SELECT annotator_id, answered, leased FROM annotator_progress"
                    " ORDER BY annotator_id"
                )
            ).all()
    finally:
        await engine.dispose()
    assert [tuple(r) for r in counters] == [("ann_a", 2, 3), ("ann_b", 0, 1)]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_adaptive_campaigns_from_before_the_re_check_keep_their_rules(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """0010 writes the rules an adaptive campaign started with (futility stop on, no re-check)
    into specs that predate those fields, and leaves every other spec as it was."""
    url = _database_url(backend, tmp_path, request)
    await upgrade_database(url, "0009")
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    old = {"min_annotators": 2, "max_annotators": 5, "target_confidence": 0.95}
    new = {**old, "stop_when_futile": False, "reopen_below_target": True}
    specs = {
        "old": {"name": "o", "redundancy": old},
        "new": {"name": "n", "redundancy": new},
        "fixed": {"name": "f", "annotators_per_image": 3},
    }
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for cid, spec in specs.items():
                await conn.execute(
                    sa.text(
                        "INSERT INTO campaigns (id, name, dataset, spec, status,"
                        " annotators_per_image, agreement_threshold, lease_timeout_s,"
                        ' review_timeout_s, "window", item_count, created_by, created_at,'
                        " updated_at) VALUES (:id, 'c', 'd', :spec, 'running', 2, 0.5, 60, 60,"
                        " 10, 3, 'op', :now, :now)"
                    ).bindparams(sa.bindparam("spec", type_=sa.JSON)),
                    {"id": cid, "spec": spec, "now": now},
                )
        await upgrade_database(url)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(sa.column("id"), sa.column("spec", sa.JSON)).select_from(
                        sa.table("campaigns")
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    after = {cid: spec for cid, spec in rows}
    assert after["old"]["redundancy"] == {
        **old,
        "stop_when_futile": True,
        "reopen_below_target": False,
    }
    assert after["new"] == specs["new"] and after["fixed"] == specs["fixed"]
