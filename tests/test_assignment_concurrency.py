"""A crowd asking for work at once never oversubscribes a slot, on PostgreSQL and on SQLite.

100 annotators (half with their person token, half with a campaign link) send
``POST /campaigns/{id}/tasks/next`` together through the real API; then they all answer at
once and ask again. Per image, live leases plus answers never exceed ``annotators_per_image``,
nobody holds one image twice, and nobody is given an image they already answered.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from typing import Any

import pytest
from sqlalchemy import select

from db.models import Assignment, Item, Response
from services.errors import CAMPAIGN_NOT_RUNNING
from tests.pipeline.conftest import (  # noqa: F401  (fixtures, used by name)
    Pipeline,
    bearer,
    db_url,
    operator,
    pipeline,
    pipeline_unstarted,
)

pytestmark = pytest.mark.timeout(240)

CROWD = 100
IMAGES = 40
PER_IMAGE = 3


@pytest.fixture
def quorum(pipeline: Pipeline) -> Pipeline:  # noqa: F811
    """A running Quorum (tests/pipeline/conftest.py), on SQLite and on PostgreSQL."""
    return pipeline


async def ask_all(p: Pipeline, campaign_id: str, tokens: list[str]) -> list[dict[str, Any]]:
    replies = await asyncio.gather(
        *(p.http.post(f"/campaigns/{campaign_id}/tasks/next", headers=bearer(t)) for t in tokens)
    )
    out = []
    for r in replies:
        if r.status_code == 409 and r.json()["message"] == CAMPAIGN_NOT_RUNNING:
            out.append({"task": None})  # every image is answered: the campaign is publishing
            continue
        assert r.status_code == 200, r.text
        out.append(r.json())
    return out


async def check_slots(p: Pipeline, campaign_id: str) -> dict[str, set[str]]:
    """The database's invariants; returns who holds or answered each image."""
    async with p.sessions() as s:
        rows = (
            await s.execute(
                select(Assignment.item_id, Assignment.annotator_id, Assignment.state).where(
                    Assignment.campaign_id == campaign_id
                )
            )
        ).all()
        slots = dict(
            (
                await s.execute(
                    select(Item.id, Item.slots_taken).where(Item.campaign_id == campaign_id)
                )
            ).all()
        )
        answered = (
            await s.execute(
                select(Response.item_id, Response.annotator_id).where(
                    Response.campaign_id == campaign_id
                )
            )
        ).all()
    holders: dict[str, list[str]] = defaultdict(list)
    for item_id, annotator_id, state in rows:
        if state in {"leased", "submitted"}:
            holders[item_id].append(annotator_id)
    for item_id, people in holders.items():
        assert len(people) <= PER_IMAGE, f"{item_id} oversubscribed: {people}"
        assert len(set(people)) == len(people), f"someone holds {item_id} twice"
        assert slots[item_id] == len(people), f"{item_id}: slots_taken disagrees with its leases"
    live = Counter(a for _, a, state in rows if state == "leased")
    assert max(live.values(), default=0) <= 1, "someone holds more than max_concurrent leases"
    assert len(set(answered)) == len(answered), "someone answered an image twice"
    return {item: set(people) for item, people in holders.items()}


async def items_of(p: Pipeline, tasks: dict[int, dict[str, Any]]) -> dict[int, str]:
    """The item of each task, as the operator knows it (annotators see only assignments)."""
    async with p.sessions() as s:
        by_assignment = dict(
            (
                await s.execute(
                    select(Assignment.id, Assignment.item_id).where(
                        Assignment.id.in_([t["assignment_id"] for t in tasks.values()])
                    )
                )
            ).all()
        )
    return {n: by_assignment[t["assignment_id"]] for n, t in tasks.items()}


async def test_a_hundred_concurrent_claims_never_share_a_slot(quorum: Pipeline) -> None:
    p = quorum
    cid = await p.launch(
        images=IMAGES, annotators_per_image=PER_IMAGE, agreement_threshold=0.5, lease_timeout="5m"
    )
    crowd = await p.people([1.0] * CROWD)
    tokens = []
    for n, person in enumerate(crowd):
        if n % 2:
            r = await p.http.post(
                f"/campaigns/{cid}/links", json={"person_id": person.id}, headers=operator()
            )
            tokens.append(r.json()["token"])
        else:
            tokens.append(person.token)

    # Everyone at once. SKIP LOCKED may leave someone empty-handed while the rows they could
    # have taken are locked by others; they ask again, as the page does.
    replies = await ask_all(p, cid, tokens)
    tasks: dict[int, dict[str, Any]] = {
        n: r["task"] for n, r in enumerate(replies) if r["task"] is not None
    }
    await check_slots(p, cid)
    for _ in range(5):
        waiting = [n for n in range(CROWD) if n not in tasks]
        if not waiting:
            break
        again = await ask_all(p, cid, [tokens[n] for n in waiting])
        tasks.update({n: r["task"] for n, r in zip(waiting, again, strict=True) if r["task"]})
    assert len(tasks) == CROWD, "120 slots for 100 people: everyone gets an image"
    assert len({t["assignment_id"] for t in tasks.values()}) == CROWD
    items = await items_of(p, tasks)
    per_item = Counter(items.values())
    assert max(per_item.values()) <= PER_IMAGE
    holders = await check_slots(p, cid)
    assert sum(len(v) for v in holders.values()) == CROWD

    # Everyone answers at once, then asks again at once: 20 slots are left for 100 people,
    # and nobody may be given the image they just answered.
    submitted = await asyncio.gather(
        *(
            p.http.post(
                f"/campaigns/{cid}/tasks/{task['assignment_id']}/response",
                json={
                    "idempotency_key": uuid.uuid4().hex,
                    "objects": [{"type": "tag", "label": p.truth[items[n]]}],
                },
                headers=bearer(tokens[n]),
            )
            for n, task in tasks.items()
        )
    )
    assert [r.status_code for r in submitted] == [200] * CROWD
    answered: dict[int, set[str]] = {n: {item} for n, item in items.items()}

    given = 0
    for _ in range(10):
        again = await ask_all(p, cid, tokens)
        got = {n: r["task"] for n, r in enumerate(again) if r["task"]}
        if not got:
            break
        got_items = await items_of(p, got)
        for n, item in got_items.items():
            assert item not in answered[n], "an annotator was given an image twice"
            answered[n].add(item)
        given += len(got)
        await check_slots(p, cid)
        # Answer at once, so the next round sees those slots taken for good.
        replies = await asyncio.gather(
            *(
                p.http.post(
                    f"/campaigns/{cid}/tasks/{task['assignment_id']}/response",
                    json={
                        "idempotency_key": uuid.uuid4().hex,
                        "objects": [{"type": "tag", "label": p.truth[got_items[n]]}],
                    },
                    headers=bearer(tokens[n]),
                )
                for n, task in got.items()
            )
        )
        assert [r.status_code for r in replies] == [200] * len(got)
    assert given == IMAGES * PER_IMAGE - CROWD
    holders = await check_slots(p, cid)
    assert all(len(people) == PER_IMAGE for people in holders.values())
    assert len(holders) == IMAGES
    result = await p.result(cid, within=90)
    assert result.counts.finished == IMAGES
