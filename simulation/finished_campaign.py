"""A finished campaign written straight into the database: items, answers and consensus.

Labeling 100,000 images through the workflows takes hours; publishing them takes minutes. To
measure and test the publish on its own (its memory above all), this writes what a campaign
leaves behind when its last image is final, in bulk: the campaign row and its audit chain, the
annotators, and for each image ``k`` assignments, ``k`` answers and a consensus row, exactly in
the shape the workflows write them. Two kinds of campaign:

* ``"classes"``: one single-label class per answer, from three classes; about one image in five
  has a dissenting answer;
* ``"boxes"``: one to three boxes per image, each annotator's a few pixels off the truth.

Deterministic for a given ``seed``. Nothing here runs a workflow or calls Temporal.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import Annotator, Assignment, Campaign, Consensus, Item, Response
from schemas.workflow_io import item_id_for, item_workflow_id
from services import audit

Kind = Literal["classes", "boxes"]
CLASSES = ("circle", "square", "triangle")
ONTOLOGIES: dict[str, dict[str, Any]] = {
    "classes": {"classes": [{"name": name} for name in CLASSES]},
    "boxes": {"classes": [{"name": "car", "geometry": "box"}]},
}
WIDTH, HEIGHT = 640, 480
_BATCH = 2_000  # items per transaction
_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _answers(rng: random.Random, kind: Kind, k: int) -> tuple[list[list[dict[str, Any]]], Any]:
    """Each annotator's objects, and the consensus objects."""
    if kind == "classes":
        truth = rng.choice(CLASSES)
        said = [truth] * k
        if rng.random() < 0.2:
            said[rng.randrange(k)] = rng.choice([c for c in CLASSES if c != truth])
        top = max(set(said), key=said.count)
        tags = [[{"type": "tag", "label": label, "attributes": {}}] for label in said]
        support = said.count(top) / k
        return tags, [{"type": "tag", "label": top, "attributes": {}, "confidence": support}]
    boxes = []
    for _ in range(rng.randint(1, 3)):
        w, h = rng.uniform(20, 120), rng.uniform(20, 120)
        boxes.append((rng.uniform(0, WIDTH - w), rng.uniform(0, HEIGHT - h), w, h))
    drawn = [
        [
            {
                "type": "box",
                "label": "car",
                "x": round(x + rng.gauss(0, 2), 2),
                "y": round(y + rng.gauss(0, 2), 2),
                "w": round(w + rng.gauss(0, 2), 2),
                "h": round(h + rng.gauss(0, 2), 2),
                "angle": 0.0,
                "attributes": {},
            }
            for x, y, w, h in boxes
        ]
        for _ in range(k)
    ]
    consensus = [
        {"type": "box", "label": "car", "x": x, "y": y, "w": w, "h": h, "angle": 0.0}
        | {"attributes": {}, "confidence": 0.9}
        for x, y, w, h in boxes
    ]
    return drawn, consensus


async def write_finished_campaign(
    sessions: async_sessionmaker[AsyncSession],
    campaign_id: str,
    images: int,
    *,
    kind: Kind = "classes",
    annotators_per_image: int = 3,
    workforce: int = 30,
    dataset: str = "finished",
    seed: int = 0,
) -> None:
    """Write a campaign ``campaign_id`` of ``images`` finished images (status "publishing")."""
    if annotators_per_image > workforce:
        raise ValueError("annotators_per_image: must not exceed workforce")
    rng = random.Random(seed)
    ontology = ONTOLOGIES[kind]
    people = [f"{campaign_id}-w{n:03d}" for n in range(workforce)]
    async with sessions.begin() as session:
        session.add(
            Campaign(
                id=campaign_id,
                name=f"finished {campaign_id}",
                dataset=dataset,
                spec={"name": f"finished {campaign_id}", "ontology": ontology},
                status="publishing",
                annotators_per_image=annotators_per_image,
                agreement_threshold=0.6,
                lease_timeout_s=600.0,
                review_timeout_s=3600.0,
                window=100,
                item_count=images,
                created_by="simulation",
            )
        )
        await audit.start_chain(session, campaign_id)
        await session.execute(
            insert(Annotator),
            [
                {"id": p, "name": p, "external_id": p, "role": "annotator", "token_hash": p}
                for p in people
            ],
        )
    for start in range(0, images, _BATCH):
        items, assignments, responses, consensus = [], [], [], []
        for ordinal in range(start, min(images, start + _BATCH)):
            item_id = item_id_for(campaign_id, ordinal)
            at = _START + timedelta(seconds=ordinal)
            drawn, agreed = _answers(rng, kind, annotators_per_image)
            who = rng.sample(people, annotators_per_image)
            items.append(
                {
                    "id": item_id,
                    "campaign_id": campaign_id,
                    "ordinal": ordinal,
                    "uri": f"file:///images/{campaign_id}/{ordinal:07d}.png",
                    "width": WIDTH,
                    "height": HEIGHT,
                    "status": "done",
                    "slots_taken": annotators_per_image,
                    "slots_wanted": annotators_per_image,
                    "kind": "image",
                    "agreement": 1.0 if len({str(d) for d in drawn}) == 1 else 0.67,
                    "opened_at": at,
                    "finished_at": at + timedelta(seconds=30),
                }
            )
            for n, (person, objects) in enumerate(zip(who, drawn, strict=True)):
                key = f"{item_id}-{n}"
                assignments.append(
                    {
                        "id": f"as-{key}",
                        "campaign_id": campaign_id,
                        "item_id": item_id,
                        "annotator_id": person,
                        "state": "submitted",
                        "leased_at": at,
                        "lease_expires_at": at + timedelta(minutes=10),
                        "finished_at": at + timedelta(seconds=10 + n),
                    }
                )
                responses.append(
                    {
                        "id": f"re-{key}",
                        "assignment_id": f"as-{key}",
                        "campaign_id": campaign_id,
                        "item_id": item_id,
                        "annotator_id": person,
                        "idempotency_key": key,
                        "body": {"objects": objects},
                        "late": False,
                        "submitted_at": at + timedelta(seconds=10 + n),
                    }
                )
            consensus.append(
                {
                    "item_id": item_id,
                    "campaign_id": campaign_id,
                    "body": {"objects": agreed},
                    "method": "majority_vote",
                    "confidence": 0.9,
                    "agreement": items[-1]["agreement"],
                    "response_ids": [f"re-{item_id}-{n}" for n in range(annotators_per_image)],
                    "annotator_ids": who,
                    "workflow_id": item_workflow_id(campaign_id, ordinal),
                    "run_id": f"run-{ordinal}",
                    "finalized_at": at + timedelta(seconds=30),
                }
            )
        async with sessions.begin() as session:
            for table, rows in (
                (Item, items),
                (Assignment, assignments),
                (Response, responses),
                (Consensus, consensus),
            ):
                await session.execute(insert(table), rows)
