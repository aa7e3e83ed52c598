"""Annotators: get the next image, submit an answer, skip.

A submission is acknowledged only after its row is committed. The answer that completes its
image (every wanted answer is in) then signals the ItemWorkflow, naming all of them; the others
send nothing, which saves the workflow a wake-up per answer. If the signal fails (Temporal
unreachable, the API crashes right after the commit), the answer is still safe: the workflow
reconciles with the database on its own.

What an annotator sees of a task is opaque: the assignment (one lease, a random ID) and an image
served through it, never the item's ID. Item IDs end in their ordinal, and gold items' ordinals
follow the images', so an item ID would tell a gold task from the others. Every route here
addresses a task by its assignment; operators map an assignment to its item with
``GET /campaigns/{id}/assignments/{assignment}``. For the same reason a campaign with gold
proxies its S3 and web images (``images.serve``) instead of redirecting to where they are stored.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx
from botocore.exceptions import ClientError
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import update
from starlette.background import BackgroundTask
from starlette.concurrency import iterate_in_threadpool

from api.context import AppContext, Context, Person, link_of
from db.models import Assignment, Campaign, Item
from schemas.annotations import AnnotationObject, ResponseBody
from schemas.workflow_io import (
    SIGNAL_QUALITY_EVIDENCE,
    SIGNAL_RESPONSE_SUBMITTED,
    QualityEvidence,
    ResponseRef,
    ResponseSubmitted,
    campaign_workflow_id,
    item_workflow_id,
)
from services.errors import NOT_YOUR_ASSIGNMENT, Conflict, Forbidden, InvalidInput, NotFound
from services.image_sources import probe_s3_size
from services.prelabels import for_annotator
from services.task_assignment import (
    annotator_progress,
    claim_item,
    claim_next,
    record_refusal,
    skip_assignment,
    submit_response,
)

router = APIRouter(tags=["annotators"])
log = logging.getLogger("quorum.api")

IMAGE_MISSING = "this image is missing on the server; skip it, and tell the campaign's operators"


class TaskOut(BaseModel):
    """A leased task as its annotator sees it: the same fields, and nothing that names the
    item, whether it is an image of the campaign or a gold item."""

    assignment_id: str = Field(description="This lease; every task route takes it.")
    image_url: str
    width: int | None
    height: int | None
    lease_expires_at: datetime
    resumed: bool
    prelabel: dict[str, Any] | None = Field(
        None,
        description='A model\'s prediction to start from, {"objects": [...]}; the page draws it '
        "as an editable first draft (campaigns whose pre-labels vote get null).",
    )


class NextTask(BaseModel):
    task: TaskOut | None
    message: str
    answered: int
    ontology: dict[str, Any]


@router.post("/campaigns/{campaign_id}/tasks/next", response_model=NextTask)
async def next_task(campaign_id: str, request: Request, ctx: Context, person: Person) -> NextTask:
    link = link_of(request)
    # A single-task link leases its one image; every other caller gets the queue.
    single_item = link.item_id if link is not None and link.kind == "task" else None
    async with ctx.sessions.begin() as session:
        if single_item is not None:
            task = await claim_item(session, person, campaign_id, single_item)
        else:
            task = await claim_next(session, person, campaign_id)
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None
        answered = await annotator_progress(session, person.id, campaign_id)
        prelabel = await for_annotator(session, campaign, task.item.id) if task else None
    if task is not None and task.item.width is None and task.item.uri.startswith("s3://"):
        await _learn_image_size(ctx, task.item)
    if task is None:
        return NextTask(
            task=None,
            answered=answered,
            ontology=campaign.spec["ontology"],
            message=(
                "This image needs nothing more from you. Thank you!"
                if single_item is not None
                else "No image needs you right now. Thank you!"
            ),
        )
    return NextTask(
        task=TaskOut(
            assignment_id=task.assignment.id,
            image_url=f"/campaigns/{campaign_id}/tasks/{task.assignment.id}/image",
            width=task.item.width,
            height=task.item.height,
            lease_expires_at=task.assignment.lease_expires_at,
            resumed=task.resumed,
            prelabel=prelabel,
        ),
        answered=answered,
        ontology=campaign.spec["ontology"],
        message="resumed your open task" if task.resumed else "new task",
    )


async def _learn_image_size(ctx: AppContext, item: Item) -> None:
    """S3 images are not opened at launch (a 100,000-image prefix would take long); their
    size is read from the first bytes when first needed, and kept."""
    if ctx.s3_client is None:
        return
    size = await asyncio.to_thread(probe_s3_size, item.uri, ctx.s3_client)
    if size is None:
        return
    item.width, item.height = size
    async with ctx.sessions.begin() as session:
        await session.execute(
            update(Item).where(Item.id == item.id).values(width=size[0], height=size[1])
        )


class SubmissionIn(BaseModel):
    idempotency_key: str = Field(
        min_length=8,
        max_length=128,
        description="Chosen by the client, reused when it retries: a repeat is counted once.",
    )
    objects: list[AnnotationObject]


class SubmissionOut(BaseModel):
    response_id: str
    duplicate: bool
    late: bool
    counted: bool = True


@router.post(
    "/campaigns/{campaign_id}/tasks/{assignment_id}/response", response_model=SubmissionOut
)
async def submit(
    campaign_id: str, assignment_id: str, body: SubmissionIn, ctx: Context, person: Person
) -> SubmissionOut:
    try:
        async with ctx.sessions.begin() as session:
            submission = await submit_response(
                session,
                person,
                assignment_id,
                campaign_id=campaign_id,
                idempotency_key=body.idempotency_key,
                body=ResponseBody(objects=body.objects),
            )
    except (Conflict, InvalidInput) as refused:
        # The refused transaction rolled back; the refusal itself goes on the record.
        async with ctx.sessions.begin() as session:
            await record_refusal(
                session,
                person,
                assignment_id,
                reason=refused.message,
                errors=[e.model_dump() for e in refused.errors],
            )
        raise
    if submission.gold:
        await signal_gold_scored(ctx, campaign_id, person.id)
    elif submission.completes_with is not None:
        await signal_response(
            ctx,
            campaign_id,
            submission.ordinal,
            submission.response.id,
            person.id,
            others=submission.completes_with,
        )
    return SubmissionOut(
        response_id=submission.response.id, duplicate=submission.duplicate, late=submission.late
    )


async def signal_response(
    ctx: AppContext,
    campaign_id: str,
    ordinal: int,
    response_id: str,
    annotator_id: str,
    *,
    others: list[tuple[str, str]],
) -> None:
    """Wake the image's workflow: this answer completed it, with ``others``."""
    try:
        await ctx.temporal.get_workflow_handle(item_workflow_id(campaign_id, ordinal)).signal(
            SIGNAL_RESPONSE_SUBMITTED,
            ResponseSubmitted(
                response_id=response_id,
                annotator_id=annotator_id,
                others=[ResponseRef(response_id=r, annotator_id=a) for r, a in others],
            ),
        )
    except Exception:  # the answer is committed; the workflow's reconciliation will find it
        log.warning(
            "signal for response %s failed; the workflow will reconcile", response_id, exc_info=True
        )


