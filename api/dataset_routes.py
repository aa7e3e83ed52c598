"""Published datasets over HTTP, for operators: list, show, diff, verify, deprecate, roll back.

The store is blocking I/O (files or boto3), so every call runs in a worker thread. Unknown
datasets and versions are 404 with a message naming them (and what exists); a deprecated
version refused by rollback is 409.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from api.context import Context, Operator
from services.errors import Conflict, InvalidInput, NotFound
from storage import (
    DatasetNotFound,
    VersionDeprecated,
    VersionNotFound,
    deprecate_version,
    describe_datasets,
    describe_versions,
    diff_versions,
    latest_version,
    rollback,
    show_version,
    verify_version,
)
from storage.dataset_versions import read_manifest

router = APIRouter(prefix="/datasets", tags=["datasets"])

T = TypeVar("T")

VersionNumber = Annotated[int, Field(ge=1)]
VersionPath = Annotated[int, PathParam(ge=1)]


class DeprecateBody(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, description="Why, shown with the version.")
    by: str | None = Field(None, max_length=200, description="Who; defaults to 'operator'.")


class RollbackBody(BaseModel):
    version: VersionNumber
    force: bool = Field(False, description="Roll back to it even if it is deprecated.")


async def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking store call in a thread, with storage errors as domain errors."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except (DatasetNotFound, VersionNotFound) as exc:
        raise NotFound(str(exc)) from exc
    except VersionDeprecated as exc:
        raise Conflict(str(exc)) from exc
    except ValueError as exc:  # a dataset name the store refuses, and the like
        raise InvalidInput(str(exc)) from exc


@router.get("")
async def list_all(ctx: Context, _: Operator) -> dict[str, Any]:
    datasets = await _call(describe_datasets, ctx.store)
    return {"datasets": [d.to_json() for d in datasets]}


@router.get("/{dataset}/versions")
async def list_dataset_versions(dataset: str, ctx: Context, _: Operator) -> dict[str, Any]:
    versions = await _call(describe_versions, ctx.store, dataset)
    latest = next((v.version for v in versions if v.latest), None)
    return {"dataset": dataset, "latest": latest, "versions": [v.to_json() for v in versions]}


@router.get("/{dataset}/versions/{version}")
async def get_version(
    dataset: str, version: VersionPath, ctx: Context, _: Operator
) -> dict[str, Any]:
    """The version's manifest, with ``deprecated`` (the marker or null) and ``latest``."""
    shown: dict[str, Any] = await _call(show_version, ctx.store, dataset, version)
    return shown


@router.get("/{dataset}/versions/{version}/verify")
async def verify(dataset: str, version: VersionPath, ctx: Context, _: Operator) -> dict[str, Any]:
    """Every file checked against its hash and size (and every count): ``ok`` and problems."""
    await _call(read_manifest, ctx.store, dataset, version)  # 404 rather than "missing"
    problems = await _call(verify_version, ctx.store, dataset, version)
    return {"dataset": dataset, "version": version, "ok": not problems, "problems": problems}


@router.get("/{dataset}/diff")
async def diff(
    dataset: str,
    ctx: Context,
    _: Operator,
    from_version: Annotated[int, Query(alias="from", ge=1)],
    to_version: Annotated[int, Query(alias="to", ge=1)],
    limit: Annotated[int, Query(ge=0, le=100_000)] = 1000,
) -> dict[str, Any]:
    """Items added, removed and changed (with what changed); lists cut at ``limit``."""
    result = await _call(diff_versions, ctx.store, dataset, from_version, to_version)
    return result.to_json(limit=limit)


@router.post("/{dataset}/versions/{version}/deprecate")
async def deprecate(
    dataset: str,
    version: VersionPath,
    body: DeprecateBody,
    ctx: Context,
    operator: Operator,
) -> dict[str, Any]:
    """Mark the version deprecated (kept, never deleted); a second call keeps the first marker."""
    marker = await _call(
        deprecate_version, ctx.store, dataset, version, body.reason, body.by or operator
    )
    latest = await _call(latest_version, ctx.store, dataset)
    return {
        "dataset": dataset,
        "version": version,
        "reason": marker.reason,
        "by": marker.by,
        "at": marker.at,
        "created": marker.created,
        "latest": latest == version,
    }


@router.post("/{dataset}/rollback")
async def roll_back(dataset: str, body: RollbackBody, ctx: Context, _: Operator) -> dict[str, Any]:
    """Point ``latest`` at an earlier version (409 if deprecated, unless ``force``)."""
    sequence = await _call(rollback, ctx.store, dataset, body.version, allow_deprecated=body.force)
    return {"dataset": dataset, "latest": body.version, "sequence": sequence}
