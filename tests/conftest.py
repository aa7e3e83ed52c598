"""Shared pytest fixtures.

The first section starts real servers (Temporal dev server, PostgreSQL, MinIO) from
``infra.devstack``: each is session-scoped and lazy, so a server only starts when some test
asks for it, once per session, on free ports in a throwaway directory, and is stopped at the end.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine
from db.migrate import upgrade_database
from infra.devstack import MinioServer, PostgresServer, TemporalDevServer, free_port

# --------------------------------------------------------------------------------------------
# Real servers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalDevServer]:
    """A Temporal dev server (namespace ``default``, no web UI) for the whole session."""
    server = TemporalDevServer(
        tmp_path_factory.mktemp("temporal"), port=free_port(), ui_port=free_port(), headless=True
    )
    with server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server (fsync off) for the whole session; ``create_database`` per test."""
    # Not tmp_path_factory: when the tests run as root, PostgreSQL runs as the `postgres` user,
    # which cannot enter pytest's private /tmp/pytest-of-root. A directory directly under the
    # system temp dir is reachable once it is handed over to that user.
    data_dir = Path(tempfile.mkdtemp(prefix="quorum-pg-"))
    try:
        with PostgresServer(data_dir, port=free_port(), durable=False) as server:
            yield server
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def minio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioServer]:
    """A MinIO server (no console) for the whole session; ``ensure_bucket`` per test."""
    with MinioServer(tmp_path_factory.mktemp("minio"), port=free_port()) as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
async def migrated_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh database with every migration applied: an SQLite file, then a
    PostgreSQL database (the same test runs on both)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"t_{uuid.uuid4().hex[:10]}")
    await upgrade_database(url)
    engine = create_engine(url)
    yield engine
    await engine.dispose()
