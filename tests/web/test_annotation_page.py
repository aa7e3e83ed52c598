"""The annotation page in a real browser: an annotator opens a link, labels, submits, and gets
the next image; the page refuses what the server refuses, and says so."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, Request
from sqlalchemy import select

from db.models import Response
from services.errors import CAMPAIGN_NOT_RUNNING
from services.links import LINK_EXPIRED, LINK_REVOKED
from tests.pipeline.conftest import bearer, operator
from tests.web.conftest import Web

pytestmark = pytest.mark.timeout(120)

ONTOLOGY: dict[str, Any] = {
    "multi_label": True,
    "classes": [
        {"name": "indoor"},
        {"name": "outdoor"},
        {
            "name": "car",
            "geometry": "box",
            "attributes": [
                {
                    "name": "color",
                    "kind": "single",
                    "options": ["red", "blue", "green"],
                    "required": True,
                },
                {"name": "occluded", "kind": "multi", "options": ["left", "right", "top"]},
            ],
        },
        {
            "name": "road",
            "geometry": "polygon",
            "attributes": [
                {
                    "name": "surface",
                    "kind": "single",
                    "options": ["asphalt", "gravel"],
                    "required": True,
                }
            ],
        },
        {"name": "lane", "geometry": "polyline"},
        {
            "name": "person",
            "geometry": "keypoints",
            "keypoints": [{"name": "head"}, {"name": "left_hand"}, {"name": "right_hand"}],
            "skeleton": [["head", "left_hand"], ["head", "right_hand"]],
        },
        {"name": "sky", "geometry": "mask"},
    ],
}
SIZE = 480


async def open_page(page: Page, url: str) -> None:
    await page.goto(url)
    # (Selectors, not wait_for_function: the page's CSP forbids eval, and that is kept.)
    await page.wait_for_selector("body[data-assignment]")
    await page.wait_for_selector(".stage-image[href]")


async def to_screen(page: Page, x: float, y: float) -> tuple[float, float]:
    """Where image pixel (x, y) is on the screen, whatever the zoom."""
    box = await page.locator(".stage-image").bounding_box()
    assert box is not None
    return box["x"] + x * box["width"] / SIZE, box["y"] + y * box["height"] / SIZE


async def drag(page: Page, a: tuple[float, float], b: tuple[float, float]) -> None:
    await page.mouse.move(*(await to_screen(page, *a)))
    await page.mouse.down()
    await page.mouse.move(*(await to_screen(page, *b)), steps=8)
    await page.mouse.up()


async def click_at(page: Page, x: float, y: float) -> None:
    await page.mouse.click(*(await to_screen(page, x, y)))


async def responses(web: Web, campaign_id: str) -> list[Response]:
    async with web.p.sessions() as s:
        return list(
            (
                await s.scalars(
                    select(Response)
                    .where(Response.campaign_id == campaign_id)
                    .order_by(Response.submitted_at)
                )
            ).all()
        )


def flat(points: list[Any]) -> list[float]:
    return [float(v) for p in points for v in p]


def real_errors(web: Web) -> list[str]:
    # Chromium logs every 4xx answer as a console error; those are expected here.
    return [e for e in web.console_errors if not e.startswith("Failed to load resource")]


async def test_an_annotator_draws_a_box_and_a_polygon_picks_attributes_and_submits(
    web: Web, page: Page, artifacts: Path
) -> None:
    cid = await web.launch(3, ontology=ONTOLOGY, annotators_per_image=1, agreement_threshold=0.5)
    ada = await web.person("Ada Lovelace")
    link = await web.link(cid, ada["id"])
    await open_page(page, link["url"])
    await page.wait_for_selector("text=Ada Lovelace")
    assert await page.locator("#progress").text_content() == "0 labeled"
    first = await page.evaluate("document.body.dataset.assignment")

    # A box, with a required single choice and a multiple choice.
    await page.click("button.class-button[data-class='car']")
    await drag(page, (60, 80), (220, 190))
    details = page.locator("#details")
    await details.locator("fieldset[data-attribute='color'] label", has_text="red").click()
    await details.locator("fieldset[data-attribute='occluded'] label", has_text="left").click()
    await details.locator("fieldset[data-attribute='occluded'] label", has_text="top").click()

    # A polygon, closed by clicking its first point; then its attribute.
    await page.keyboard.press("4")  # the road class, by its shortcut
    for x, y in [(260, 300), (440, 310), (450, 450), (250, 440)]:
        await click_at(page, x, y)
    await click_at(page, 260, 300)
    await details.locator("fieldset[data-attribute='surface'] label", has_text="asphalt").click()

    # A tag.
    await page.locator("#tags label", has_text="outdoor").click()
    assert await page.locator("#objects li").count() == 2
    await page.locator("#objects li", has_text="car").click()
    await page.screenshot(path=str(artifacts / "annotation-page.png"))

    await page.click("#submit")
    await page.wait_for_selector(f"body[data-assignment]:not([data-assignment='{first}'])")
    await page.wait_for_selector("#messages .success")
    assert await page.locator("#progress").text_content() == "1 labeled"
    assert await page.locator("#objects li").count() == 0, "the next image starts empty"

    # Skipping gives the image back and brings the next one; it is not counted as labeled.
    second = await page.evaluate("document.body.dataset.assignment")
    await page.click("#skip")
    await page.wait_for_selector(f"body[data-assignment]:not([data-assignment='{second}'])")
    assert await page.locator("#progress").text_content() == "1 labeled"

    (saved,) = await responses(web, cid)
    assert saved.assignment_id == first and saved.annotator_id == ada["id"]
    objects = saved.body["objects"]
    by_type = {o["type"]: o for o in objects}
    assert set(by_type) == {"box", "polygon", "tag"}
    box = by_type["box"]
    assert box["label"] == "car"
    assert box["attributes"] == {"color": "red", "occluded": ["left", "top"]}
    assert (box["x"], box["y"], box["w"], box["h"]) == pytest.approx((60, 80, 160, 110), abs=3)
    polygon = by_type["polygon"]
    assert polygon["label"] == "road" and polygon["attributes"] == {"surface": "asphalt"}
    assert flat(polygon["points"]) == pytest.approx(
        flat([[260, 300], [440, 310], [450, 450], [250, 440]]), abs=3
    )
    assert by_type["tag"] == {"type": "tag", "label": "outdoor", "attributes": {}}
    assert real_errors(web) == []


async def test_every_tool_keyboard_zoom_and_undo(web: Web, page: Page, artifacts: Path) -> None:
    # Images in S3: the page loads them through presigned URLs, straight from the bucket.
    cid = await web.launch(
        2, s3=True, ontology=ONTOLOGY, annotators_per_image=1, agreement_threshold=0.5
    )
    bea = await web.person("Bea")
    link = await web.link(cid, bea["id"])
    image_hosts: list[str] = []
    page.on(
        "response",
        lambda r: image_hosts.append(r.url.split("/")[2]) if "/raw/image_" in r.url else None,
    )
    await open_page(page, link["url"])
    minio = web.p.settings.s3.endpoint_url
    assert minio is not None and minio.split("/")[2] in image_hosts

    # Zoom in with the wheel, and back to fit: the drawing maps through either.
    stage = await page.locator("#stage").bounding_box()
    assert stage is not None
    await page.mouse.move(stage["x"] + stage["width"] / 2, stage["y"] + stage["height"] / 2)
    before = await page.locator(".stage-image").bounding_box()
    await page.mouse.wheel(0, -400)
    after = await page.locator(".stage-image").bounding_box()
    assert before is not None and after is not None and after["width"] > before["width"] * 1.5
    await page.keyboard.press("0")

    # A polyline, finished with Enter.
    await page.keyboard.press("5")
    for x, y in [(20, 400), (200, 380), (460, 420)]:
        await click_at(page, x, y)
    await page.keyboard.press("Enter")
    # Keypoints in order: the second one hidden (Shift+click), the third not labeled (N).
    await page.keyboard.press("6")
    await click_at(page, 100, 100)
    await page.keyboard.down("Shift")
    await click_at(page, 80, 150)
    await page.keyboard.up("Shift")
    await page.keyboard.press("n")
    # A mask painted with the brush.
    await page.keyboard.press("7")
    await drag(page, (300, 40), (420, 60))
    # A box drawn and then undone, then redone, then undone again.
    await page.keyboard.press("3")
    await drag(page, (10, 10), (50, 50))
    assert await page.locator("#objects li").count() == 4
    await page.keyboard.press("Control+z")
    assert await page.locator("#objects li").count() == 3
    await page.keyboard.press("Control+Shift+z")
    assert await page.locator("#objects li").count() == 4
    await page.keyboard.press("Control+z")
    assert await page.locator("#objects li").count() == 3
    await page.screenshot(path=str(artifacts / "annotation-page-all-tools.png"))

    # Drag the polyline's middle vertex in select mode.
    await page.keyboard.press("v")
    await page.locator("#objects li", has_text="lane").click()
    a = await to_screen(page, 200, 380)
    b = await to_screen(page, 220, 300)
    await page.mouse.move(*a)
    await page.mouse.down()
    await page.mouse.move(*b, steps=5)
    await page.mouse.up()

    await page.keyboard.press("Control+Enter")
    await page.wait_for_selector("#messages .success")
    (saved,) = await responses(web, cid)
    by_type = {o["type"]: o for o in saved.body["objects"]}
    assert set(by_type) == {"polyline", "keypoints", "mask"}
    assert flat(by_type["polyline"]["points"]) == pytest.approx(
        flat([[20, 400], [220, 300], [460, 420]]), abs=3
    )
    kp = by_type["keypoints"]["points"]
    assert [p[2] for p in kp] == [2, 1, 0]
    assert kp[0][:2] == pytest.approx([100, 100], abs=3)
    rle = by_type["mask"]["rle"]
    assert rle["size"] == [SIZE, SIZE] and sum(rle["counts"]) == SIZE * SIZE
    painted = sum(rle["counts"][1::2])
    # A 24-pixel brush along ~122 pixels: about 122 * 24 + a round cap.
    assert 2000 < painted < 5000
    assert real_errors(web) == []


async def test_the_page_and_the_server_refuse_the_same_crossing_polygon(
    web: Web, page: Page, artifacts: Path
) -> None:
    cid = await web.launch(1, ontology=ONTOLOGY, annotators_per_image=1, agreement_threshold=0.5)
    cy = await web.person("Cy")
    link = await web.link(cid, cy["id"])
    await open_page(page, link["url"])
    posted: list[str] = []

    def record(request: Request) -> None:
        if request.method == "POST" and request.url.endswith("/response"):
            posted.append(request.url)

    page.on("request", record)

    bowtie = [(100, 100), (300, 300), (300, 100), (100, 300)]
    await page.keyboard.press("4")
    for x, y in bowtie:
        await click_at(page, x, y)
    await page.keyboard.press("Enter")
    await page.locator(
        "#details fieldset[data-attribute='surface'] label", has_text="gravel"
    ).click()
    await page.click("#submit")
    error = page.locator("#messages .error")
    await error.wait_for()
    text = await error.text_content()
    assert text is not None
    assert "objects.0.points: the polygon crosses itself; redraw it without crossings" in text
    assert await page.locator(".layers .obj.invalid").count() == 1
    await page.screenshot(path=str(artifacts / "annotation-page-refused-polygon.png"))
    await asyncio.sleep(0.3)
    assert posted == [], "the page sent an answer it should have refused"
    assert await responses(web, cid) == []

    # The very polygon the page drew, sent to the server, is refused there for the same field.
    drawn = await page.evaluate(
        "() => JSON.parse(sessionStorage.getItem("
        "'quorum:draft:' + document.body.dataset.assignment))"
    )
    assert [o["type"] for o in drawn] == ["polygon"]
    assert flat(drawn[0]["points"]) == pytest.approx(flat(bowtie), abs=3)
    assignment = await page.evaluate("document.body.dataset.assignment")
    r = await web.p.http.post(
        f"/campaigns/{cid}/tasks/{assignment}/response",
        json={"idempotency_key": uuid.uuid4().hex, "objects": drawn},
        headers=bearer(link["token"]),
    )
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {
            "field": "objects.0.points",
            "message": "the polygon crosses itself; redraw it without crossings",
        }
    ]
    assert await responses(web, cid) == []

    # Redrawn without the crossing: the page sends it, and the server takes it.
    await page.keyboard.press("v")
    await page.locator("#objects li", has_text="road").click()
    await page.keyboard.press("Delete")
    await page.keyboard.press("4")
    for x, y in [(100, 100), (300, 100), (300, 300), (100, 300)]:
        await click_at(page, x, y)
    await page.keyboard.press("Enter")
    await page.locator(
        "#details fieldset[data-attribute='surface'] label", has_text="gravel"
    ).click()
    await page.click("#submit")
    await page.wait_for_selector("#screen:not([hidden])")
    assert len(posted) == 1
    (saved,) = await responses(web, cid)
    assert flat(saved.body["objects"][0]["points"]) == pytest.approx(
        flat([[100, 100], [300, 100], [300, 300], [100, 300]]), abs=3
    )
    # One image, one answer: the queue is empty now, and the page says so.
    assert "No image needs you" in (await page.locator("#screen-text").text_content() or "")
    assert real_errors(web) == []


async def test_expired_revoked_and_empty_queue_get_a_clear_message(
    web: Web, page: Page, artifacts: Path
) -> None:
    cid = await web.launch(1, annotators_per_image=1, agreement_threshold=0.5)
    dee = await web.person("Dee")
    expired = await web.link(cid, dee["id"], ttl=1)
    revoked = await web.link(cid, dee["id"])
    r = await web.p.http.post(f"/links/{revoked['id']}/revoke", headers=operator())
    assert r.status_code == 200
    await asyncio.sleep(1.1)

    await page.goto(expired["url"])
    await page.wait_for_selector("#screen:not([hidden])")
    assert await page.locator("#screen-title").text_content() == "This link no longer works"
    assert await page.locator("#screen-text").text_content() == LINK_EXPIRED
    await page.screenshot(path=str(artifacts / "annotation-page-expired-link.png"))

    await page.goto(revoked["url"])
    await page.wait_for_selector("#screen:not([hidden])")
    assert await page.locator("#screen-text").text_content() == LINK_REVOKED

    await page.goto(f"{web.base_url}/work/not.a.link")
    await page.wait_for_selector("#screen:not([hidden])")
    assert "not valid" in (await page.locator("#screen-text").text_content() or "")

    # Someone else answers the only image: Dee's queue is empty.
    eve = await web.person("Eve")
    eve_link = await web.link(cid, eve["id"])
    t = (
        await web.p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(eve_link["token"]))
    ).json()
    r = await web.p.http.post(
        f"/campaigns/{cid}/tasks/{t['task']['assignment_id']}/response",
        json={
            "idempotency_key": uuid.uuid4().hex,
            "objects": [{"type": "tag", "label": web.p.truth[f"{cid}-0"]}],
        },
        headers=bearer(eve_link["token"]),
    )
    assert r.status_code == 200
    fresh = await web.link(cid, dee["id"])
    await page.goto(fresh["url"])
    await page.wait_for_selector("#screen:not([hidden])")
    # The only image is answered, so the campaign may already be publishing when the page
    # asks: either way the person gets a clear screen, not an error.
    title = await page.locator("#screen-title").text_content()
    text_shown = await page.locator("#screen-text").text_content() or ""
    assert (title, "No image needs you" in text_shown) == ("The queue is empty", True) or (
        title,
        text_shown,
    ) == ("Nothing to label", CAMPAIGN_NOT_RUNNING)
    await page.screenshot(path=str(artifacts / "annotation-page-empty-queue.png"))
    assert real_errors(web) == []
