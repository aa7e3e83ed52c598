"""The pipeline end to end on real Temporal, a real database (SQLite and PostgreSQL) and MinIO."""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import threading
import urllib.request
import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select

from db.models import Assignment, Campaign, Consensus, Item, Response
from schemas.workflow_io import item_workflow_id
from services.errors import ALREADY_ANSWERED, LEASE_EXPIRED_REASSIGNED
from simulation.crowd import annotate_until_empty, submit
from simulation.images import generate_images
from storage import read_manifest, read_records, verify_version
from tests.pipeline.conftest import Pipeline, bearer, operator


async def _count(p: Pipeline, model: type, **where: object) -> int:
    async with p.sessions() as s:
        stmt = select(func.count()).select_from(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return int(await s.scalar(stmt) or 0)


async def test_unanimous_campaign_publishes_without_review(pipeline: Pipeline) -> None:
    p = pipeline
    cid = await p.launch(images=6, annotators_per_image=3, agreement_threshold=1.0)
    crowd = await p.people([1.0, 1.0, 1.0])
    result, answered = await p.crowd_until_done(cid, crowd)
    assert answered == [6, 6, 6]
    assert (result.counts.finished, result.counts.agreed, result.counts.reviewed) == (6, 6, 0)
    assert result.version == 1

    ctx = p.http._transport.app.state.ctx  # type: ignore[attr-defined]
    manifest = read_manifest(ctx.store, result.dataset, 1)
    assert manifest["item_count"] == 6
    assert manifest["campaigns"] == [cid]
    assert verify_version(ctx.store, result.dataset, 1) == []
    records = list(read_records(ctx.store, result.dataset, 1))
    assert {r["item_id"]: r["labels"] for r in records} == {k: [v] for k, v in p.truth.items()}
    for r in records:
        assert r["method"] == "majority_vote"
        assert len({a["annotator_id"] for a in r["responses"]}) == 3
        assert r["workflow_id"] == item_workflow_id(cid, int(r["item_id"].rsplit("-", 1)[1]))
        assert r["run_id"]
    async with p.sessions() as s:
        campaign = await s.get(Campaign, cid)
        assert campaign is not None
        assert campaign.status == "completed"
        assert campaign.published_version == 1
    assert (
        ctx.store.create(f"datasets/{result.dataset}/versions/000001/manifest.json", b"{}") is False
    ), "a published version can never be overwritten"


async def test_disagreement_waits_for_review_then_finishes(pipeline: Pipeline) -> None:
    p = pipeline
    cid = await p.launch(images=3, annotators_per_image=2, agreement_threshold=1.0)
    right, contrarian = await p.people([1.0, 0.0])
    (expert,) = await p.people([1.0], role="expert")
    await annotate_until_empty(p.http, right, cid, p.oracle)
    await annotate_until_empty(p.http, contrarian, cid, p.oracle)

    # Every item now disagrees, so every item waits for an expert; nothing is published.
    async def items_in_review() -> int:
        return await _count(p, Item, campaign_id=cid, status="review")

    for _ in range(100):
        if await items_in_review() == 3:
            break
        await asyncio.sleep(0.1)
    assert await items_in_review() == 3
    await asyncio.sleep(0.5)
    assert await _count(p, Consensus, campaign_id=cid) == 0
    described = await p.campaign_handle(cid).describe()
    assert described.status is not None and described.status.name == "RUNNING"

    r = await p.http.get(f"/campaigns/{cid}/reviews", headers=bearer(expert.token))
    assert r.status_code == 200
    pending = r.json()
    assert [e["item_id"] for e in pending] == [f"{cid}-{n}" for n in range(3)]
    assert all(len(e["answers"]) == 2 for e in pending)

    # An annotator may not review.
    r = await p.http.post(
        f"/items/{cid}-0/review",
        headers=bearer(right.token),
        json={"decision": "accept_consensus", "idempotency_key": "k" * 16},
    )
    assert r.status_code == 403

    decided = {}
    for entry in pending:
        good = next(a for a in entry["answers"] if a["annotator_id"] == right.id)
        r = await p.http.post(
            f"/items/{entry['item_id']}/review",
            headers=bearer(expert.token),
            json={
                "decision": "accept_response",
                "response_id": good["response_id"],
                "idempotency_key": uuid.uuid4().hex,
            },
        )
        assert r.status_code == 200, r.text
        decided[entry["item_id"]] = r.json()["review_id"]

    result = await p.result(cid)
    assert (result.counts.finished, result.counts.reviewed, result.counts.agreed) == (3, 3, 0)
    ctx = p.http._transport.app.state.ctx  # type: ignore[attr-defined]
    records = {r["item_id"]: r for r in read_records(ctx.store, result.dataset, result.version)}
    for item_id, review_id in decided.items():
        assert records[item_id]["method"] == "review"
        assert records[item_id]["review_id"] == review_id
        assert records[item_id]["reviewer_id"] == expert.id
        assert records[item_id]["labels"] == [p.truth[item_id]]

    # A second decision on a finished item is refused.
    r = await p.http.post(
        f"/items/{cid}-0/review",
        headers=bearer(expert.token),
        json={"decision": "accept_consensus", "idempotency_key": "x" * 16},
    )
    assert r.status_code == 409


async def test_repeated_submission_is_counted_once(pipeline: Pipeline) -> None:
    p = pipeline
    cid = await p.launch(images=1, annotators_per_image=2, agreement_threshold=0.5)
    first, second = await p.people([1.0, 1.0])
    task = (await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(first.token))).json()
    assignment = task["task"]["assignment_id"]
    label = p.truth[f"{cid}-0"]

    # The same answer sent five times at once (a flaky network, an impatient double click).
    replies = await asyncio.gather(
        *(
            submit(p.http, first.token, cid, assignment, [label], idempotency_key="same-key-123")
            for _ in range(5)
        )
    )
    assert [r.status_code for r in replies] == [200] * 5
    bodies = [r.json() for r in replies]
    assert len({b["response_id"] for b in bodies}) == 1
    assert sorted(b["duplicate"] for b in bodies) == [False, True, True, True, True]
    assert await _count(p, Response, item_id=f"{cid}-0") == 1

    # A different key for an answered image is a second answer: refused, not counted.
    again = await submit(
        p.http, first.token, cid, assignment, [label], idempotency_key="other-key-1"
    )
    assert again.status_code == 409
    assert again.json()["message"] == ALREADY_ANSWERED

    await annotate_until_empty(p.http, second, cid, p.oracle)
    result = await p.result(cid)
    assert result.counts.finished == 1
    async with p.sessions() as s:
        consensus = await s.get(Consensus, f"{cid}-0")
        assert consensus is not None
        assert sorted(consensus.annotator_ids) == sorted([first.id, second.id])

    # The workflow was woken once, by the answer that completed the image, naming both answers;
    # the five repeats of the first answer sent nothing.
    handle = p.temporal.get_workflow_handle(item_workflow_id(cid, 0))
    signals = [
        e.workflow_execution_signaled_event_attributes
        for e in (await handle.fetch_history()).events
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert [s.signal_name for s in signals] == ["response_submitted"]
    payload = json.loads(signals[0].input.payloads[0].data)
    named = [payload["response_id"]] + [r["response_id"] for r in payload["others"]]
    async with p.sessions() as s:
        stored = (await s.scalars(select(Response.id).where(Response.item_id == f"{cid}-0"))).all()
    assert sorted(named) == sorted(stored)


async def test_expired_lease_is_offered_to_another_annotator(pipeline: Pipeline) -> None:
    p = pipeline
    cid = await p.launch(
        images=1, annotators_per_image=1, agreement_threshold=1.0, lease_timeout="1s"
    )
    slow, quick = await p.people([1.0, 1.0])
    label = [p.truth[f"{cid}-0"]]
    held = (await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(slow.token))).json()
    # While the lease is live, nobody else gets the only slot.
    none = (await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(quick.token))).json()
    assert none["task"] is None

    await asyncio.sleep(1.5)
    offered = (
        await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(quick.token))
    ).json()
    assert offered["task"] is not None
    assert await p.item_of(cid, offered["task"]) == await p.item_of(cid, held["task"])
    assert await p.item_of(cid, offered["task"]) == f"{cid}-0"
    assert offered["task"]["assignment_id"] != held["task"]["assignment_id"]

    late = await submit(p.http, slow.token, cid, held["task"]["assignment_id"], label)
    assert late.status_code == 409
    assert late.json()["message"] == LEASE_EXPIRED_REASSIGNED

    ok = await submit(p.http, quick.token, cid, offered["task"]["assignment_id"], label)
    assert ok.status_code == 200 and ok.json()["late"] is False
    result = await p.result(cid)
    assert result.counts.finished == 1
    async with p.sessions() as s:
        consensus = await s.get(Consensus, f"{cid}-0")
        assert consensus is not None and consensus.annotator_ids == [quick.id]
        states = dict(
            (
                await s.execute(
                    select(Assignment.annotator_id, Assignment.state).where(
                        Assignment.campaign_id == cid
                    )
                )
            ).all()
        )
    assert states == {slow.id: "expired", quick.id: "submitted"}


