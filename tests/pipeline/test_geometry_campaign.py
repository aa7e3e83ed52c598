"""A campaign with boxes and polygons, end to end through the workflows."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import pytest

from storage import read_records
from tests.pipeline.conftest import Pipeline, bearer

ONTOLOGY = {
    "classes": [
        {
            "name": "car",
            "geometry": "box",
            "attributes": [{"name": "colour", "kind": "single", "options": ["red", "blue"]}],
        },
        {"name": "road", "geometry": "polygon"},
    ]
}
# The scene every image shows (images are 96 x 96): one car and one road.
CAR = {"x": 20.0, "y": 30.0, "w": 30.0, "h": 20.0}
ROAD = [[0.0, 70.0], [96.0, 60.0], [96.0, 96.0], [0.0, 96.0]]


def drawing(rng: random.Random, noise: float, *, sees_car: bool = True) -> list[dict[str, Any]]:
    """What one annotator draws: the truth plus pixel noise of a known size."""
    jitter = lambda: rng.uniform(-noise, noise)  # noqa: E731
    objects: list[dict[str, Any]] = [
        {
            "type": "polygon",
            "label": "road",
            "points": [
                [min(96, max(0, x + jitter())), min(96, max(0, y + jitter()))] for x, y in ROAD
            ],
        },
    ]
    if sees_car:
        objects.append(
            {
                "type": "box",
                "label": "car",
                "x": CAR["x"] + jitter(),
                "y": CAR["y"] + jitter(),
                "w": CAR["w"] + jitter(),
                "h": CAR["h"] + jitter(),
                "attributes": {"colour": "red"},
            }
        )
    return objects


async def _answer_all(p: Pipeline, cid: str, token: str, draw: Any) -> int:
    answered = 0
    while True:
        r = await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(token))
        if r.status_code == 409 or r.json()["task"] is None:
            return answered
        task = r.json()["task"]
        assert (task["width"], task["height"]) == (96, 96)
        s = await p.http.post(
            f"/campaigns/{cid}/tasks/{task['assignment_id']}/response",
            headers=bearer(token),
            json={"idempotency_key": uuid.uuid4().hex, "objects": draw()},
        )
        assert s.status_code == 200, s.text
        answered += 1


async def test_boxes_and_polygons_reach_a_published_consensus(pipeline: Pipeline) -> None:
    p = pipeline
    cid = await p.launch(
        images=3, annotators_per_image=3, agreement_threshold=0.7, ontology=ONTOLOGY
    )
    crowd = await p.people([1.0, 1.0, 1.0])
    rng = random.Random(5)
    for person in crowd:
        assert await _answer_all(p, cid, person.token, lambda: drawing(rng, 1.5)) == 3

    result = await p.result(cid)
    assert (result.counts.finished, result.counts.agreed) == (3, 3)
    ctx = p.http._transport.app.state.ctx  # type: ignore[attr-defined]
    records = list(read_records(ctx.store, result.dataset, result.version))
    assert len(records) == 3
    for record in records:
        assert record["method"] == "consensus"
        assert (record["width"], record["height"]) == (96, 96)
        by_label = {o["label"]: o for o in record["objects"]}
        assert set(by_label) == {"car", "road"}
        car, road = by_label["car"], by_label["road"]
        # Averaging three noisy boxes lands close to the truth.
        for key in ("x", "y", "w", "h"):
            assert car[key] == pytest.approx(CAR[key], abs=1.5)
        assert car["attributes"] == {"colour": "red"}
        assert len(car["support"]) == 3 and 0.8 < car["confidence"] <= 1.0
        assert road["type"] == "polygon" and len(road["points"]) >= 4
        assert len(record["responses"]) == 3
        assert record["agreement"] > 0.7


async def test_a_missed_object_lowers_agreement_and_goes_to_review(pipeline: Pipeline) -> None:
    p = pipeline
    cid = await p.launch(
        images=1, annotators_per_image=2, agreement_threshold=0.9, ontology=ONTOLOGY
    )
    seer, misser = await p.people([1.0, 1.0])
    (expert,) = await p.people([1.0], role="expert")
    rng = random.Random(1)
    await _answer_all(p, cid, seer.token, lambda: drawing(rng, 0.5))
    await _answer_all(p, cid, misser.token, lambda: drawing(rng, 0.5, sees_car=False))

    for _ in range(100):
        pending = (
            await p.http.get(f"/campaigns/{cid}/reviews", headers=bearer(expert.token))
        ).json()
        if pending:
            break
        await asyncio.sleep(0.1)
    (entry,) = pending
    details = entry["agreement_details"]
    assert entry["agreement"] < 0.9
    (pair,) = details["pairs"]
    # The road matched; the car one annotator drew matched nothing.
    assert len(pair["matches"]) == 1
    assert len(pair["unmatched_a"]) + len(pair["unmatched_b"]) == 1
    seer_answer = next(a for a in entry["answers"] if a["annotator_id"] == seer.id)
    r = await p.http.post(
        f"/items/{entry['item_id']}/review",
        headers=bearer(expert.token),
        json={
            "decision": "accept_response",
            "response_id": seer_answer["response_id"],
            "idempotency_key": uuid.uuid4().hex,
        },
    )
    assert r.status_code == 200, r.text
    result = await p.result(cid)
    assert result.counts.reviewed == 1
    ctx = p.http._transport.app.state.ctx  # type: ignore[attr-defined]
    (record,) = read_records(ctx.store, result.dataset, result.version)
    assert {o["label"] for o in record["objects"]} == {"car", "road"}
    assert all(o["support"] == [seer_answer["response_id"]] for o in record["objects"])
