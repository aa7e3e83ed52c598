"""The workforce's pages: a link opens a page served by the API, with nothing to install.

- ``GET /work/{token}``: the annotation page (a campaign link: a queue; a task link: one image).
- ``GET /review/{token}``: the expert's review page for a campaign.
- ``GET /links/me``: what the page's link stands for (or why it no longer works).
- ``GET /items/{item_id}/image``: an image for an expert (the annotators' route is per lease).
- ``/static/...``: the pages' ES modules and CSS (``api/web``), no build step.

The pages are the same static HTML for every token; their scripts read the token from the
address and send it as ``Authorization: Bearer``. They send no Referer, so neither the token
nor the address leaves with an image request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from api.context import Context, Person, Token
from api.task_routes import image_response, serves_by_proxy
from db.models import Campaign, Item
from services.errors import EXPERT_ONLY, Forbidden, NotFound, Unauthorized
from services.links import NOT_A_LINK, LinkGrant, is_link_token, link_state, verify_link
from services.task_assignment import annotator_progress

WEB = Path(__file__).resolve().parent / "web"

router = APIRouter(tags=["pages"])

# Scripts only from this server; images also from the presigned S3 host and blob: (masks).
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src * data: blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
}


class WebFiles(StaticFiles):
    """The pages' modules and styles; revalidated on each load, so a new release shows up."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def static_files() -> WebFiles:
    return WebFiles(directory=WEB)


def _page(name: str) -> FileResponse:
    return FileResponse(WEB / name, media_type="text/html", headers=PAGE_HEADERS)


@router.get("/work/{token}", include_in_schema=False)
async def annotation_page(token: str) -> FileResponse:
    return _page("annotate.html")


@router.get("/review/{token}", include_in_schema=False)
async def review_page(token: str) -> FileResponse:
    return _page("review.html")


async def require_link(ctx: Context, token: Token) -> LinkGrant:
    if not is_link_token(token):
        raise Unauthorized(NOT_A_LINK)
    async with ctx.sessions() as session:
        grant = await verify_link(session, token, ctx.settings.api.link_secret.get_secret_value())
        session.expunge_all()
        return grant


Link = Annotated[LinkGrant, Depends(require_link)]


@router.get("/links/me")
async def current_link(ctx: Context, grant: Link) -> dict[str, Any]:
    """Who the link is for, where it leads, until when, and the person's progress there."""
    link, person = grant.link, grant.person
    async with ctx.sessions() as session:
        campaign = await session.get(Campaign, link.campaign_id)
        if campaign is None:
            raise NotFound(f"no campaign {link.campaign_id}")
        answered = await annotator_progress(session, person.id, campaign.id)
    return {
        "link_id": link.id,
        "kind": link.kind,
        "state": link_state(link),
        "expires_at": link.expires_at,
        "item_id": link.item_id,
        "person": {"id": person.id, "name": person.name, "role": person.role},
        "campaign": {
            "id": campaign.id,
            "name": campaign.name,
            "status": campaign.status,
            "annotators_per_image": campaign.annotators_per_image,
        },
        "ontology": campaign.spec["ontology"],
        "answered": answered,
    }


@router.get("/items/{item_id}/image")
async def item_image(item_id: str, ctx: Context, person: Person) -> Response:
    """An item's image, for experts (annotators see only the images leased to them)."""
    if person.role != "expert":
        raise Forbidden(EXPERT_ONLY)
    async with ctx.sessions() as session:
        item = await session.get(Item, item_id)
        if item is None:
            raise NotFound(f"no item {item_id}")
        campaign = await session.get(Campaign, item.campaign_id)
        assert campaign is not None
    return await image_response(ctx, item.uri, proxy=serves_by_proxy(campaign.spec))