async def test_late_answer_counts_when_nobody_took_the_slot(pipeline: Pipeline) -> None:
    p = pipeline
    cid = await p.launch(
        images=1, annotators_per_image=1, agreement_threshold=1.0, lease_timeout="1s"
    )
    (slow,) = await p.people([1.0])
    held = (await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(slow.token))).json()
    await asyncio.sleep(1.3)
    late = await submit(
        p.http, slow.token, cid, held["task"]["assignment_id"], [p.truth[f"{cid}-0"]]
    )
    assert late.status_code == 200
    assert late.json()["late"] is True
    assert (await p.result(cid)).counts.finished == 1


async def test_no_annotator_gets_the_same_image_twice(pipeline: Pipeline) -> None:
    p = pipeline
    # Accurate annotators: three different answers would (rightly) wait for an expert.
    cid = await p.launch(images=8, annotators_per_image=3, agreement_threshold=0.5)
    crowd = await p.people([1.0, 1.0, 1.0, 1.0, 1.0])
    result, answered = await p.crowd_until_done(cid, crowd)
    assert sum(answered) == 8 * 3
    assert result.counts.finished == 8
    async with p.sessions() as s:
        pairs = (
            await s.execute(
                select(Response.item_id, Response.annotator_id).where(Response.campaign_id == cid)
            )
        ).all()
    assert len(pairs) == 8 * 3
    assert len(set(pairs)) == len(pairs), "an annotator answered an image twice"
    assert Counter(item for item, _ in pairs) == {f"{cid}-{n}": 3 for n in range(8)}
    # Once they have answered everything they could, nobody is offered an image again.
    for a in crowd:
        r = await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(a.token))
        assert r.status_code == 409 or r.json()["task"] is None


