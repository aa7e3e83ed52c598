"""The review page in a real browser: an expert opens a link, sees every annotator's answer,
accepts one (and edits another), and the items finalize through their workflows."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page
from sqlalchemy import func, select

from db.models import Consensus, Item, Review
from tests.pipeline.conftest import bearer
from tests.web.conftest import Web

pytestmark = pytest.mark.timeout(150)

ONTOLOGY: dict[str, Any] = {
    "multi_label": True,
    "classes": [
        {"name": "circle"},
        {"name": "square"},
        {"name": "triangle"},
        {
            "name": "shape",
            "geometry": "box",
            "attributes": [{"name": "filled", "kind": "single", "options": ["yes", "no"]}],
        },
    ],
}


def answer(tag: str, box: tuple[float, float, float, float], filled: str) -> list[dict[str, Any]]:
    x, y, w, h = box
    return [
        {"type": "tag", "label": tag},
        {
            "type": "box",
            "label": "shape",
            "x": x,
            "y": y,
            "w": w,
            "h": h,
            "attributes": {"filled": filled},
        },
    ]


async def in_review(web: Web, campaign_id: str) -> int:
    async with web.p.sessions() as s:
        return int(
            await s.scalar(
                select(func.count())
                .select_from(Item)
                .where(Item.campaign_id == campaign_id, Item.status == "review")
            )
            or 0
        )


async def test_an_expert_sees_every_answer_accepts_one_and_the_item_finalizes(
    web: Web, page: Page, artifacts: Path
) -> None:
    cid = await web.launch(2, ontology=ONTOLOGY, annotators_per_image=2, agreement_threshold=1.0)
    ann = [await web.person(name) for name in ("Alan", "Barbara")]
    given = {
        ann[0]["id"]: answer("circle", (60, 60, 200, 180), "yes"),
        ann[1]["id"]: answer("square", (250, 240, 180, 200), "no"),
    }
    for person in ann:
        for _ in range(2):
            t = (
                await web.p.http.post(
                    f"/campaigns/{cid}/tasks/next", headers=bearer(person["token"])
                )
            ).json()["task"]
            r = await web.p.http.post(
                f"/campaigns/{cid}/tasks/{t['assignment_id']}/response",
                json={"idempotency_key": uuid.uuid4().hex, "objects": given[person["id"]]},
                headers=bearer(person["token"]),
            )
            assert r.status_code == 200, r.text
    for _ in range(150):
        if await in_review(web, cid) == 2:
            break
        await asyncio.sleep(0.1)
    assert await in_review(web, cid) == 2, "the two answers disagree: both images await review"

    grace = await web.person("Grace Hopper", role="expert")
    link = await web.link(cid, grace["id"])
    assert "/review/" in link["url"]
    await page.goto(link["url"])
    await page.wait_for_selector(f"body[data-item='{cid}-0']")
    await page.wait_for_selector(".stage-image[href]")
    assert await page.locator("#queue li").count() == 2
    assert await page.locator("#person").text_content() == "Grace Hopper"

    # Every answer is listed and drawn, one colour per annotator, and can be hidden.
    cards = page.locator("#answers .answer")
    assert await cards.count() == 2
    assert {await c.get_attribute("data-annotator") for c in await cards.all()} == set(given)
    for person in ann:
        card = page.locator(f"#answers .answer[data-annotator='{person['id']}']")
        assert "shape · box" in (await card.text_content() or "")
    assert await page.locator(".reference .obj-box").count() == 2
    await page.locator("#answers .answer").nth(1).locator("input[type=checkbox]").uncheck()
    assert await page.locator(".reference .obj-box").count() == 1
    await page.locator("#answers .answer").nth(1).locator("input[type=checkbox]").check()
    assert await page.locator(".reference .obj-box").count() == 2
    await page.screenshot(path=str(artifacts / "review-page.png"))

    # Accept Alan's answer on the first image.
    alan = page.locator(f"#answers .answer[data-annotator='{ann[0]['id']}']")
    await alan.get_by_role("button", name="Accept this answer").click()
    await page.wait_for_selector(f"#decided li[data-item='{cid}-0']")
    decided = await page.locator(f"#decided li[data-item='{cid}-0']").text_content()
    assert decided is not None and "by Grace Hopper at" in decided

    # The second image opens by itself; the expert edits Barbara's answer: keeps her box,
    # drops her tag, and tags it a triangle.
    await page.wait_for_selector(f"body[data-item='{cid}-1']")
    await page.wait_for_selector(".stage-image[href]")
    barbara = page.locator(f"#answers .answer[data-annotator='{ann[1]['id']}']")
    await barbara.get_by_role("button", name="Edit from this").click()
    await page.wait_for_selector("#editing:not([hidden])")
    await page.locator("#tags label", has_text="square").click()
    await page.locator("#tags label", has_text="triangle").click()
    await page.locator("#objects li", has_text="shape").click()
    await page.locator("#details fieldset[data-attribute='filled'] label", has_text="yes").click()
    await page.screenshot(path=str(artifacts / "review-page-editing.png"))
    await page.get_by_role("button", name="Submit my answer").click()
    await page.wait_for_selector(f"#decided li[data-item='{cid}-1']")
    await page.wait_for_selector("#screen:not([hidden])")
    assert await page.locator("#screen-title").text_content() == "Nothing awaits review"

    # Both decisions reached the workflows: the campaign finishes with both images reviewed.
    result = await web.p.result(cid, within=60)
    assert (result.counts.finished, result.counts.reviewed) == (2, 2)
    async with web.p.sessions() as s:
        reviews = {
            r.item_id: r for r in (await s.scalars(select(Review).where(Review.campaign_id == cid)))
        }
        consensus = {
            c.item_id: c
            for c in (await s.scalars(select(Consensus).where(Consensus.campaign_id == cid)))
        }
    first, second = reviews[f"{cid}-0"], reviews[f"{cid}-1"]
    assert (first.decision, first.expert_id) == ("accept_response", grace["id"])
    assert first.body["objects"] == [
        {**o, "attributes": o.get("attributes", {})}
        | ({"angle": 0.0} if o["type"] == "box" else {})
        for o in given[ann[0]["id"]]
    ]
    assert (second.decision, second.expert_id) == ("edit", grace["id"])
    edited = {o["type"]: o for o in second.body["objects"]}
    assert edited["tag"]["label"] == "triangle"
    assert edited["box"]["attributes"] == {"filled": "yes"}
    assert (edited["box"]["x"], edited["box"]["w"]) == (250, 180)
    for item_id, review in reviews.items():
        assert consensus[item_id].method == "review"
        assert consensus[item_id].reviewer_id == grace["id"]
        assert consensus[item_id].review_id == review.id
    assert [e for e in web.console_errors if not e.startswith("Failed to load resource")] == []


async def test_agreement_details_and_the_consensus_are_shown_and_the_consensus_accepted(
    web: Web, page: Page, artifacts: Path
) -> None:
    cid = await web.launch(1, ontology=ONTOLOGY, annotators_per_image=2, agreement_threshold=1.0)
    ann = [await web.person(name) for name in ("Ada", "Bob")]
    boxes = {
        ann[0]["id"]: [(40, 40, 120, 100), (300, 280, 120, 120)],
        ann[1]["id"]: [(45, 48, 118, 96), (200, 380, 60, 60)],
    }
    for n, person in enumerate(ann):
        t = (
            await web.p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(person["token"]))
        ).json()["task"]
        objects = [{"type": "tag", "label": ["circle", "square"][n]}] + [
            {"type": "box", "label": "shape", "x": x, "y": y, "w": w, "h": h}
            for x, y, w, h in boxes[person["id"]]
        ]
        r = await web.p.http.post(
            f"/campaigns/{cid}/tasks/{t['assignment_id']}/response",
            json={"idempotency_key": uuid.uuid4().hex, "objects": objects},
            headers=bearer(person["token"]),
        )
        assert r.status_code == 200, r.text
    for _ in range(150):
        if await in_review(web, cid) == 1:
            break
        await asyncio.sleep(0.1)
    assert await in_review(web, cid) == 1

    expert = await web.person("Edsger", role="expert")
    link = await web.link(cid, expert["id"])
    (entry,) = (
        await web.p.http.get(f"/campaigns/{cid}/reviews", headers=bearer(link["token"]))
    ).json()
    details = entry["agreement_details"]
    (pair,) = details["pairs"]
    assert pair["matches"], "the two overlapping boxes are matched"
    drawn_consensus = [o for o in entry["consensus"]["objects"] if o["type"] != "tag"]

    # First without the newer keys (an older server): the page still shows the answers.
    async def older_server(route: Any) -> None:
        response = await route.fetch()
        entries = await response.json()
        for e in entries:
            for key in ("width", "height", "image_url", "consensus", "agreement_details"):
                e.pop(key, None)
        await route.fulfill(response=response, json=entries)

    await page.route("**/campaigns/*/reviews", older_server)
    await page.goto(link["url"])
    await page.wait_for_selector(f"body[data-item='{cid}-0']")
    await page.wait_for_selector(".stage-image[href]")
    assert await page.locator(".reference .obj-box").count() == 4
    assert "No per-object details" in (await page.locator("#agreement").text_content() or "")
    assert await page.get_by_role("button", name="Accept consensus").count() == 1
    await page.unroute("**/campaigns/*/reviews")

    await page.reload()
    await page.wait_for_selector(f"body[data-item='{cid}-0']")
    await page.wait_for_selector(".stage-image[href]")
    agreement = page.locator("#agreement")
    assert await agreement.locator(".score-big").text_content() == f"{details['score']:.2f}"
    rows = len(pair["matches"]) + len(pair["unmatched_a"]) + len(pair["unmatched_b"])
    assert await agreement.locator("tr.match").count() == rows
    assert "A1 ↔ A2" in (await agreement.text_content() or "")
    # Hovering a match lights up the two objects it pairs, and dims the others.
    await agreement.locator("tr.match").first.hover()
    assert await page.locator(".reference .obj.highlight").count() == 2
    assert await page.locator(".reference .obj.dim").count() == 2
    await page.locator("#answers h3").hover()
    assert await page.locator(".reference .obj.highlight").count() == 0

    # The consensus is listed with its confidence and support, and drawn when asked.
    consensus = page.locator("#consensus")
    assert "confidence" in (await consensus.text_content() or "")
    assert await page.locator(".reference .obj.dashed").count() == 0
    await consensus.locator("input[type=checkbox]").check()
    assert await page.locator(".reference .obj.dashed").count() == len(drawn_consensus)
    await agreement.locator("tr.match").first.hover()
    await page.screenshot(path=str(artifacts / "review-page-agreement.png"))

    await consensus.get_by_role("button", name="Accept consensus").click()
    await page.wait_for_selector(f"#decided li[data-item='{cid}-0']")
    result = await web.p.result(cid, within=60)
    assert result.counts.reviewed == 1
    async with web.p.sessions() as s:
        review = await s.scalar(select(Review).where(Review.item_id == f"{cid}-0"))
    assert review is not None
    assert (review.decision, review.expert_id) == ("accept_consensus", expert["id"])
