"""Task links through the real API, on real Temporal, SQLite and PostgreSQL.

A link works for its person, on its campaign (or its one image), until it expires or is
revoked. Everything else is refused with 401 or 403, and a refused request changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select

from db.models import Assignment, Item, Response, Review, TaskLink
from services.errors import EXPERT_ONLY, NOT_YOUR_ASSIGNMENT, PERSON_BLOCKED
from services.links import (
    LINK_EXPIRED,
    LINK_INVALID,
    LINK_OTHER_CAMPAIGN,
    LINK_OTHER_TASK,
    LINK_OUT_OF_SCOPE,
    LINK_REVOKED,
)
from services.task_assignment import AT_CONCURRENCY_LIMIT, MISSING_SKILLS
from tests.pipeline.conftest import (  # noqa: F401  (fixtures, used by name)
    Pipeline,
    bearer,
    db_url,
    operator,
    pipeline,
    pipeline_unstarted,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def quorum(pipeline: Pipeline) -> Pipeline:  # noqa: F811
    """A running Quorum (tests/pipeline/conftest.py), on SQLite and on PostgreSQL."""
    return pipeline


BOX_ONTOLOGY = {
    "multi_label": True,
    "classes": [
        {"name": "circle"},
        {"name": "square"},
        {
            "name": "car",
            "geometry": "box",
            "attributes": [{"name": "color", "kind": "single", "options": ["red", "blue"]}],
        },
        {"name": "road", "geometry": "polygon"},
    ],
}


async def issue(p: Pipeline, campaign_id: str, person_id: str, **body: Any) -> dict[str, Any]:
    r = await p.http.post(
        f"/campaigns/{campaign_id}/links",
        json={"person_id": person_id, **body},
        headers=operator(),
    )
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def snapshot(p: Pipeline) -> tuple[Any, ...]:
    """Every row a worker's request could change."""
    async with p.sessions() as s:
        return (
            (
                await s.execute(
                    select(Assignment.id, Assignment.state, Assignment.lease_expires_at).order_by(
                        Assignment.id
                    )
                )
            ).all(),
            (await s.execute(select(Response.id).order_by(Response.id))).all(),
            (
                await s.execute(select(Item.id, Item.status, Item.slots_taken).order_by(Item.id))
            ).all(),
            (await s.execute(select(Review.id).order_by(Review.id))).all(),
        )


def answer(label: str = "circle") -> dict[str, Any]:
    return {"idempotency_key": uuid.uuid4().hex, "objects": [{"type": "tag", "label": label}]}


async def refused(
    p: Pipeline, requests: list[tuple[str, str, dict[str, Any] | None]], token: str
) -> list[tuple[int, str]]:
    """Send each (method, url, json) with the token; return (status, message) of each."""
    out = []
    for method, url, body in requests:
        r = await p.http.request(method, url, json=body, headers=bearer(token))
        out.append((r.status_code, r.json().get("message", "")))
    return out


async def test_a_campaign_link_is_a_queue_for_its_person(quorum: Pipeline) -> None:
    p = quorum
    cid = await p.launch(images=3, annotators_per_image=1, agreement_threshold=0.5)
    (ada,) = await p.people([1.0])
    link = await issue(p, cid, ada.id, ttl="2h")
    assert link["url"].endswith(f"/work/{link['token']}")
    assert link["kind"] == "campaign" and link["state"] == "active"
    token = link["token"]

    me = (await p.http.get("/links/me", headers=bearer(token))).json()
    assert me["person"] == {"id": ada.id, "name": ada.name, "role": "annotator"}
    assert me["campaign"]["id"] == cid and me["answered"] == 0
    assert [c["name"] for c in me["ontology"]["classes"]] == ["circle", "square", "triangle"]

    page = await p.http.get(f"/work/{token}")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert (await p.http.get("/static/js/annotate.js")).status_code == 200

    seen = []
    for n in range(3):
        r = await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(token))
        assert r.status_code == 200, r.text
        task = r.json()["task"]
        assert r.json()["answered"] == n
        # Blind labeling: a task carries the image and the ontology, never anyone's answers.
        assert set(task) == {
            "assignment_id",
            "image_url",
            "width",
            "height",
            "lease_expires_at",
            "resumed",
            "prelabel",  # a model's draft, only when the campaign shows one (none here)
        }
        assert task["prelabel"] is None
        # The page's <img> sends the link as a query parameter; a person token may not.
        img = await p.http.get(f"{task['image_url']}?access_token={token}")
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        no_header = await p.http.get(f"{task['image_url']}?access_token={ada.token}")
        assert no_header.status_code == 401
        item = await p.item_of(cid, task)
        r = await p.http.post(
            f"/campaigns/{cid}/tasks/{task['assignment_id']}/response",
            json=answer(p.truth[item]),
            headers=bearer(token),
        )
        assert r.status_code == 200, r.text
        seen.append(item)
    assert sorted(seen) == [f"{cid}-{n}" for n in range(3)]
    done = (await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(token))).json()
    assert done["task"] is None and done["answered"] == 3
    assert "No image needs you" in done["message"]
    # The person's own token keeps working beside the link.
    assert (
        await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(ada.token))
    ).status_code == 200


