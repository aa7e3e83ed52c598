"""Simulated annotators and experts that work through the real HTTP API.

Each annotator knows the truth (the simulation does) and answers correctly with its accuracy,
otherwise picks another class at random. They pull work exactly like a person's browser would:
next task, answer, submit, with a fresh idempotency key per answer, reused on retry.

A task shows an annotator its assignment and its image, never which item it is (a gold item
must look like any other). A person finds the answer in the image; a simulated annotator finds
it through an ``Oracle``, which asks the operator's API which item the assignment leased.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx


@dataclass
class SimulatedAnnotator:
    name: str
    accuracy: float
    token: str = ""
    id: str = ""
    rng: random.Random = field(default_factory=random.Random)

    def answer(self, truth: str, classes: Sequence[str]) -> str:
        if self.rng.random() < self.accuracy:
            return truth
        return self.rng.choice([c for c in classes if c != truth])


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class AnswerKey(Protocol):
    """Where a simulated annotator finds the truth of the task it was leased."""

    async def truth_of(
        self, http: httpx.AsyncClient, campaign_id: str, assignment_id: str
    ) -> str: ...


@dataclass(frozen=True)
class Oracle:
    """The simulation's answer key, reached the way an operator reaches it.

    ``truth_by_item`` is read when asked, so it may be filled after the campaign is launched
    (its item IDs are known only then)."""

    operator_token: str
    truth_by_item: Mapping[str, str]

    async def item_of(self, http: httpx.AsyncClient, campaign_id: str, assignment_id: str) -> str:
        """The item an assignment leased (an operator-only route)."""
        r = await http.get(
            f"/campaigns/{campaign_id}/assignments/{assignment_id}",
            headers=_auth(self.operator_token),
        )
        r.raise_for_status()
        return str(r.json()["item_id"])

    async def truth_of(self, http: httpx.AsyncClient, campaign_id: str, assignment_id: str) -> str:
        return self.truth_by_item[await self.item_of(http, campaign_id, assignment_id)]


async def register(
    http: httpx.AsyncClient,
    operator_token: str,
    name: str,
    role: str = "annotator",
    max_concurrent: int = 1,
) -> dict[str, Any]:
    r = await http.post(
        "/people",
        json={"name": name, "role": role, "max_concurrent": max_concurrent},
        headers=_auth(operator_token),
    )
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


async def annotate_until_empty(
    http: httpx.AsyncClient,
    annotator: SimulatedAnnotator,
    campaign_id: str,
    oracle: AnswerKey,
    *,
    idle_rounds: int = 3,
    idle_sleep: float = 0.2,
    max_answers: int | None = None,
    until: asyncio.Event | None = None,
) -> int:
    """Work the queue: answer until no image needs this annotator for ``idle_rounds`` polls,
    or, when ``until`` is given, until it is set (others may still hold leases that expire)."""
    answered = 0
    idle = 0

    def keep_going() -> bool:
        if max_answers is not None and answered >= max_answers:
            return False
        return not until.is_set() if until is not None else idle < idle_rounds

    while keep_going():
        r = await http.post(f"/campaigns/{campaign_id}/tasks/next", headers=_auth(annotator.token))
        if r.status_code == 409:  # the campaign stopped accepting work
            break
        r.raise_for_status()
        payload = r.json()
        task = payload["task"]
        if task is None:
            idle += 1
            await asyncio.sleep(idle_sleep)
            continue
        idle = 0
        classes = [c["name"] for c in payload["ontology"]["classes"]]
        truth = await oracle.truth_of(http, campaign_id, task["assignment_id"])
        label = annotator.answer(truth, classes)
        await submit(http, annotator.token, campaign_id, task["assignment_id"], [label])
        answered += 1
    return answered


async def submit(
    http: httpx.AsyncClient,
    token: str,
    campaign_id: str,
    assignment_id: str,
    labels: list[str],
    *,
    idempotency_key: str | None = None,
) -> httpx.Response:
    body = {
        "idempotency_key": idempotency_key or uuid.uuid4().hex,
        "objects": [{"type": "tag", "label": label} for label in labels],
    }
    url = f"/campaigns/{campaign_id}/tasks/{assignment_id}/response"
    for attempt in range(5):  # a browser retries on a network error with the same key
        try:
            return await http.post(url, json=body, headers=_auth(token))
        except httpx.TransportError:
            await asyncio.sleep(0.2 * (attempt + 1))
    return await http.post(url, json=body, headers=_auth(token))


async def review_until_done(
    http: httpx.AsyncClient,
    expert_token: str,
    campaign_id: str,
    truth_by_item: Mapping[str, str],
    *,
    stop: asyncio.Event,
    poll: float = 0.3,
) -> int:
    """An expert who always knows the truth: accept a correct answer, or edit in the truth."""
    decided = 0
    while not stop.is_set():
        r = await http.get(f"/campaigns/{campaign_id}/reviews", headers=_auth(expert_token))
        r.raise_for_status()
        pending = r.json()
        for entry in pending:
            truth = truth_by_item[entry["item_id"]]
            correct = next(
                (
                    a
                    for a in entry["answers"]
                    if [o["label"] for o in a["body"]["objects"]] == [truth]
                ),
                None,
            )
            decision: dict[str, Any] = {"idempotency_key": uuid.uuid4().hex}
            if correct is not None:
                decision |= {"decision": "accept_response", "response_id": correct["response_id"]}
            else:
                decision |= {"decision": "edit", "objects": [{"type": "tag", "label": truth}]}
            d = await http.post(
                f"/items/{entry['item_id']}/review", json=decision, headers=_auth(expert_token)
            )
            if d.status_code == 200:
                decided += 1
        if not pending:
            try:
                await asyncio.wait_for(stop.wait(), timeout=poll)
            except TimeoutError:
                pass
    return decided