async def signal_gold_scored(ctx: AppContext, campaign_id: str, annotator_id: str) -> None:
    """A gold answer is new evidence for the campaign's reliability model (no item workflow
    waits for it). A lost signal only delays the refit to the next scheduled one."""
    try:
        await ctx.temporal.get_workflow_handle(campaign_workflow_id(campaign_id)).signal(
            SIGNAL_QUALITY_EVIDENCE, QualityEvidence(annotator_id=annotator_id)
        )
    except Exception:
        log.warning("quality-evidence signal for campaign %s failed", campaign_id, exc_info=True)


@router.post("/campaigns/{campaign_id}/tasks/{assignment_id}/skip")
async def skip(
    campaign_id: str, assignment_id: str, ctx: Context, person: Person
) -> dict[str, str]:
    async with ctx.sessions.begin() as session:
        assignment = await skip_assignment(session, person, assignment_id, campaign_id=campaign_id)
    return {"assignment_id": assignment.id, "state": assignment.state}


@router.get("/campaigns/{campaign_id}/tasks/{assignment_id}/image")
async def task_image(
    campaign_id: str, assignment_id: str, ctx: Context, person: Person
) -> Response:
    async with ctx.sessions() as session:
        assignment = await session.get(Assignment, assignment_id)
        if assignment is None or assignment.campaign_id != campaign_id:
            raise NotFound(f"no assignment {assignment_id} in campaign {campaign_id}")
        if assignment.annotator_id != person.id:
            raise Forbidden(NOT_YOUR_ASSIGNMENT)
        item = await session.get(Item, assignment.item_id)
        campaign = await session.get(Campaign, campaign_id)
        assert item is not None and campaign is not None
    return await image_response(ctx, item.uri, proxy=serves_by_proxy(campaign.spec))