async def test_forged_expired_and_revoked_links_are_refused_and_change_nothing(
    quorum: Pipeline,
) -> None:
    p = quorum
    cid = await p.launch(images=2, annotators_per_image=2, agreement_threshold=0.5)
    ada, bob = await p.people([1.0, 1.0])
    good = await issue(p, cid, ada.id)
    held = (
        await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(good["token"]))
    ).json()["task"]
    aid = held["assignment_id"]
    work = [
        ("POST", f"/campaigns/{cid}/tasks/next", None),
        ("POST", f"/campaigns/{cid}/tasks/{aid}/response", answer()),
        ("POST", f"/campaigns/{cid}/tasks/{aid}/skip", None),
        ("GET", f"/campaigns/{cid}/tasks/{aid}/image", None),
        ("GET", "/links/me", None),
    ]
    before = await snapshot(p)

    header, payload, signature = good["token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    stolen = dict(claims, sub=bob.id)
    forged = {
        "garbage": "not.a.token",
        "wrong key": jwt.encode(claims, "x" * 40, algorithm="HS256"),
        "edited claims": ".".join(
            [
                header,
                base64.urlsafe_b64encode(json.dumps(stolen).encode()).rstrip(b"=").decode(),
                signature,
            ]
        ),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "truncated": good["token"][:-4],
    }
    for name, token in forged.items():
        answers = await refused(p, work, token)
        assert answers == [(401, LINK_INVALID)] * len(work), name

    expired = await issue(p, cid, ada.id, ttl=1)
    await asyncio.sleep(1.2)
    assert await refused(p, work, expired["token"]) == [(401, LINK_EXPIRED)] * len(work)

    revoked = await issue(p, cid, ada.id)
    r = await p.http.post(f"/links/{revoked['id']}/revoke", headers=operator())
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    assert await refused(p, work, revoked["token"]) == [(401, LINK_REVOKED)] * len(work)
    # Revoking twice keeps the first time; the first link still works.
    again = await p.http.post(f"/links/{revoked['id']}/revoke", headers=operator())
    assert again.json()["revoked_at"] == r.json()["revoked_at"]

    assert await snapshot(p) == before
    r = await p.http.get("/links/me", headers=bearer(good["token"]))
    assert r.status_code == 200
    states = {
        link["id"]: link["state"]
        for link in (await p.http.get(f"/campaigns/{cid}/links", headers=operator())).json()
    }
    assert states == {good["id"]: "active", expired["id"]: "expired", revoked["id"]: "revoked"}


async def test_a_link_works_for_its_person_and_campaign_only(quorum: Pipeline) -> None:
    p = quorum
    first = await p.launch(images=2, annotators_per_image=2, agreement_threshold=0.5)
    second = await p.launch(images=2, annotators_per_image=2, agreement_threshold=0.5)
    ada, bob = await p.people([1.0, 1.0])
    ada_link = (await issue(p, first, ada.id))["token"]
    bob_link = (await issue(p, first, bob.id))["token"]
    ada_task = (
        await p.http.post(f"/campaigns/{first}/tasks/next", headers=bearer(ada_link))
    ).json()["task"]
    # Ada holds an image of the second campaign too, through her person token.
    other = (
        await p.http.post(f"/campaigns/{second}/tasks/next", headers=bearer(ada.token))
    ).json()["task"]
    other_item = await p.item_of(second, other)
    before = await snapshot(p)

    # Another person's assignment, with Bob's link: the same campaign, not his.
    a = ada_task["assignment_id"]
    assert (
        await refused(
            p,
            [
                ("POST", f"/campaigns/{first}/tasks/{a}/response", answer()),
                ("POST", f"/campaigns/{first}/tasks/{a}/skip", None),
                ("GET", f"/campaigns/{first}/tasks/{a}/image", None),
            ],
            bob_link,
        )
        == [(403, NOT_YOUR_ASSIGNMENT)] * 3
    )

    # Another campaign's task, with Ada's link for the first campaign, even her own task.
    o = other["assignment_id"]
    assert (
        await refused(
            p,
            [
                ("POST", f"/campaigns/{second}/tasks/next", None),
                ("POST", f"/campaigns/{second}/tasks/{o}/response", answer()),
                ("POST", f"/campaigns/{second}/tasks/{o}/skip", None),
                ("GET", f"/campaigns/{second}/tasks/{o}/image", None),
                # ... named under the link's own campaign in the path:
                ("POST", f"/campaigns/{first}/tasks/{o}/response", answer()),
                ("GET", f"/campaigns/{second}/reviews", None),
                (
                    "POST",
                    f"/items/{other_item}/review",
                    {"decision": "accept_consensus", "idempotency_key": uuid.uuid4().hex},
                ),
            ],
            ada_link,
        )
        == [(403, LINK_OTHER_CAMPAIGN)] * 7
    )
    # Operator routes are not for links.
    r = await p.http.post(
        f"/campaigns/{first}/links", json={"person_id": ada.id}, headers=bearer(ada_link)
    )
    assert r.status_code == 403
    assert await snapshot(p) == before


async def test_a_task_link_opens_its_one_image(quorum: Pipeline) -> None:
    p = quorum
    cid = await p.launch(images=3, annotators_per_image=1, agreement_threshold=0.5)
    (bob,) = await p.people([1.0])
    (expert,) = await p.people([1.0], role="expert")
    ada = SimpleNamespace(
        **(
            await p.http.post(
                "/people", json={"name": "ada", "max_concurrent": 2}, headers=operator()
            )
        ).json()
    )
    link = await issue(p, cid, ada.id, kind="task", item_id=f"{cid}-2")
    token = link["token"]
    assert link["item_id"] == f"{cid}-2"

    task = (await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(token))).json()
    assert await p.item_of(cid, task["task"]) == f"{cid}-2"
    again = (await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(token))).json()
    assert again["task"]["assignment_id"] == task["task"]["assignment_id"]
    assert again["task"]["resumed"] is True

    # The same person's other image is out of the link's scope.
    elsewhere = (
        await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(ada.token))
    ).json()["task"]
    assert await p.item_of(cid, elsewhere) == f"{cid}-0"
    before = await snapshot(p)
    e = elsewhere["assignment_id"]
    assert await refused(
        p,
        [
            ("POST", f"/campaigns/{cid}/tasks/{e}/response", answer()),
            ("GET", f"/campaigns/{cid}/tasks/{e}/image", None),
            ("GET", f"/campaigns/{cid}/reviews", None),
        ],
        token,
    ) == [(403, LINK_OTHER_TASK), (403, LINK_OTHER_TASK), (403, LINK_OUT_OF_SCOPE)]
    assert await snapshot(p) == before

    r = await p.http.post(
        f"/campaigns/{cid}/tasks/{task['task']['assignment_id']}/response",
        json=answer(p.truth[f"{cid}-2"]),
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    done = (await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(token))).json()
    assert done["task"] is None and "nothing more" in done["message"]

    # Task links name an image of their campaign, and are for annotators.
    for body, field in [
        ({"person_id": bob.id, "kind": "task"}, "item_id"),
        ({"person_id": bob.id, "kind": "task", "item_id": "nope"}, "item_id"),
        ({"person_id": expert.id, "kind": "task", "item_id": f"{cid}-0"}, "kind"),
        ({"person_id": bob.id, "item_id": f"{cid}-0"}, "item_id"),
        ({"person_id": "ann_nobody"}, "person_id"),
        ({"person_id": bob.id, "ttl": 0}, "ttl"),
        ({"person_id": bob.id, "ttl": "soon"}, "ttl"),
    ]:
        r = await p.http.post(f"/campaigns/{cid}/links", json=body, headers=operator())
        assert r.status_code == 422, (body, r.text)
        assert [e["field"] for e in r.json()["errors"]] == [field], body


