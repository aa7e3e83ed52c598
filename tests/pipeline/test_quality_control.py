"""Quality control end to end: gold items catch a spammer, adaptive redundancy spends answers
where they are needed. Real Temporal, SQLite and PostgreSQL, MinIO, the API over ASGI."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from db.audit_models import AuditEntry
from db.models import (
    AnnotatorQuality,
    Assignment,
    Campaign,
    Consensus,
    DatasetVersion,
    Item,
    Response,
)
from infra.temporal_client import DATA_CONVERTER
from schemas.workflow_io import item_workflow_id
from services.gold import gold_salt, next_gold
from services.links import TASK_LINK_NOT_GOLD
from services.task_assignment import BLOCKED_IN_CAMPAIGN
from simulation.crowd import SimulatedAnnotator, annotate_until_empty, submit
from simulation.images import generate_images
from storage import read_records
from tests.pipeline.conftest import Pipeline, bearer, operator
from workers.registry import WORKFLOWS
from workflows.campaign_workflow import FINAL_REFIT_PATCH, REFIT_GAP_PATCH
from workflows.item_workflow import REOPEN_UNANSWERED_PATCH

# A spammer is blocked at the gold answer that brings their gold evidence to MIN_EVIDENCE with
# a smoothed gold accuracy below MIN_ACCURACY. At GOLD_RATE one of every two tasks is gold, so
# a spammer who misses every gold item answers at most MIN_EVIDENCE / GOLD_RATE = 6 tasks.
GOLD_RATE = 0.5
MIN_EVIDENCE = 3
MIN_ACCURACY = 0.6
SPAMMER_TASK_BOUND = int(MIN_EVIDENCE / GOLD_RATE)


async def _gold_spec(p: Pipeline) -> tuple[list[dict[str, str]], list[str]]:
    """Gold items whose truth is never "circle" (what our spammer always answers)."""
    images = generate_images(p.tmp / "gold", 6, seed=99)
    gold = [
        {"uri": (p.tmp / "gold" / image.path.name).resolve().as_uri(), "label": image.label}
        for image in images
        if image.label != "circle"
    ]
    return gold, [g["label"] for g in gold]


async def _wait_status(p: Pipeline, item_id: str, status: str, within: float = 30) -> None:
    for _ in range(int(within / 0.05)):
        async with p.sessions() as s:
            item = await s.get(Item, item_id)
        if item is not None and item.status == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{item_id} did not become {status}")


def _patch_markers(history: WorkflowHistory) -> list[str]:
    """The payloads of a history's markers (a patch marker holds its patch ID)."""
    return [
        payload.data.decode()
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
        for details in e.marker_recorded_event_attributes.details.values()
        for payload in details.payloads
    ]


async def _entries(p: Pipeline, cid: str, action: str) -> list[AuditEntry]:
    async with p.sessions() as s:
        return list(
            (
                await s.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.chain == cid, AuditEntry.action == action)
                    .order_by(AuditEntry.seq)
                )
            ).all()
        )


