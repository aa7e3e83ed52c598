"""Counting database work by where it came from: statements, transactions, pool checkouts.

``install()`` listens on every SQLAlchemy engine and pool of the process (class-level events),
so the product code runs unchanged. Each event is charged to the current *scope*: an API route
(set by ``route_scope``, an ASGI wrapper), a Temporal activity (read from the activity context,
which SQLAlchemy's greenlets inherit), or ``other``. Statements are grouped by *kind*: verb,
table and the clauses that cost (``FOR UPDATE``, ``RETURNING``), e.g.
``SELECT audit_heads FOR UPDATE``.

``python -m bench.sql_counter worker`` runs ``quorum worker`` with counting on and writes the
counts to ``$QUORUM_BENCH_SQL_COUNTS/worker-<pid>.json`` when the worker stops.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

# The charges of the HTTP request being served, moved to its route when it ends.
_REQUEST: ContextVar[Charges | None] = ContextVar("quorum_bench_request", default=None)
_ID = re.compile(r"/[a-z]+_[0-9a-f]{6,}(-\d+)?")
CONTROL = frozenset({"BEGIN", "COMMIT", "ROLLBACK", "PRAGMA", "SAVEPOINT", "RELEASE"})
_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+\"?(\w+)", re.I)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class Charges(Counter[str]):
    """What one request did: counts, and the order it did it in."""

    def __init__(self) -> None:
        super().__init__()
        self.sequence: list[str] = []


def _step(what: str) -> str | None:
    """How a charge reads in an example sequence (None: not a step of its own)."""
    if what.startswith("sql: "):
        return what[5:]
    return {
        "transactions": "(begin)",
        "commits": "(commit)",
        "rollbacks": "(rollback)",
        "pool_checkouts": "(checkout)",
        "pings": "(ping)",
    }.get(what)


class Counts:
    def __init__(self) -> None:
        self.by_scope: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.requests: Counter[str] = Counter()
        # The steps of the first request of each route, and of the first run of each
        # activity: what a reader compares with the code.
        self.examples: dict[str, list[str]] = {}
        self._example_run: dict[str, str] = {}

    def charge(self, what: str, n: int = 1) -> None:
        step = _step(what)
        request = _REQUEST.get()
        if request is not None:
            request[what] += n
            if step is not None:
                request.sequence.append(step)
            return
        scope = current_scope()
        self.by_scope[scope][what] += n
        if step is not None and scope.startswith("activity "):
            from temporalio import activity

            info = activity.info()
            run = f"{info.workflow_run_id}/{info.activity_id}"
            if self._example_run.setdefault(scope, run) == run:
                self.examples.setdefault(scope, []).append(step)

    def finish_request(self, route: str, charges: Charges) -> None:
        self.by_scope[route].update(charges)
        self.requests[route] += 1
        self.examples.setdefault(route, charges.sequence)

    def clear(self) -> None:
        self.by_scope.clear()
        self.requests.clear()
        self.examples.clear()
        self._example_run.clear()

    def snapshot(self) -> dict[str, Any]:
        return {
            "by_scope": {s: dict(c) for s, c in sorted(self.by_scope.items())},
            "requests": dict(self.requests),
            "examples": dict(sorted(self.examples.items())),
        }


COUNTS = Counts()


def current_scope() -> str:
    from temporalio import activity

    if activity.in_activity():
        return f"activity {activity.info().activity_type}"
    return "other"


def statement_kind(sql: str) -> str:
    text = " ".join(sql.split())
    verb = text.split(" ", 1)[0].upper()
    if verb in CONTROL:
        return verb
    match = _TABLE.search(text)
    kind = f"{verb} {match.group(1) if match else '?'}"
    upper = text.upper()
    if "FOR UPDATE" in upper:
        kind += " FOR UPDATE"
    if " RETURNING " in upper and verb in {"UPDATE", "DELETE"}:
        kind += " RETURNING"
    return kind


_installed = False


def install() -> Counts:
    """Count every statement, transaction and checkout in this process from now on."""
    global _installed
    if _installed:
        return COUNTS
    _installed = True

    def on_execute(*args: Any) -> None:
        statement, executemany = args[2], args[5]
        kind = statement_kind(statement)
        COUNTS.charge(f"sql: {kind}")
        # SQLite's BEGIN IMMEDIATE is a statement, PostgreSQL's BEGIN is not: count neither,
        # so the two databases compare (transactions are counted on their own).
        if kind not in CONTROL:
            COUNTS.charge("statements")
        if executemany:
            COUNTS.charge("executemany")

    # A liveness ping is no statement, but it is a round trip (three with asyncpg: BEGIN, a
    # ping, ROLLBACK): count them, whoever asks for them (pool_pre_ping, or db.engine).
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
    from sqlalchemy.engine.default import DefaultDialect

    for dialect in (DefaultDialect, PGDialect_asyncpg):
        original = dialect.do_ping

        def counting(self: Any, dbapi_connection: Any, _ping: Any = original) -> bool:
            COUNTS.charge("pings")
            return bool(_ping(self, dbapi_connection))

        dialect.do_ping = counting  # type: ignore[method-assign]

    event.listen(Engine, "before_cursor_execute", on_execute)
    event.listen(Engine, "begin", lambda _conn: COUNTS.charge("transactions"))
    event.listen(Engine, "commit", lambda _conn: COUNTS.charge("commits"))
    event.listen(Engine, "rollback", lambda _conn: COUNTS.charge("rollbacks"))
    event.listen(Pool, "checkout", lambda *_: COUNTS.charge("pool_checkouts"))
    return COUNTS


def route_of(method: str, path: str) -> str:
    return f"{method} {_ID.sub('/{id}', path)}"


def route_scope(app: Asgi, counts: Counts = COUNTS) -> Asgi:
    """Charge what a request does to its route, and count requests per route. A claim that
    found nothing (``"task": null``) is its own route, ``... (empty)``."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        route = route_of(scope["method"], scope["path"])
        charges = Charges()
        token = _REQUEST.set(charges)
        body = bytearray()

        async def sniff(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.body" and route.endswith("/tasks/next"):
                body.extend(message.get("body", b""))
            await send(message)

        try:
            await app(scope, receive, sniff)
        finally:
            _REQUEST.reset(token)
            if b'"task":null' in body:
                route += " (empty)"
            counts.finish_request(route, charges)

    return wrapped


def _worker_main() -> int:
    out = Path(os.environ["QUORUM_BENCH_SQL_COUNTS"])
    install()

    def dump() -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"worker-{os.getpid()}.json").write_text(json.dumps(COUNTS.snapshot()))

    atexit.register(dump)
    from cli.main import main as quorum

    return quorum(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(_worker_main())
