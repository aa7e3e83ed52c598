"""Engines and sessions for PostgreSQL (asyncpg) and SQLite (aiosqlite).

SQLite has no ``SELECT ... FOR UPDATE SKIP LOCKED``; instead every SQLite transaction starts
with ``BEGIN IMMEDIATE``, which takes the database write lock up front. Claims are then
serialized, which gives the same guarantee (no two annotators get one slot) at embedded scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
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
    read_only: bool = False,
) -> AsyncEngine:
    """An engine for ``url``. ``read_only`` engines are refused writes by the database
    itself (the auditor's): SQLite opens the file with mode=ro, PostgreSQL runs every
    transaction READ ONLY.

    The pool settings apply to PostgreSQL: ``pool_size`` connections stay open, up to
    ``max_overflow`` more (default: ``pool_size``) open under load, and a checkout waits at
    most ``pool_timeout`` seconds before raising ``sqlalchemy.exc.TimeoutError`` (the API
    answers 503)."""
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
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
        execution_options={"postgresql_readonly": True} if read_only else {},
    )


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