async def test_gold_items_block_a_spammer_and_none_of_their_labels_are_used(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    gold, gold_truth = await _gold_spec(p)
    cid = await p.launch(
        images=9,
        annotators_per_image=3,
        agreement_threshold=0.6,
        gold={"rate": GOLD_RATE, "items": gold},
        reliability={
            "min_accuracy": MIN_ACCURACY,
            "min_evidence": MIN_EVIDENCE,
            "reopen_answered": True,
        },
    )
    for i, label in enumerate(gold_truth):
        p.truth[f"{cid}-{9 + i}"] = label
    first, second, third = await p.people([1.0, 1.0, 1.0])
    (spammer,) = await p.people([0.0], role="annotator")

    # Two good annotators answer the first images (and, every other task, a gold item).
    for good in (first, second):
        assert await annotate_until_empty(p.http, good, cid, p.oracle, max_answers=8) == 8

    # The spammer always answers "circle": right on circles, so some of their answers finish
    # images alongside the good ones before anyone knows better.
    answered, spam_items, gold_seen = 0, [], 0
    while True:
        r = await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(spammer.token))
        if r.status_code == 403:
            assert r.json()["message"] == BLOCKED_IN_CAMPAIGN
            break
        assert r.status_code == 200, r.text
        task = r.json()["task"]
        assert task is not None
        assert set(task) == {  # a gold task looks like any other
            "assignment_id",
            "image_url",
            "width",
            "height",
            "lease_expires_at",
            "resumed",
            "prelabel",
        }
        s = await submit(p.http, spammer.token, cid, task["assignment_id"], ["circle"])
        if s.status_code == 403:  # blocked while holding this lease: refused, not counted
            assert s.json()["message"] == BLOCKED_IN_CAMPAIGN
            break
        assert s.status_code == 200, s.text
        answered += 1
        item = await p.item_of(cid, task)
        if int(item.rsplit("-", 1)[1]) >= 9:
            gold_seen += 1
        else:
            spam_items.append(item)
            if len(spam_items) == 1:  # before the gold tells: it finishes with the spam in it
                await _wait_status(p, item, "done")
        assert answered <= SPAMMER_TASK_BOUND, "the spammer was not blocked in time"
    # Blocked at the latest at the third gold miss; the model (Dawid-Skene with the gold
    # clamped) may see it from the agreement sooner.
    assert answered <= SPAMMER_TASK_BOUND and gold_seen <= MIN_EVIDENCE
    assert spam_items

    result, _ = await p.crowd_until_done(cid, [first, second, third], within=90)
    assert result.counts.finished == 9

    async with p.sessions() as s:
        consensus = (await s.scalars(select(Consensus).where(Consensus.campaign_id == cid))).all()
        spam = (
            await s.scalars(
                select(Response)
                .join(Item, Item.id == Response.item_id)
                .where(Response.annotator_id == spammer.id, Item.kind == "image")
            )
        ).all()
        record = await s.get(AnnotatorQuality, (cid, spammer.id))
        gold_done = await s.scalar(
            select(Consensus).join(Item).where(Item.campaign_id == cid, Item.kind == "gold")
        )
        version = await s.scalar(select(DatasetVersion).where(DatasetVersion.campaign_id == cid))
    assert len(consensus) == 9
    assert all(spammer.id not in c.annotator_ids for c in consensus)
    assert sorted(r.item_id for r in spam) == sorted(spam_items)
    assert all(r.voided_at is not None for r in spam)
    assert record is not None and record.status == "blocked" and record.settled
    assert gold_done is None
    assert version is not None and version.item_count == 9  # gold is never published

    ctx = p.http._transport.app.state.ctx  # type: ignore[attr-defined]
    records = list(read_records(ctx.store, result.dataset, result.version))
    assert len(records) == 9
    assert all(spammer.id not in [a["annotator_id"] for a in rec["responses"]] for rec in records)
    assert all(rec["labels"] == [p.truth[rec["item_id"]]] for rec in records)

    blocked = await _entries(p, cid, "annotator.blocked")
    assert [e.details["annotator_id"] for e in blocked] == [spammer.id]
    voided = await _entries(p, cid, "response.voided")
    assert sorted(e.item_id or "" for e in voided) == sorted(spam_items)
    # The images the spammer's answers had already finished are labeled again without them
    # (the first one surely; others when their consensus came before the block).
    reopened = {e.item_id for e in await _entries(p, cid, "item.reopened")}
    assert spam_items[0] in reopened and reopened <= set(spam_items)

    r = await p.http.get(f"/campaigns/{cid}/reliability", headers=operator())
    assert r.status_code == 200
    rows = {row["annotator_id"]: row for row in r.json()["annotators"]}
    assert rows[spammer.id]["status"] == "blocked"
    assert rows[spammer.id]["gold_score"] == 0.0
    assert rows[first.id]["status"] == "active" and rows[first.id]["gold_score"] == 1.0