async def test_experts_review_through_a_campaign_link(quorum: Pipeline) -> None:
    p = quorum
    cid = await p.launch(images=1, annotators_per_image=2, agreement_threshold=1.0)
    right, wrong = await p.people([1.0, 0.0])
    (expert,) = await p.people([1.0], role="expert")
    truth = p.truth[f"{cid}-0"]
    for person, label in [(right, truth), (wrong, "circle" if truth != "circle" else "square")]:
        t = (await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(person.token))).json()
        r = await p.http.post(
            f"/campaigns/{cid}/tasks/{t['task']['assignment_id']}/response",
            json=answer(label),
            headers=bearer(person.token),
        )
        assert r.status_code == 200
    link = await issue(p, cid, expert.id)
    assert "/review/" in link["url"]
    token = link["token"]
    for _ in range(100):
        pending = (await p.http.get(f"/campaigns/{cid}/reviews", headers=bearer(token))).json()
        if pending:
            break
        await asyncio.sleep(0.1)
    assert [e["item_id"] for e in pending] == [f"{cid}-0"]
    image = await p.http.get(f"/items/{cid}-0/image?access_token={token}")
    assert image.status_code == 200

    # Blind labeling: an annotator's link sees no answers, and no other image.
    annotator_link = (await issue(p, cid, right.id))["token"]
    r = await p.http.get(f"/campaigns/{cid}/reviews", headers=bearer(annotator_link))
    assert (r.status_code, r.json()["message"]) == (403, EXPERT_ONLY)
    r = await p.http.get(f"/items/{cid}-0/image", headers=bearer(annotator_link))
    assert r.status_code == 403

    good = next(a for a in pending[0]["answers"] if a["annotator_id"] == right.id)
    r = await p.http.post(
        f"/items/{cid}-0/review",
        json={
            "decision": "accept_response",
            "response_id": good["response_id"],
            "idempotency_key": uuid.uuid4().hex,
        },
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    result = await p.result(cid)
    assert result.counts.reviewed == 1


async def test_skills_and_blocking(quorum: Pipeline) -> None:
    p = quorum
    cid = await p.launch(images=2, annotators_per_image=1, agreement_threshold=0.5)
    novice = (await p.http.post("/people", json={"name": "novice"}, headers=operator())).json()
    expert_eye = (
        await p.http.post(
            "/people",
            json={"name": "radiologist", "skills": ["radiology", "ct"]},
            headers=operator(),
        )
    ).json()
    r = await p.http.put(
        f"/campaigns/{cid}/required-skills", json={"skills": ["radiology"]}, headers=operator()
    )
    assert r.json() == {"campaign_id": cid, "required_skills": ["radiology"]}
    bad = await p.http.put(
        f"/campaigns/{cid}/required-skills", json={"skills": ["<b>"]}, headers=operator()
    )
    assert bad.status_code == 422

    r = await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(novice["token"]))
    assert r.status_code == 403 and r.json()["message"].startswith(MISSING_SKILLS)
    r = await p.http.post(
        f"/campaigns/{cid}/links", json={"person_id": novice["id"]}, headers=operator()
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "person_id"

    link = await issue(p, cid, expert_eye["id"])
    r = await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(link["token"]))
    assert r.status_code == 200 and r.json()["task"] is not None

    # A blocked person's links and token stop working; unblocked, they work again.
    r = await p.http.put(
        f"/people/{expert_eye['id']}/status", json={"status": "blocked"}, headers=operator()
    )
    assert r.json()["status"] == "blocked"
    for token in (link["token"], expert_eye["token"]):
        r = await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(token))
        assert (r.status_code, r.json()["message"]) == (403, PERSON_BLOCKED)
    await p.http.put(
        f"/people/{expert_eye['id']}/status", json={"status": "active"}, headers=operator()
    )
    r = await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(link["token"]))
    assert r.status_code == 200 and r.json()["task"]["resumed"] is True


