"""Engines and sessions for PostgreSQL (asyncpg) and SQLite (aiosqlite).

SQLite has no ``SELECT ... FOR UPDATE SKIP LOCKED``; instead every SQLite transaction starts
with ``BEGIN IMMEDIATE``, which takes the database write lock up front. Claims are then
serialized, which gives the same guarantee (no two annotators get one slot) at embedded scale.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def create_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = 10,
    max_overflow: int | None = None,
    pool_timeout: float = 30.0,
    ping_after_idle: float = 10.0,
    read_only: bool = False,
) -> AsyncEngine:
    """An engine for ``url``. ``read_only`` engines are refused writes by the database
    itself (the auditor's): SQLite opens the file with mode=ro, PostgreSQL runs every
    transaction READ ONLY.

    The pool settings apply to PostgreSQL: ``pool_size`` connections stay open, up to
    ``max_overflow`` more (default: ``pool_size``) open under load, and a checkout waits at
    most ``pool_timeout`` seconds before raising ``sqlalchemy.exc.TimeoutError`` (the API
    answers 503). A connection that sat idle in the pool for ``ping_after_idle`` seconds is
    pinged before use (0: every checkout, SQLAlchemy's ``pool_pre_ping``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if read_only:
            path = Path(parsed.database or "").resolve()
            engine = create_async_engine(
                f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true",
                echo=echo,
                connect_args={"timeout": 60},
            )
            _take_over_transactions(engine, begin="BEGIN")
            return engine
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 60})
        _take_over_transactions(engine, begin="BEGIN IMMEDIATE")
        return engine
    engine = create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_timeout=pool_timeout,
        pool_pre_ping=ping_after_idle <= 0,
        execution_options={"postgresql_readonly": True} if read_only else {},
    )
    if ping_after_idle > 0:
        _ping_idle_connections(engine, ping_after_idle)
    return engine


_IDLE_SINCE = "quorum_idle_since"


def _ping_idle_connections(engine: AsyncEngine, after: float) -> None:
    """Ping a pooled connection before use only if it sat idle for ``after`` seconds.

    ``pool_pre_ping`` pings on every checkout, and with asyncpg a ping is three round trips
    (BEGIN, a statement, ROLLBACK): under load that was a third of the round trips of an API
    request, which checks out twice. The connections a ping exists for are idle ones: dropped
    by a server restart, or by an idle timeout in a proxy or firewall. One that fails while in
    use makes SQLAlchemy invalidate the whole pool, and its caller retries (Temporal retries
    activities; clients retry requests, with their idempotency keys).
    """
    dialect = engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)  # None: a connection opened just now
        if since is None or time.monotonic() - since < after:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError("the connection was dropped while idle") from exc


def create_read_engine(engine: AsyncEngine) -> AsyncEngine:
    """An engine for short reads beside ``engine`` (looking up who sent a request).

    On SQLite every transaction of ``engine`` begins IMMEDIATE and so takes the database's one
    write lock, even one that only reads; this engine's transactions begin DEFERRED, and in WAL
    mode a reader neither waits for the writer nor holds it up. Other databases need no such
    thing: ``engine`` itself is returned. Only for transactions that never write.
    """
    if not is_sqlite(engine):
        return engine
    reads = create_async_engine(engine.url, echo=engine.echo, connect_args={"timeout": 60})
    _take_over_transactions(reads, begin="BEGIN DEFERRED")
    return reads


def _take_over_transactions(engine: AsyncEngine, *, begin: str) -> None:
    # The recipe from SQLAlchemy's aiosqlite docs: turn off the driver's own transaction
    # handling, then begin every transaction ourselves.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if begin == "BEGIN":  # read-only: no journal changes
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()
            return
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"