async def test_an_image_that_lost_every_answer_in_review_is_labeled_again_not_left_empty(
    pipeline: Pipeline,
) -> None:
    """Two spammers (one always "circle", one always "square") disagree on images, which go to
    review; gold then blocks both and voids their answers. When the review times out there is
    no answer left to take the majority of: the image is re-opened and labeled by others."""
    p = pipeline
    images = generate_images(p.tmp / "gold", 9, seed=5)
    gold = [  # triangles: both spammers miss every gold item
        {"uri": (p.tmp / "gold" / image.path.name).resolve().as_uri(), "label": image.label}
        for image in images
        if image.label == "triangle"
    ]
    cid = await p.launch(
        images=6,
        annotators_per_image=2,
        agreement_threshold=1.0,
        gold={"rate": GOLD_RATE, "items": gold},
        reliability={"min_accuracy": MIN_ACCURACY, "min_evidence": MIN_EVIDENCE},
        review_timeout="15s",
    )
    for i, g in enumerate(gold):
        p.truth[f"{cid}-{6 + i}"] = g["label"]
    spammers = dict(zip(("circle", "square"), await p.people([0.0, 0.0]), strict=True))
    blocked: set[str] = set()
    while len(blocked) < 2:  # one task each in turn, so that both answer the first images
        for label, spammer in spammers.items():
            if label in blocked:
                continue
            r = await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(spammer.token))
            task = r.json().get("task") if r.status_code == 200 else None
            if r.status_code == 403 or task is None:
                blocked.add(label)
                continue
            sent = await submit(p.http, spammer.token, cid, task["assignment_id"], [label])
            assert sent.status_code in {200, 403}, sent.text
    first = f"{cid}-0"

    async def spam_voided() -> bool:
        async with p.sessions() as s:
            item = await s.get(Item, first)
            answers = (await s.scalars(select(Response).where(Response.item_id == first))).all()
        assert item is not None and item.status == "review", "image 0 left review too soon"
        return len(answers) == 2 and all(a.voided_at is not None for a in answers)

    for _ in range(200):  # the refit after the blocks voids their answers
        if await spam_voided():
            break
        await asyncio.sleep(0.05)
    else:  # a gold answer within a second of the last refit used to wait for the next wake
        raise AssertionError("the spammers' answers on image 0 were not voided within 10 s")
    async with p.sessions() as s:
        states = {
            q.annotator_id: q.status
            for q in await s.scalars(
                select(AnnotatorQuality).where(AnnotatorQuality.campaign_id == cid)
            )
        }
    assert all(states.get(spammer.id) == "blocked" for spammer in spammers.values())

    result, _ = await p.crowd_until_done(cid, await p.people([1.0, 1.0]), within=90)
    assert result.counts.finished == 6
    assert result.counts.review_timed_out == 0  # no image took the majority of nothing

    reopened = [
        e
        for e in await _entries(p, cid, "item.reopened")
        if e.details.get("reason") == "the review timed out and every answer had been voided"
    ]
    assert first in {e.item_id for e in reopened}
    assert all(e.details["voided_answers"] == 2 and e.details["wanted"] == 2 for e in reopened)
    spam_ids = {spammer.id for spammer in spammers.values()}
    async with p.sessions() as s:
        consensus = {
            c.item_id: c
            for c in await s.scalars(select(Consensus).where(Consensus.campaign_id == cid))
        }
    assert consensus[first].method == "majority_vote"
    assert len(consensus[first].annotator_ids) == 2
    assert not spam_ids & set(consensus[first].annotator_ids)
    ctx = p.http._transport.app.state.ctx  # type: ignore[attr-defined]
    records = list(read_records(ctx.store, result.dataset, result.version))
    assert len(records) == 6
    assert all(rec["labels"] == [p.truth[rec["item_id"]]] for rec in records)

    # The image's run went round once more, and its history replays with the current code.
    history = await p.temporal.get_workflow_handle(item_workflow_id(cid, 0)).fetch_history()
    markers = _patch_markers(history)
    assert any(REOPEN_UNANSWERED_PATCH in data for data in markers), markers
    await Replayer(workflows=list(WORKFLOWS), data_converter=DATA_CONVERTER).replay_workflow(
        history
    )