async def test_skipped_image_goes_to_someone_else(pipeline: Pipeline) -> None:
    p = pipeline
    cid = await p.launch(images=1, annotators_per_image=1, agreement_threshold=1.0)
    skipper, taker = await p.people([1.0, 1.0])
    t = (await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(skipper.token))).json()
    r = await p.http.post(
        f"/campaigns/{cid}/tasks/{t['task']['assignment_id']}/skip", headers=bearer(skipper.token)
    )
    assert r.status_code == 200
    again = (
        await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(skipper.token))
    ).json()
    assert again["task"] is None, "a skipped image never comes back to the same person"
    assert await annotate_until_empty(p.http, taker, cid, p.oracle) == 1
    assert (await p.result(cid)).counts.finished == 1


async def test_other_peoples_assignments_are_refused(pipeline: Pipeline) -> None:
    p = pipeline
    cid = await p.launch(images=2, annotators_per_image=1, agreement_threshold=1.0)
    owner, intruder = await p.people([1.0, 1.0])
    t = (await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(owner.token))).json()
    aid = t["task"]["assignment_id"]
    label = [p.truth[await p.item_of(cid, t["task"])]]
    assert (await submit(p.http, intruder.token, cid, aid, label)).status_code == 403
    assert (await submit(p.http, "not-a-real-token", cid, aid, label)).status_code == 401
    assert await _count(p, Response, campaign_id=cid) == 0
    bad = await p.http.post(
        f"/campaigns/{cid}/tasks/{aid}/response",
        headers=bearer(owner.token),
        json={
            "idempotency_key": uuid.uuid4().hex,
            "objects": [{"type": "tag", "label": "hexagon"}],
        },
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "objects.0.label"
    assert await _count(p, Response, campaign_id=cid) == 0
    json.dumps(bad.json())


async def test_a_bad_spec_is_refused_field_by_field_and_starts_nothing(pipeline: Pipeline) -> None:
    p = pipeline
    bad = p.spec(annotators_per_image=0, agreement_threshold=2, lease_timeout="soon")
    bad["ontology"] = {"classes": []}
    r = await p.http.post("/campaigns", json=bad, headers=operator())
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {
        "annotators_per_image",
        "agreement_threshold",
        "lease_timeout",
        "ontology.classes",
    }

    missing_dir = p.spec(images={"directory": str(p.tmp / "no-such-dir")})
    r = await p.http.post("/campaigns", json=missing_dir, headers=operator())
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["images.directory"]

    r = await p.http.post("/campaigns", json=p.spec(), headers=bearer("someone-else"))
    assert r.status_code == 403

    assert await _count(p, Campaign) == 0
    assert await _count(p, Item) == 0
    started = [
        w
        async for w in p.temporal.list_workflows(f"TaskQueue = '{p.settings.temporal.task_queue}'")
    ]
    assert started == []


async def test_images_from_an_s3_prefix_are_served_by_presigned_url(pipeline: Pipeline) -> None:
    p = pipeline
    ctx = p.http._transport.app.state.ctx  # type: ignore[attr-defined]
    s3 = ctx.s3_client
    bucket = p.settings.store.bucket
    images = generate_images(p.tmp / "s3-images", 3)
    for img in images:
        s3.put_object(Bucket=bucket, Key=f"raw/shapes/{img.path.name}", Body=img.path.read_bytes())
    s3.put_object(Bucket=bucket, Key="raw/shapes/notes.txt", Body=b"not an image")
    r = await p.http.post(
        "/campaigns",
        json=p.spec(images={"s3_prefix": f"s3://{bucket}/raw/shapes/"}, annotators_per_image=1),
        headers=operator(),
    )
    assert r.status_code == 201, r.text
    assert r.json()["item_count"] == 3
    cid = r.json()["id"]
    await p.wait_open(cid, 3)
    (person,) = await p.people([1.0])
    task = (await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(person.token))).json()
    # Its size is read from the object's first bytes on the first claim.
    assert (task["task"]["width"], task["task"]["height"]) == (96, 96)
    image = await p.http.get(task["task"]["image_url"], headers=bearer(person.token))
    assert image.status_code == 307
    fetched = await asyncio.to_thread(urllib.request.urlopen, image.headers["location"])
    assert fetched.read() == images[0].path.read_bytes()
    # Another person cannot fetch someone else's task image.
    (other,) = await p.people([1.0])
    denied = await p.http.get(task["task"]["image_url"], headers=bearer(other.token))
    assert denied.status_code == 403

    missing = await p.http.post(
        "/campaigns",
        json=p.spec(images={"s3_prefix": f"s3://{bucket}/nothing-here/"}),
        headers=operator(),
    )
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "images.s3_prefix"