def serves_by_proxy(spec: dict[str, Any]) -> bool:
    """Whether a campaign's S3 and web images go through the API (``images.serve``; by default
    when it has gold items, whose address would otherwise show in the browser)."""
    serve = (spec.get("images") or {}).get("serve")
    return serve == "proxy" or (serve is None and bool(spec.get("gold")))


async def image_response(ctx: AppContext, uri: str, *, proxy: bool) -> Response:
    """Serve a local image; an S3 or web image by redirect (a short-lived presigned URL for
    S3) or, with ``proxy``, by carrying its bytes, so the browser never learns its address."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        if not await asyncio.to_thread(path.is_file):
            # The URI stays in the log: a gold image's path could tell it from the others.
            log.error("image %s is missing", uri)
            raise NotFound(IMAGE_MISSING)
        return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0])
    if parsed.scheme == "s3" and ctx.s3_client is not None:
        bucket, key = parsed.netloc, parsed.path.lstrip("/")
        if proxy:
            return await _proxy_s3(ctx.s3_client, uri, bucket, key)
        url = ctx.s3_client.generate_presigned_url(
            "get_object",
            Params={"Bucket": bucket, "Key": key},
            ExpiresIn=ctx.settings.s3.presign_seconds,
        )
        return RedirectResponse(url, status_code=307)
    if proxy and parsed.scheme in {"http", "https"}:
        return await _proxy_web(uri)
    return RedirectResponse(uri, status_code=307)


PROXY_CHUNK = 64 * 1024


def _media_type(uri: str, stated: str | None) -> str:
    return mimetypes.guess_type(urlparse(uri).path)[0] or stated or "application/octet-stream"


async def _proxy_s3(s3: Any, uri: str, bucket: str, key: str) -> Response:
    try:
        obj = await asyncio.to_thread(s3.get_object, Bucket=bucket, Key=key)
    except ClientError as error:
        log.error("image %s could not be read: %s", uri, error)
        raise NotFound(IMAGE_MISSING) from None
    body = obj["Body"]
    return StreamingResponse(
        iterate_in_threadpool(body.iter_chunks(PROXY_CHUNK)),
        media_type=_media_type(uri, obj.get("ContentType")),
        headers={"Content-Length": str(obj["ContentLength"]), "Cache-Control": "private"},
        background=BackgroundTask(body.close),
    )


async def _proxy_web(uri: str) -> Response:
    client = httpx.AsyncClient(timeout=httpx.Timeout(30.0), follow_redirects=True)
    try:
        upstream = await client.send(client.build_request("GET", uri), stream=True)
    except httpx.HTTPError as error:
        await client.aclose()
        log.error("image %s could not be fetched: %s", uri, error)
        raise NotFound(IMAGE_MISSING) from None
    if upstream.status_code != 200:
        await upstream.aclose()
        await client.aclose()
        log.error("image %s could not be fetched: HTTP %s", uri, upstream.status_code)
        raise NotFound(IMAGE_MISSING)

    async def close() -> None:
        await upstream.aclose()
        await client.aclose()

    length = upstream.headers.get("content-length")
    return StreamingResponse(
        upstream.aiter_bytes(PROXY_CHUNK),
        media_type=_media_type(uri, upstream.headers.get("content-type")),
        headers={"Cache-Control": "private", **({"Content-Length": length} if length else {})},
        background=BackgroundTask(close),
    )