def _strings(value: Any) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [str(value)]


async def test_a_gold_task_cannot_be_told_from_an_image_and_its_answer_is_scored(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    gold, gold_truth = await _gold_spec(p)
    # At rate 0.5 one of an annotator's first two tasks is gold, the other an image.
    cid = await p.launch(images=3, annotators_per_image=2, gold={"rate": 0.5, "items": gold})
    (ada,) = await p.people([1.0])

    replies, submitted, seen = [], [], []
    for _ in range(2):
        r = await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(ada.token))
        assert r.status_code == 200, r.text
        task = r.json()["task"]
        assert task is not None, r.json()
        # The operator knows which item it is; the annotator answers by the assignment alone.
        asked = await p.http.get(
            f"/campaigns/{cid}/assignments/{task['assignment_id']}", headers=operator()
        )
        item = asked.json()
        label = (
            gold_truth[item["ordinal"] - 3] if item["kind"] == "gold" else p.truth[item["item_id"]]
        )
        s = await submit(p.http, ada.token, cid, task["assignment_id"], [label])
        assert s.status_code == 200, s.text
        replies.append(r.json())
        submitted.append(s.json())
        seen.append(item)
    assert sorted(k["kind"] for k in seen) == ["gold", "image"]
    assert {k["item_id"] for k in seen} - {f"{cid}-{3 + i}" for i in range(len(gold))} == {
        f"{cid}-0"
    }
    if seen[0]["kind"] == "gold":
        replies, submitted, seen = replies[::-1], submitted[::-1], seen[::-1]
    normal, gold_task = (reply["task"] for reply in replies)

    # The same fields, the same kinds of value, and nothing that names the item or its ordinal.
    assert set(normal) == set(gold_task)
    assert set(replies[0]) == set(replies[1]) and replies[0]["message"] == replies[1]["message"]
    for task, kind in zip((normal, gold_task), seen, strict=True):
        assert task["image_url"] == f"/campaigns/{cid}/tasks/{task['assignment_id']}/image"
        assert (task["prelabel"], task["resumed"]) == (None, False)
        # The campaign and the (random) assignment are all it names; with those taken out, the
        # item's ordinal appears nowhere (the lease's timestamp and the size aside).
        assert kind["item_id"] not in json.dumps(task)
        rest = [
            text.replace(cid, "").replace(task["assignment_id"], "")
            for key, value in task.items()
            if key not in {"lease_expires_at", "width", "height"}
            for text in _strings(value)
        ]
        assert not any(str(kind["ordinal"]) in text for text in rest), rest
        image = await p.http.get(task["image_url"], headers=bearer(ada.token))
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert not any("gold" in v or ".png" in v for v in image.headers.values())
    assert (normal["width"], normal["height"]) == (gold_task["width"], gold_task["height"])

    # Submitting by the assignment scores the gold answer, and the replies look alike too.
    assert set(submitted[0]) == set(submitted[1])
    assert [(a["late"], a["counted"], a["duplicate"]) for a in submitted] == [
        (False, True, False)
    ] * 2
    async with p.sessions() as s:
        scored = await s.scalar(
            select(Response).where(Response.assignment_id == gold_task["assignment_id"])
        )
        record = await s.get(AnnotatorQuality, (cid, ada.id))
    assert scored is not None and scored.gold_score == 1.0
    assert scored.item_id == next(k["item_id"] for k in seen if k["kind"] == "gold")
    assert record is not None and (record.gold_answers, record.gold_score_sum) == (1, 1.0)

    # Nor can a task link (whose token names its item) point at gold.
    r = await p.http.post(
        f"/campaigns/{cid}/links",
        json={"person_id": ada.id, "kind": "task", "item_id": f"{cid}-3"},
        headers=operator(),
    )
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "item_id", "message": TASK_LINK_NOT_GOLD}]


