"""The Alembic history builds exactly the schema the models describe, on both databases."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from db.engine import create_engine
from db.migrate import upgrade_database
from db.models import Base
from infra.devstack import PostgresServer


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_migrations_match_the_models(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"m_{uuid.uuid4().hex[:10]}")
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
