"""Browser tests: a running Quorum served over real HTTP, and Debian's Chromium driven by
Playwright.

The pages need a real HTTP server, so the app of ``tests/pipeline/conftest.py`` (real
Temporal, SQLite, MinIO, an in-process worker) is served by uvicorn on a free loopback port,
as a task on the tests' own event loop. Playwright's async API runs on that loop too, and
drives ``/usr/bin/chromium`` (installed by infra/setup.sh; Playwright's own browser download
is not used). Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from infra.devstack import free_port
from simulation.images import generate_images
from tests.pipeline.conftest import (  # noqa: F401  (fixtures, used by name)
    Pipeline,
    bearer,
    operator,
    pipeline,
    pipeline_unstarted,
)

CHROMIUM = Path("/usr/bin/chromium")
# As the machine notes say: headless, no sandbox as root, and nothing that reaches the network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The pages are what is tested here; SQLite is enough (the API tests run both)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'quorum.db'}"


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the test process keeps its own signal handlers


@dataclass
class Web:
    """A Quorum reachable at ``base_url``, with the pipeline's helpers."""

    p: Pipeline
    base_url: str
    console_errors: list[str] = field(default_factory=list)

    async def launch(self, images: int, *, size: int = 480, s3: bool = False, **spec: Any) -> str:
        """Launch a campaign over ``images`` generated pictures of ``size`` pixels, from a
        local directory or (``s3``) from the bucket, whose images the page then loads through
        short-lived presigned URLs."""
        directory = self.p.tmp / f"web-images-{size}"
        labeled = generate_images(directory, images, size=size)
        source: dict[str, str] = {"directory": str(directory)}
        if s3:
            ctx = self.p.http._transport.app.state.ctx  # type: ignore[attr-defined]
            bucket = self.p.settings.store.bucket
            for image in labeled:
                ctx.s3_client.put_object(
                    Bucket=bucket, Key=f"raw/{image.path.name}", Body=image.path.read_bytes()
                )
            source = {"s3_prefix": f"s3://{bucket}/raw/"}
        body = self.p.spec(images=source, **spec)
        r = await self.p.http.post("/campaigns", json=body, headers=operator())
        assert r.status_code == 201, r.text
        campaign_id: str = r.json()["id"]
        for n, image in enumerate(labeled):
            self.p.truth[f"{campaign_id}-{n}"] = image.label
        await self.p.wait_open(campaign_id, images)
        return campaign_id

    async def person(self, name: str, role: str = "annotator", **extra: Any) -> dict[str, Any]:
        r = await self.p.http.post(
            "/people", json={"name": name, "role": role, **extra}, headers=operator()
        )
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    async def link(self, campaign_id: str, person_id: str, **body: Any) -> dict[str, Any]:
        r = await self.p.http.post(
            f"/campaigns/{campaign_id}/links",
            json={"person_id": person_id, **body},
            headers=operator(),
        )
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        assert out["url"].startswith(self.base_url)
        return out


@pytest.fixture
async def web(pipeline: Pipeline) -> AsyncIterator[Web]:  # noqa: F811
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    pipeline.settings.api.public_url = base_url
    app = pipeline.http._transport.app  # type: ignore[attr-defined]
    server = _Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            lifespan="off",
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield Web(p=pipeline, base_url=base_url)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make setup` (it installs Debian's chromium)")
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # launch() gives every run a new, empty profile directory of its own.
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(browser: Browser, web: Web) -> AsyncIterator[Page]:
    context: BrowserContext = await browser.new_context(
        viewport={"width": 1440, "height": 900}, base_url=web.base_url
    )
    context.set_default_timeout(15_000)
    page = await context.new_page()
    page.on("console", lambda m: web.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: web.console_errors.append(f"page error: {e}"))
    try:
        yield page
    finally:
        await context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