async def test_each_annotator_gets_the_gold_items_in_the_order_the_campaign_secret_draws(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    gold, gold_truth = await _gold_spec(p)
    cid = await p.launch(images=8, annotators_per_image=2, gold={"rate": 0.5, "items": gold})
    gold_ids = [f"{cid}-{8 + i}" for i in range(len(gold))]
    p.truth.update(zip(gold_ids, gold_truth, strict=True))
    people = await p.people([1.0, 1.0])
    for person in people:
        await annotate_until_empty(p.http, person, cid, p.oracle)

    async with p.sessions() as s:
        campaign = await s.get(Campaign, cid)
        leased = (
            await s.execute(
                select(Assignment.annotator_id, Assignment.item_id)
                .where(Assignment.campaign_id == cid, Assignment.item_id.in_(gold_ids))
                .order_by(Assignment.leased_at)
            )
        ).all()
    assert campaign is not None and campaign.secret is not None and len(campaign.secret) == 64
    for person in people:
        got = [item for annotator, item in leased if annotator == person.id]
        assert sorted(got) == sorted(gold_ids), "every gold item, once"
        salt = gold_salt(cid, campaign.secret, campaign.created_at.isoformat(), person.id)
        expected, left = [], set(gold_ids)
        while (chosen := next_gold(sorted(left), salt)) is not None:
            expected.append(chosen)
            left.remove(chosen)
        assert got == expected


async def test_a_bad_gold_item_is_refused_naming_the_field(pipeline: Pipeline) -> None:
    p = pipeline
    gold, _ = await _gold_spec(p)
    gold[1] = {"uri": gold[1]["uri"], "label": "hexagon"}
    generate_images(p.tmp / "images", 2)
    r = await p.http.post(
        "/campaigns", json=p.spec(gold={"rate": 0.2, "items": gold}), headers=operator()
    )
    assert r.status_code == 422, r.text
    fields = [e["field"] for e in r.json()["errors"]]
    assert fields and all(f.startswith("gold.items.1.") for f in fields), fields

    r = await p.http.post(
        "/campaigns",
        json=p.spec(gold={"rate": 0.9, "items": gold[:1]}, reliability={"min_accuracy": 2}),
        headers=operator(),
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {
        "gold.rate",
        "reliability.min_accuracy",
    }


# --- adaptive redundancy ------------------------------------------------------------------------

# What the n-th answer to an image says, by how hard the image is. With every annotator at the
# prior accuracy 0.7 and three classes, two agreeing answers give a posterior of 0.916.
EASY = ["truth", "truth", "truth", "truth"]  # confident after 2
MEDIUM = ["truth", "other", "truth", "truth"]  # 0.795 after 3, 0.948 after 4
HARD = ["truth", "other", "third", "truth"]  # 0.70 at the maximum of 4: escalate


@pytest.mark.parametrize("route", [False, True], ids=["unrouted", "routed"])
async def test_adaptive_campaign_stops_early_on_easy_images_and_escalates_hard_ones(
    pipeline: Pipeline, route: bool
) -> None:
    """The same decisions with or without routing contested images (nobody is estimated before
    the first refit, so everyone counts as trusted and takes contested images first)."""
    p = pipeline
    cid = await p.launch(
        images=6,
        annotators_per_image=None,
        agreement_threshold=None,
        # The decisions as each answer arrives, on the prior's estimates. A refit on this
        # campaign (a third of its images three-way splits) would rate everyone lower and
        # re-open the easy images: test_an_image_that_stopped_on_estimates_... covers that.
        redundancy={
            "min_annotators": 2,
            "max_annotators": 4,
            "target_confidence": 0.9,
            "reopen_below_target": False,
            "route_contested": route,
        },
        review_timeout="3s",
    )
    script = {0: EASY, 1: EASY, 2: MEDIUM, 3: MEDIUM, 4: HARD, 5: HARD}
    classes = ["circle", "square", "triangle"]
    crowd = await p.people([1.0] * 5)
    given: defaultdict[int, itertools.count[int]] = defaultdict(itertools.count)

    def answer_for(item_id: str) -> str:
        ordinal = int(item_id.rsplit("-", 1)[1])
        truth = p.truth[item_id]
        others = [c for c in classes if c != truth]
        kind = script[ordinal][next(given[ordinal])]
        return {"truth": truth, "other": others[0], "third": others[1]}[kind]

    done = asyncio.Event()

    async def work(person: SimulatedAnnotator) -> None:
        while not done.is_set():
            r = await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(person.token))
            if r.status_code == 409:
                return
            task = r.json()["task"]
            if task is None:
                await asyncio.sleep(0.05)
                continue
            label = answer_for(await p.item_of(cid, task))
            s = await submit(p.http, person.token, cid, task["assignment_id"], [label])
            assert s.status_code == 200, s.text

    workers = [asyncio.create_task(work(person)) for person in crowd]
    try:
        result = await p.result(cid, within=90)
    finally:
        done.set()
        await asyncio.gather(*workers)

    async with p.sessions() as s:
        answers = Counter(
            (
                await s.scalars(
                    select(Response.item_id).where(
                        Response.campaign_id == cid, Response.voided_at.is_(None)
                    )
                )
            ).all()
        )
        methods: dict[str, Any] = dict(
            (await s.execute(select(Consensus.item_id, Consensus.method))).all()
        )
        wanted = dict(
            (
                await s.execute(select(Item.id, Item.slots_wanted).where(Item.campaign_id == cid))
            ).all()
        )
    per_ordinal = {int(i.rsplit("-", 1)[1]): n for i, n in answers.items()}
    assert per_ordinal == {0: 2, 1: 2, 2: 4, 3: 4, 4: 4, 5: 4}
    assert {o: methods[f"{cid}-{o}"] for o in range(6)} == {
        0: "adaptive",
        1: "adaptive",
        2: "adaptive",
        3: "adaptive",
        4: "review_timed_out",
        5: "review_timed_out",
    }
    assert wanted[f"{cid}-0"] == 2 and wanted[f"{cid}-2"] == 4
    assert (result.counts.agreed, result.counts.review_timed_out) == (4, 2)

    more = await _entries(p, cid, "item.more_annotators")
    assert Counter(e.item_id for e in more) == {
        f"{cid}-2": 2,
        f"{cid}-3": 2,
        f"{cid}-4": 2,
        f"{cid}-5": 2,
    }
    escalated = await _entries(p, cid, "item.escalated")
    assert sorted(e.item_id or "" for e in escalated) == [f"{cid}-4", f"{cid}-5"]
    assert all(e.details["confidence"] < 0.9 for e in escalated)

    # Asking for more marks an image contested; with routing, its leases say they were routed.
    async with p.sessions() as s:
        contested = {
            i.ordinal
            for i in await s.scalars(select(Item).where(Item.campaign_id == cid))
            if i.contested_at is not None
        }
    assert contested == {2, 3, 4, 5}
    routed = Counter(
        e.item_id
        for e in await _entries(p, cid, "assignment.leased")
        if e.details.get("routed") == "contested"
    )
    assert routed == ({f"{cid}-{o}": 2 for o in (2, 3, 4, 5)} if route else {})


@pytest.mark.parametrize("stop_when_futile", [True, False])
async def test_a_futile_image_stops_below_the_target_only_when_the_campaign_asks(
    pipeline: Pipeline, stop_when_futile: bool
) -> None:
    # Three circles, then a square: the square lowers the confidence (below the target 0.99),
    # and no next answer could make anything but circle lead, so asking for more is futile.
    p = pipeline
    cid = await p.launch(
        images=1,
        annotators_per_image=None,
        agreement_threshold=None,
        redundancy={
            "min_annotators": 2,
            "max_annotators": 6,
            "target_confidence": 0.99,
            "stop_when_futile": stop_when_futile,
            "reopen_below_target": False,
        },
        review_timeout="2s",
    )
    crowd = await p.people([1.0] * 6)
    script = ["circle", "circle", "circle", "square", "circle", "circle"]
    given = itertools.count()
    for person in crowd:
        task = None
        for _ in range(1200):  # the item asks for its next annotator after each decision
            r = await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(person.token))
            if r.status_code == 409:
                break
            assert r.status_code == 200, r.text
            task = r.json()["task"]
            if task is not None:
                break
            await asyncio.sleep(0.05)
        if task is None:
            break
        s = await submit(p.http, person.token, cid, task["assignment_id"], [script[next(given)]])
        assert s.status_code == 200, s.text
    await p.result(cid, within=60)
    async with p.sessions() as session:
        consensus = await session.get(Consensus, f"{cid}-0")
    assert consensus is not None
    computed = await _entries(p, cid, "agreement.computed")
    if stop_when_futile:
        assert len(consensus.response_ids) == 4 and consensus.method == "adaptive"
        assert consensus.confidence < 0.99
        assert computed[-1].details["futile"] and computed[-1].details["decision"] == "stop"
    else:
        # It goes on: the fifth and sixth circles bring the confidence back above the target.
        assert len(consensus.response_ids) > 4
        assert not any(e.details.get("futile") for e in computed)


