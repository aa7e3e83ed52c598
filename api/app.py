"""The FastAPI application: routers, error rendering, and the lifespan that opens connections."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

from api import (
    audit_routes,
    campaign_routes,
    dataset_routes,
    operator_routes,
    page_routes,
    quality_routes,
    review_routes,
    task_routes,
)
from api.context import AppContext
from db.engine import create_engine, create_read_engine, create_sessionmaker
from infra.settings import Settings, get_settings
from infra.temporal_client import connect
from services.errors import QuorumError
from storage import open_store, s3_client


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    return ".".join(parts) or "(request)"


async def _quorum_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, QuorumError)
    return JSONResponse(
        status_code=exc.status_code,
        content={
            "error": exc.code,
            "message": exc.message,
            "errors": [e.model_dump() for e in exc.errors],
        },
    )


# Every database connection of this process stayed busy for the whole pool timeout: the
# server is saturated, not broken. 503 with Retry-After tells clients (and load balancers) to
# come back; a retried submission is safe because it carries its idempotency key.
BUSY = "the server is busy; retry in a moment"
BUSY_RETRY_AFTER_SECONDS = 1


async def _busy(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PoolTimeout)
    return JSONResponse(
        status_code=503,
        content={"error": "busy", "message": BUSY, "errors": []},
        headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": _field_of(e["loc"]),
            "message": "this field is required" if e["type"] == "missing" else e["msg"],
        }
        for e in exc.errors()
    ]
    return JSONResponse(
        status_code=422,
        content={
            "error": "invalid",
            "message": "; ".join(f"{e['field']}: {e['message']}" for e in errors),
            "errors": errors,
        },
    )


async def build_context(settings: Settings) -> tuple[AppContext, list[AsyncEngine]]:
    db = settings.database
    engine = create_engine(
        settings.database_url,
        echo=db.echo,
        pool_size=db.pool_size,
        max_overflow=db.max_overflow,
        pool_timeout=db.pool_timeout,
        ping_after_idle=db.ping_after_idle_seconds,
    )
    reads = create_read_engine(engine)
    client = await connect(settings.temporal)
    uses_s3 = settings.store.backend == "s3" or settings.s3.endpoint_url is not None
    ctx = AppContext(
        settings=settings,
        sessions=create_sessionmaker(engine),
        read_sessions=create_sessionmaker(reads) if reads is not engine else None,
        temporal=client,
        store=open_store(settings.store, settings.s3, settings.home),
        s3_client=s3_client(settings.s3) if uses_s3 else None,
    )
    return ctx, [engine] if reads is engine else [engine, reads]


def create_app(ctx: AppContext | None = None, settings: Settings | None = None) -> FastAPI:
    """The app. Tests hand in a ready context; a server builds one from settings at startup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if ctx is not None:
            app.state.ctx = ctx
            yield
            return
        built, engines = await build_context(settings or get_settings())
        app.state.ctx = built
        try:
            yield
        finally:
            for engine in engines:
                await engine.dispose()

    app = FastAPI(title="Quorum", version="0.1.0", lifespan=lifespan)
    if ctx is not None:
        app.state.ctx = ctx  # also usable without running the lifespan (httpx ASGITransport)
    app.add_exception_handler(QuorumError, _quorum_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(PoolTimeout, _busy)
    app.include_router(campaign_routes.router)
    app.include_router(task_routes.router)
    app.include_router(review_routes.router)
    app.include_router(dataset_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(operator_routes.router)
    app.include_router(quality_routes.router)
    app.include_router(page_routes.router)
    app.mount("/static", page_routes.static_files(), name="static")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