async def test_with_gold_s3_images_come_through_the_api_and_show_no_address(
    pipeline: Pipeline,
) -> None:
    """A redirect would show each image's bucket and key in the browser, and gold kept under
    its own prefix would give itself away: a campaign with gold proxies its images."""
    p = pipeline
    ctx = p.http._transport.app.state.ctx  # type: ignore[attr-defined]
    bucket = p.settings.store.bucket
    images = generate_images(p.tmp / "s3-proxy", 4)
    where = {}
    for n, img in enumerate(images):
        key = f"{'raw/proxy' if n < 2 else 'gold-set'}/{img.path.name}"
        ctx.s3_client.put_object(Bucket=bucket, Key=key, Body=img.path.read_bytes())
        where[img.path.read_bytes()] = key
    gold = [
        {"uri": f"s3://{bucket}/{where[i.path.read_bytes()]}", "label": i.label} for i in images[2:]
    ]
    r = await p.http.post(
        "/campaigns",
        json=p.spec(
            images={"s3_prefix": f"s3://{bucket}/raw/proxy/"},
            annotators_per_image=1,
            gold={"rate": 0.5, "items": gold},
        ),
        headers=operator(),
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    await p.wait_open(cid, 2)
    (person,) = await p.people([1.0])

    fetched = []
    for _ in range(2):  # at rate 0.5, one gold task and one image among the first two
        task = (
            await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(person.token))
        ).json()["task"]
        image = await p.http.get(task["image_url"], headers=bearer(person.token))
        assert image.status_code == 200, image.text
        assert "location" not in image.headers
        headers = {k: v for k, v in image.headers.items() if k != "content-length"}
        assert not any(bucket in v or "gold" in v or ".png" in v for v in headers.values())
        fetched.append((where[image.content], sorted(headers), image.headers["content-type"]))
        await submit(p.http, person.token, cid, task["assignment_id"], ["circle"])
    assert sorted(key.split("/")[0] for key, _, _ in fetched) == ["gold-set", "raw"]
    assert fetched[0][1:] == fetched[1][1:] and fetched[0][2] == "image/png"

    # An object gone from the bucket is a 404 that names neither bucket nor key.
    task = (await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(person.token))).json()[
        "task"
    ]
    async with p.sessions() as s:
        leased = await s.get(Assignment, task["assignment_id"])
        assert leased is not None
        item = await s.get(Item, leased.item_id)
        assert item is not None
    ctx.s3_client.delete_object(Bucket=bucket, Key=item.uri.split("/", 3)[3])
    missing = await p.http.get(task["image_url"], headers=bearer(person.token))
    assert missing.status_code == 404
    assert bucket not in missing.text and "gold" not in missing.text