# Who says what, by image ordinal. A and B answer every image first: they agree on 0 and 1 (two
# agreeing answers at the prior accuracy, 0.916: both stop at the target 0.9) and disagree on 2
# and 3, which C settles (three answers, the maximum: 0.79, expert review, which times out). The
# refit after the last image sees A and B disagree half the time, and no longer gives image 0
# the confidence it stopped with (0.71): it is re-opened, and C answers it.
REOPEN_SCRIPT = {
    "A": {0: "circle", 1: "square", 2: "circle", 3: "triangle"},
    "B": {0: "circle", 1: "square", 2: "square", 3: "circle"},
    "C": {0: "circle", 1: "square", 2: "circle", 3: "circle"},
}


async def test_an_image_that_stopped_on_estimates_a_refit_revises_is_reopened(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    target = 0.9
    cid = await p.launch(
        images=4,
        annotators_per_image=None,
        agreement_threshold=None,
        redundancy={"min_annotators": 2, "max_annotators": 3, "target_confidence": target},
        review_timeout="2s",
    )
    people = dict(zip("ABC", await p.people([1.0] * 3), strict=True))
    answered: defaultdict[str, list[int]] = defaultdict(list)
    finished = asyncio.Event()

    async def answer_once(name: str) -> bool:
        person = people[name]
        r = await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(person.token))
        if r.status_code == 409:
            return False  # the campaign is publishing (A and B check they answered everything)
        assert r.status_code == 200, r.text
        task = r.json()["task"]
        if task is None:
            return False
        ordinal = int((await p.item_of(cid, task)).rsplit("-", 1)[1])
        label = REOPEN_SCRIPT[name][ordinal]
        s = await submit(p.http, person.token, cid, task["assignment_id"], [label])
        assert s.status_code == 200, s.text
        answered[name].append(ordinal)
        return True

    for name in "AB":  # every image, one after the other
        while await answer_once(name):
            pass
    assert sorted(answered["A"]) == sorted(answered["B"]) == [0, 1, 2, 3]

    async def c_works() -> None:
        while not finished.is_set():
            if not await answer_once("C"):
                await asyncio.sleep(0.05)

    worker = asyncio.create_task(c_works())
    try:
        result = await p.result(cid, within=90)
    finally:
        finished.set()
        await worker

    reopened = await _entries(p, cid, "item.reopened")
    assert reopened, "the refit after the last image re-opened nothing"
    assert reopened[0].item_id == f"{cid}-0"
    for entry in reopened:
        d = entry.details
        assert d["previous_method"] == "adaptive" and d["target"] == target
        assert d["confidence_when_stopped"] >= target > d["confidence_now"]
        assert d["wanted"] == d["answers"] + 1
    # C answered the images A and B disagreed on, then each image re-opened for them.
    again = sorted(int((e.item_id or "").rsplit("-", 1)[1]) for e in reopened)
    assert sorted(answered["C"]) == sorted([2, 3, *again])
    async with p.sessions() as s:
        counted = Counter(
            (
                await s.scalars(
                    select(Response.item_id).where(
                        Response.campaign_id == cid, Response.voided_at.is_(None)
                    )
                )
            ).all()
        )
        final = {
            c.item_id: c
            for c in await s.scalars(select(Consensus).where(Consensus.campaign_id == cid))
        }
    assert counted[f"{cid}-0"] == 3 and len(final) == 4
    # Image 0's label is decided again, on all three answers.
    assert len(final[f"{cid}-0"].response_ids) == 3
    assert final[f"{cid}-0"].body["objects"][0]["label"] == "circle"
    # Every image counted once in the campaign's result, however often it was re-opened.
    counts = result.counts
    assert counts.agreed + counts.reviewed + counts.review_timed_out == 4
    assert counts.review_timed_out >= 2

    # The campaign refitted after its last image (one refit per round of re-opening, and a last
    # one that re-opened nothing), and its history replays with the current code.
    history = await p.campaign_handle(cid).fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled.count("refit_reliability") >= 2
    assert scheduled.index("restart_items") > scheduled.index("refit_reliability")
    patches = _patch_markers(history)
    for patch in (FINAL_REFIT_PATCH, REFIT_GAP_PATCH):
        assert any(patch in data for data in patches), (patch, patches)
    await Replayer(workflows=list(WORKFLOWS), data_converter=DATA_CONVERTER).replay_workflow(
        history
    )
    keep = os.environ.get("QUORUM_KEEP_HISTORIES")  # see tests/test_replay_histories.py
    if keep:
        Path(keep, "campaign-adaptive-reopen.json").write_text(history.to_json())  # noqa: ASYNC240


