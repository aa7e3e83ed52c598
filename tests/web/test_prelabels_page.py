"""Pre-labels on the annotation page, in a real browser: the model's boxes are drawn when the
image opens, and the annotator moves, deletes, relabels or keeps them; the stored answer is
what they left."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from tests.web.conftest import Web
from tests.web.test_annotation_page import SIZE, open_page, real_errors, responses, to_screen

pytestmark = pytest.mark.timeout(120)

ONTOLOGY: dict[str, Any] = {
    "classes": [
        {
            "name": "car",
            "geometry": "box",
            "attributes": [{"name": "color", "kind": "single", "options": ["red", "blue"]}],
        },
        {"name": "truck", "geometry": "box"},
    ]
}


def box(label: str, x: float, y: float, w: float, h: float, **attributes: Any) -> dict[str, Any]:
    return {"type": "box", "label": label, "x": x, "y": y, "w": w, "h": h, "attributes": attributes}


PREDICTIONS = {
    0: [box("car", 60, 80, 160, 110, color="red"), box("truck", 300, 300, 100, 80)],
    1: [box("car", 200, 40, 120, 90, color="blue")],
    2: [box("truck", 20, 20, 200, 150)],
}


async def drag_screen(page: Page, a: tuple[float, float], b: tuple[float, float]) -> None:
    await page.mouse.move(*(await to_screen(page, *a)))
    await page.mouse.down()
    await page.mouse.move(*(await to_screen(page, *b)), steps=8)
    await page.mouse.up()


async def submit_and_wait(page: Page) -> None:
    shown = await page.evaluate("document.body.dataset.assignment")
    await page.click("#submit")
    await page.wait_for_selector(
        f"body[data-assignment]:not([data-assignment='{shown}']), #screen:not([hidden])"
    )


async def item_shown(web: Web, cid: str, page: Page) -> str:
    """The item of the task on the page (the page knows only its assignment)."""
    assignment = await page.evaluate("document.body.dataset.assignment")
    return await web.p.item_of(cid, {"assignment_id": assignment})


def geometry(obj: dict[str, Any]) -> tuple[float, ...]:
    return (obj["x"], obj["y"], obj["w"], obj["h"])


async def test_the_models_boxes_start_the_drawing_and_the_answer_is_what_is_left(
    web: Web, page: Page, artifacts: Path
) -> None:
    lines = [
        json.dumps({"file_name": f"image_{n:05d}.png", "objects": objects, "uncertainty": 0.5})
        for n, objects in PREDICTIONS.items()
    ]
    pre = web.p.tmp / "pre.jsonl"
    pre.write_text("\n".join(lines) + "\n")
    cid = await web.launch(
        3,
        ontology=ONTOLOGY,
        annotators_per_image=1,
        agreement_threshold=0.5,
        prelabels={"file": str(pre), "model": "det-v1"},
    )
    ada = await web.person("Ada")
    link = await web.link(cid, ada["id"])
    await open_page(page, link["url"])
    assert await item_shown(web, cid, page) == f"{cid}-0"

    # Image 0: both predicted boxes are there, said to come from a model.
    objects = page.locator("#objects li")
    assert await objects.count() == 2
    assert await page.locator(".layers .obj-box").count() == 2
    notice = await page.locator("#messages .notice").text_content()
    assert notice is not None and notice.startswith("Pre-filled with 2 objects from a model")
    await page.screenshot(path=str(artifacts / "annotation-page-prelabels.png"))
    # Move the car by (+40, +20), delete the truck.
    await page.keyboard.press("v")
    await drag_screen(page, (140, 135), (180, 155))
    await objects.filter(has_text="truck").click()
    await page.keyboard.press("Delete")
    assert await objects.count() == 1
    await submit_and_wait(page)

    # Image 1: relabel the car a truck (its colour goes: trucks have no colour).
    assert await item_shown(web, cid, page) == f"{cid}-1"
    assert await objects.count() == 1
    await page.keyboard.press("v")
    await objects.first.click()
    await page.locator("#details select[aria-label='class']").select_option("truck")
    assert "truck" in (await objects.first.text_content() or "")
    await submit_and_wait(page)

    # Image 2: keep the prediction as it is.
    assert await item_shown(web, cid, page) == f"{cid}-2"
    assert await objects.count() == 1
    await submit_and_wait(page)

    saved = {r.item_id: r.body["objects"] for r in await responses(web, cid)}
    assert set(saved) == {f"{cid}-0", f"{cid}-1", f"{cid}-2"}
    (moved,) = saved[f"{cid}-0"]
    assert moved["label"] == "car" and moved["attributes"] == {"color": "red"}
    assert geometry(moved) == pytest.approx((100, 100, 160, 110), abs=3)
    (relabeled,) = saved[f"{cid}-1"]
    assert relabeled["label"] == "truck" and relabeled["attributes"] == {}
    assert geometry(relabeled) == pytest.approx((200, 40, 120, 90))
    (kept,) = saved[f"{cid}-2"]
    assert kept == {**PREDICTIONS[2][0], "angle": 0}
    assert SIZE == 480  # the page tests' image size, which the boxes above fit
    assert real_errors(web) == []


async def test_a_voting_model_is_not_shown(web: Web, page: Page) -> None:
    pre = web.p.tmp / "pre.jsonl"
    pre.write_text(json.dumps({"file_name": "image_00000.png", "objects": PREDICTIONS[0]}) + "\n")
    cid = await web.launch(
        1,
        ontology=ONTOLOGY,
        annotators_per_image=1,
        agreement_threshold=0.5,
        prelabels={"file": str(pre), "mode": "voter"},
    )
    bo = await web.person("Bo")
    link = await web.link(cid, bo["id"])
    await open_page(page, link["url"])
    assert await page.locator("#objects li").count() == 0
    assert await page.locator("#messages .notice").count() == 0
    assert real_errors(web) == []