async def test_web_images_are_proxied_when_the_campaign_asks(pipeline: Pipeline) -> None:
    p = pipeline
    images = generate_images(p.tmp / "web", 2)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(p.tmp / "web"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        uris = [f"{base}/{images[0].path.name}", f"{base}/missing.png"]
        r = await p.http.post(
            "/campaigns",
            json=p.spec(images={"uris": uris, "serve": "proxy"}, annotators_per_image=1),
            headers=operator(),
        )
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        await p.wait_open(cid, 2)
        first, second = await p.people([1.0, 1.0])
        got = {}
        for person in (first, second):
            task = (
                await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(person.token))
            ).json()["task"]
            got[person.id] = await p.http.get(task["image_url"], headers=bearer(person.token))
        ok, missing = got[first.id], got[second.id]
        assert ok.status_code == 200 and "location" not in ok.headers
        assert ok.content == images[0].path.read_bytes()
        assert ok.headers["content-type"] == "image/png"
        assert missing.status_code == 404 and base not in missing.text
    finally:
        server.shutdown()
        server.server_close()


async def test_people_are_registered_once_per_external_id(pipeline: Pipeline) -> None:
    p = pipeline
    body = {"name": "Ada", "external_id": "workforce-42"}
    first = await p.http.post("/people", json=body, headers=operator())
    assert first.status_code == 201 and first.json()["token"]
    again = await p.http.post("/people", json=body, headers=operator())
    assert again.status_code == 409
    assert again.json()["errors"][0]["field"] == "external_id"
    bad = await p.http.post("/people", json={"name": "", "role": "boss"}, headers=operator())
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"name", "role"}