async def test_a_voting_model_is_one_more_voter_that_never_fills_a_slot(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    images = generate_images(p.tmp / "images", 2)
    wrong = {"circle": "square", "square": "triangle", "triangle": "circle"}
    predictions = p.tmp / "predictions.jsonl"
    predictions.write_text(
        "\n".join(
            json.dumps(
                {
                    "file_name": image.path.name,
                    "objects": [
                        {"type": "tag", "label": image.label if n == 0 else wrong[image.label]}
                    ],
                }
            )
            for n, image in enumerate(images)
        )
    )
    cid = await p.launch(
        images=2,
        annotators_per_image=1,
        agreement_threshold=1.0,
        prelabels={"file": str(predictions), "mode": "voter", "model": "resnet"},
        review_timeout="2s",
    )
    (person,) = await p.people([1.0])
    assert await annotate_until_empty(p.http, person, cid, p.oracle) == 2  # one slot each
    result = await p.result(cid, within=60)
    # The model agrees on image 0 (finalized) and contradicts the person on image 1 (a tie:
    # review, timed out here to the person's answer by order).
    assert (result.counts.agreed, result.counts.review_timed_out) == (1, 1)
    computed = {e.item_id: e for e in await _entries(p, cid, "agreement.computed")}
    for n in range(2):
        assert computed[f"{cid}-{n}"].details["annotators"] == [person.id, "model:resnet"]
    assert computed[f"{cid}-0"].details["agreement"] == 1.0
    assert computed[f"{cid}-1"].details["tie"] is True