async def test_operators_see_who_is_working(quorum: Pipeline) -> None:
    p = quorum
    cid = await p.launch(images=4, annotators_per_image=1, agreement_threshold=0.5)
    ada, bob, cy = await p.people([1.0, 1.0, 1.0])
    for person in (ada, bob):
        t = (await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(person.token))).json()
        if person is ada:
            await asyncio.sleep(0.2)
            r = await p.http.post(
                f"/campaigns/{cid}/tasks/{t['task']['assignment_id']}/response",
                json=answer(p.truth[await p.item_of(cid, t["task"])]),
                headers=bearer(ada.token),
            )
            assert r.status_code == 200
            await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(ada.token))

    view = (await p.http.get(f"/campaigns/{cid}/workforce", headers=operator())).json()
    people = {w["name"]: w for w in view["people"]}
    assert set(people) == {ada.name, bob.name}, "cy never took work"
    assert view["working"] == 2
    assert (people[ada.name]["answered"], people[ada.name]["leased"]) == (1, 1)
    assert (people[bob.name]["answered"], people[bob.name]["leased"]) == (0, 1)
    assert people[ada.name]["answers_last_hour"] == 1
    assert 0.2 <= people[ada.name]["seconds_per_answer"] < 30
    assert people[bob.name]["seconds_per_answer"] is None

    leases = (await p.http.get(f"/campaigns/{cid}/leases", headers=operator())).json()
    assert sorted(lease["annotator_name"] for lease in leases) == sorted([ada.name, bob.name])
    assert all(0 < lease["seconds_left"] <= 30 and not lease["overdue"] for lease in leases)

    # Which item a lease is for: the operator's to know, never the annotator's.
    lease = leases[0]
    one = f"/campaigns/{cid}/assignments/{lease['assignment_id']}"
    r = await p.http.get(one, headers=operator())
    assert r.status_code == 200, r.text
    assert {k: r.json()[k] for k in ("item_id", "ordinal", "kind", "state")} == {
        "item_id": lease["item_id"],
        "ordinal": lease["ordinal"],
        "kind": "image",
        "state": "leased",
    }

    for url in (f"/campaigns/{cid}/workforce", f"/campaigns/{cid}/leases", one):
        assert (await p.http.get(url, headers=bearer(cy.token))).status_code == 403
    holder = ada if lease["annotator_id"] == ada.id else bob
    assert (await p.http.get(one, headers=bearer(holder.token))).status_code == 403
    assert (await p.http.get("/campaigns/nope/leases", headers=operator())).status_code == 404
    r = await p.http.get(
        f"/campaigns/nope/assignments/{lease['assignment_id']}", headers=operator()
    )
    assert r.status_code == 404


