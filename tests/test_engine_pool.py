"""The PostgreSQL pool pings a connection only after it sat idle, and still replaces one that
was dropped while idle (what ``pool_pre_ping`` is for), without the caller noticing. On SQLite,
the read engine reads while a writer holds the write lock."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine, create_read_engine
from infra.devstack import PostgresServer


@pytest.fixture
async def make_engine(
    postgres_server: PostgresServer,
) -> AsyncIterator[Callable[..., AsyncEngine]]:
    url = postgres_server.create_database(f"p_{uuid.uuid4().hex[:10]}")
    engines: list[AsyncEngine] = []

    def make(**options: Any) -> AsyncEngine:
        engine = create_engine(url, pool_size=1, max_overflow=0, **options)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.dispose()


def _count_pings(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    original = engine.dialect.do_ping

    def counting(dbapi_connection: Any) -> bool:
        pings.append(1)
        return original(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counting)
    return pings


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT pg_backend_pid()")) or 0)


async def test_a_busy_pool_does_not_ping(
    make_engine: Callable[..., AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(ping_after_idle=10.0)
    pings = _count_pings(engine, monkeypatch)
    for _ in range(5):
        await _backend_pid(engine)
    assert pings == []


async def test_an_idle_connection_is_pinged(
    make_engine: Callable[..., AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(ping_after_idle=0.2)
    pings = _count_pings(engine, monkeypatch)
    first = await _backend_pid(engine)
    await asyncio.sleep(0.3)
    assert await _backend_pid(engine) == first  # pinged, alive, reused
    assert len(pings) == 1


async def test_a_connection_dropped_while_idle_is_replaced(
    make_engine: Callable[..., AsyncEngine],
) -> None:
    engine = make_engine(ping_after_idle=0.2)
    victim = await _backend_pid(engine)
    # A server restart, or a proxy's idle timeout, as far as the pool can tell.
    killer = make_engine(ping_after_idle=0.2)
    async with killer.connect() as conn:
        await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
    await asyncio.sleep(0.3)
    replacement = await _backend_pid(engine)  # no error reaches the caller
    assert replacement not in (0, victim)


async def test_zero_pings_on_every_checkout(
    make_engine: Callable[..., AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(ping_after_idle=0)
    assert engine.pool._pre_ping  # SQLAlchemy's own pool_pre_ping
    pings = _count_pings(engine, monkeypatch)
    for _ in range(3):
        await _backend_pid(engine)
    assert len(pings) >= 2  # every checkout after the first connect


async def test_sqlite_reads_do_not_wait_for_the_writer(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    reads = create_read_engine(engine)
    assert reads is not engine
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        async with engine.begin() as writer:  # BEGIN IMMEDIATE: holds the write lock
            await writer.execute(text("INSERT INTO t VALUES (2)"))
            started = time.monotonic()
            async with reads.begin() as reader:
                assert await reader.scalar(text("SELECT count(*) FROM t")) == 1
            assert time.monotonic() - started < 5  # did not wait for the busy timeout
    finally:
        await reads.dispose()
        await engine.dispose()
    assert create_read_engine(engine) is not engine


async def test_postgres_reads_share_the_engine(make_engine: Callable[..., AsyncEngine]) -> None:
    engine = make_engine()
    assert create_read_engine(engine) is engine