async def test_an_unreviewed_item_times_out_to_its_majority_flagged(pipeline: Pipeline) -> None:
    p = pipeline
    cid = await p.launch(
        images=2, annotators_per_image=3, agreement_threshold=1.0, review_timeout="2s"
    )
    crowd = await p.people([1.0, 1.0, 0.0])  # two right, one always wrong: 2 of 3 agree
    result, _ = await p.crowd_until_done(cid, crowd, within=60)
    assert (result.counts.finished, result.counts.review_timed_out) == (2, 2)
    ctx = p.http._transport.app.state.ctx  # type: ignore[attr-defined]
    for record in read_records(ctx.store, result.dataset, result.version):
        assert record["method"] == "review_timed_out"
        assert record["labels"] == [p.truth[record["item_id"]]]
        assert record["confidence"] == pytest.approx(2 / 3)
        assert record["review_id"] is None


async def test_a_dataset_accumulates_campaigns_version_by_version(pipeline: Pipeline) -> None:
    p = pipeline
    crowd = await p.people([1.0])
    first = await p.launch(images=2, annotators_per_image=1, dataset="shapes", name="batch-one")
    r1, _ = await p.crowd_until_done(first, crowd)
    second = await p.launch(images=3, annotators_per_image=1, dataset="shapes", name="batch-two")
    r2, _ = await p.crowd_until_done(second, crowd)
    assert (r1.version, r2.version) == (1, 2)

    ctx = p.http._transport.app.state.ctx  # type: ignore[attr-defined]
    manifest = read_manifest(ctx.store, "shapes", 2)
    assert manifest["campaigns"] == sorted([first, second])
    assert manifest["item_count"] == 5
    assert sum(manifest["class_counts"].values()) == 5
    assert set(manifest["agreement"]["by_campaign"]) == {first, second}
    items = {r["item_id"]: r["campaign_id"] for r in read_records(ctx.store, "shapes", 2)}
    assert sorted(set(items.values())) == sorted([first, second])
    assert len(list(read_records(ctx.store, "shapes", 1))) == 2, "version 1 is unchanged"


async def test_a_snapshot_publishes_what_is_final_so_far(pipeline: Pipeline) -> None:
    p = pipeline
    cid = await p.launch(images=4, annotators_per_image=1, agreement_threshold=1.0)
    (person,) = await p.people([1.0])
    r = await p.http.post(f"/campaigns/{cid}/snapshot", json={}, headers=operator())
    assert r.status_code == 409, "nothing is final yet"

    assert await annotate_until_empty(p.http, person, cid, p.oracle, max_answers=2) == 2
    for _ in range(100):
        if await _count(p, Consensus, campaign_id=cid) == 2:
            break
        await asyncio.sleep(0.1)
    first = await p.http.post(
        f"/campaigns/{cid}/snapshot", json={"request_id": "mid-1"}, headers=operator()
    )
    assert first.status_code == 200, first.text
    again = await p.http.post(
        f"/campaigns/{cid}/snapshot", json={"request_id": "mid-1"}, headers=operator()
    )
    assert again.json()["version"] == first.json()["version"] == 1
    assert first.json()["item_count"] == 2
    async with p.sessions() as s:
        campaign = await s.get(Campaign, cid)
        assert campaign is not None and campaign.status == "running"

    result, _ = await p.crowd_until_done(cid, [person])
    assert result.version == 2 and result.counts.finished == 4
    ctx = p.http._transport.app.state.ctx  # type: ignore[attr-defined]
    manifest = read_manifest(ctx.store, result.dataset, 2)
    assert manifest["parent"] == 1 and manifest["item_count"] == 4
    assert len(list(read_records(ctx.store, result.dataset, 1))) == 2