async def test_issued_links_are_rows_and_their_tokens_are_not_stored(quorum: Pipeline) -> None:
    p = quorum
    cid = await p.launch(images=1, annotators_per_image=1, agreement_threshold=0.5)
    (ada,) = await p.people([1.0])
    link = await issue(p, cid, ada.id, ttl="90m")
    async with p.sessions() as s:
        row = await s.get(TaskLink, link["id"])
    assert row is not None
    assert (row.person_id, row.campaign_id, row.kind, row.issued_by) == (
        ada.id,
        cid,
        "campaign",
        "operator",
    )
    assert 5390 <= (row.expires_at - row.issued_at).total_seconds() <= 5400
    assert link["token"] not in repr(row.__dict__)
    # The JSON API refuses a link without a bearer header on POST, even in the query.
    r = await p.http.post(f"/campaigns/{cid}/tasks/next?access_token={link['token']}")
    assert r.status_code == 401
    with pytest.raises(httpx.HTTPStatusError):
        (await p.http.get("/links/me", headers=bearer(ada.token))).raise_for_status()


async def test_a_task_link_renews_its_own_run_out_lease_and_keeps_the_limit(
    quorum: Pipeline,
) -> None:
    p = quorum
    cid = await p.launch(
        images=2, annotators_per_image=1, agreement_threshold=0.5, lease_timeout="1s"
    )
    (ada,) = await p.people([1.0])
    token = (await issue(p, cid, ada.id, kind="task", item_id=f"{cid}-1"))["token"]
    first = (await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(token))).json()
    await asyncio.sleep(1.2)
    again = (await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(token))).json()
    assert again["task"]["assignment_id"] == first["task"]["assignment_id"]
    assert again["task"]["resumed"] is False
    assert again["task"]["lease_expires_at"] > first["task"]["lease_expires_at"]
    async with p.sessions() as s:
        item = await s.get(Item, f"{cid}-1")
        assert item is not None and item.slots_taken == 1

    # At her limit of one open task (leased through her own token), the link waits its turn.
    await asyncio.sleep(1.2)
    other = (await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(ada.token))).json()
    assert await p.item_of(cid, other["task"]) == f"{cid}-0"
    r = await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(token))
    assert (r.status_code, r.json()["message"]) == (409, AT_CONCURRENCY_LIMIT)
