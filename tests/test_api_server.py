"""How `quorum api` serves: keep-alive, processes, and a saturated database pool.

At 200 simulated annotators the API reset connections: uvicorn closed idle keep-alive
connections after its default 5 s while clients (httpx keeps them 5 s too, load balancers 60 s)
reused them, and a request sent at that moment was reset. These tests pin the fix.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from api.app import BUSY, create_app
from api.context import AppContext
from cli.main import build_parser
from db.engine import create_sessionmaker
from infra.devstack import TemporalDevServer, free_port
from infra.settings import ApiSettings, Settings

REPO = Path(__file__).resolve().parents[1]
OPERATOR = "server-test-operator"


def _served_options(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> dict[str, Any]:
    import uvicorn

    seen: dict[str, Any] = {}

    def fake_run(app: Any, **options: Any) -> None:
        seen.update(options, app=app)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    args = build_parser().parse_args(["api", *argv])
    assert args.func(args, Settings(environment="test")) == 0
    return seen


def test_keep_alive_outlasts_clients_and_load_balancers(monkeypatch: pytest.MonkeyPatch) -> None:
    options = _served_options(monkeypatch, [])
    assert options["timeout_keep_alive"] == ApiSettings().keep_alive_seconds > 60
    assert options["backlog"] == 2048
    assert options["limit_concurrency"] is None
    assert "workers" not in options  # one process serves the app object itself


def test_workers_run_the_app_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    options = _served_options(monkeypatch, ["--workers", "3", "--port", "8123"])
    assert options["app"] == "api.app:create_app"
    assert options["factory"] is True
    assert options["workers"] == 3
    assert options["port"] == 8123


def test_server_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUORUM_API__KEEP_ALIVE_SECONDS", "120")
    monkeypatch.setenv("QUORUM_API__LIMIT_CONCURRENCY", "500")
    monkeypatch.setenv("QUORUM_DATABASE__POOL_TIMEOUT", "5")
    settings = Settings()
    assert settings.api.keep_alive_seconds == 120
    assert settings.api.limit_concurrency == 500
    assert settings.database.pool_timeout == 5.0
    assert settings.database.max_overflow is None  # as many again as pool_size


async def test_a_saturated_pool_answers_503_with_retry_after(tmp_path: Path) -> None:
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{tmp_path / 'busy.db'}",
        poolclass=AsyncAdaptedQueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=0.2,
    )
    settings = Settings(environment="test", home=tmp_path, api=ApiSettings(operator_token=OPERATOR))
    ctx = AppContext(
        settings=settings,
        sessions=create_sessionmaker(engine),
        temporal=None,  # type: ignore[arg-type]
        store=None,  # type: ignore[arg-type]
    )
    transport = httpx.ASGITransport(app=create_app(ctx))
    try:
        async with (
            engine.connect() as held,  # the pool's only connection
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            await held.exec_driver_sql("SELECT 1")
            r = await client.get("/campaigns", headers={"Authorization": f"Bearer {OPERATOR}"})
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "1"
        assert r.json() == {"error": "busy", "message": BUSY, "errors": []}
    finally:
        await engine.dispose()


def test_an_idle_connection_is_still_served_after_uvicorns_default_keep_alive(
    temporal_server: TemporalDevServer, tmp_path: Path
) -> None:
    """The real server: a connection left idle for 6 s (past uvicorn's 5 s default) serves
    the next request instead of being closed under the client."""
    port = free_port()
    env = {
        **os.environ,
        "QUORUM_HOME": str(tmp_path),
        "QUORUM_TEMPORAL__ADDRESS": temporal_server.address,
        "QUORUM_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'q.db'}",
    }
    subprocess.run(
        [sys.executable, "-m", "cli.main", "db", "upgrade"], cwd=REPO, env=env, check=True
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "api", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/health")
                first = conn.getresponse()
                first.read()
                break
            except OSError:
                assert server.poll() is None, "the API exited"
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.2)
        assert first.status == 200
        time.sleep(6)
        conn.request("GET", "/health")  # the same TCP connection
        second = conn.getresponse()
        assert second.status == 200
        assert second.read() == b'{"status":"ok"}'
        # A person's request is authenticated on the read-only sessions (SQLite: no write lock).
        operator = {
            "Authorization": "Bearer dev-operator-token",
            "Content-Type": "application/json",
        }
        conn.request("POST", "/people", body=b'{"name": "reader"}', headers=operator)
        registered = conn.getresponse()
        assert registered.status == 201
        token = json.loads(registered.read())["token"]
        conn.request(
            "POST",
            "/campaigns/cmp_missing/tasks/next",
            headers={"Authorization": f"Bearer {token}"},
        )
        claimed = conn.getresponse()
        assert claimed.status == 404, claimed.read()  # authenticated, then no such campaign
        claimed.read()
        conn.close()
    finally:
        server.terminate()
        server.wait(30)
