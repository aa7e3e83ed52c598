"""Model pre-labels (services/prelabels.py): COCO and JSON Lines imports, refused whole with
errors that name the line and field; the uncertainty order at launch; the import route and
command; and the model's answers handed to the consensus as a voter.

The parsing tests need nothing; the launch and import tests run on SQLite with the real
migrations, and then on the real servers of tests/pipeline/conftest.py (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.audit_models import AuditEntry
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade_database
from db.models import Campaign, Item, Prelabel, Response
from quality.rle import counts_to_string, rle_encode
from schemas.campaign_spec import CampaignSpec
from schemas.ontology import Ontology
from services.campaigns import create_campaign
from services.errors import InvalidInput
from services.image_sources import ImageRef
from services.prelabels import (
    ACTION_IMPORTED,
    GOLD_WITHOUT_PREDICTION,
    ORDER_KEPT,
    LaunchPrelabels,
    Parsed,
    Prediction,
    Target,
    for_annotator,
    format_of,
    import_prelabels,
    parse_predictions,
    uncertainty_of,
    voter_responses,
)
from simulation.images import generate_images
from tests.pipeline.conftest import (  # noqa: F401  (fixtures, used by name)
    Pipeline,
    bearer,
    db_url,
    operator,
    pipeline,
    pipeline_unstarted,
)

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[1]

ONTOLOGY = Ontology.model_validate(
    {
        "multi_label": True,
        "classes": [
            {"name": "indoor"},
            {"name": "outdoor"},
            {
                "name": "car",
                "geometry": "box",
                "attributes": [{"name": "color", "kind": "single", "options": ["red", "blue"]}],
            },
            {"name": "road", "geometry": "polygon"},
            {"name": "sky", "geometry": "mask"},
            {
                "name": "person",
                "geometry": "keypoints",
                "keypoints": [{"name": "head"}, {"name": "hand"}],
            },
        ],
    }
)
PETS = Ontology.model_validate({"classes": [{"name": "cat"}, {"name": "dog"}, {"name": "bird"}]})
TARGETS = [Target(f"file:///data/run/image_{n:05d}.png", 100, 80) for n in range(4)]


def name(n: int) -> str:
    return f"image_{n:05d}.png"


def refused(call: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidInput) as caught:
        call()
    return [(e.field, e.message) for e in caught.value.errors]


# --------------------------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------------------------


def coco_dataset() -> dict[str, Any]:
    return {
        "images": [
            {"id": 1, "file_name": f"val/{name(0)}", "width": 100, "height": 80},
            {"id": 2, "file_name": name(1)},
            {"id": 7, "file_name": "elsewhere.png"},
        ],
        "categories": [
            {"id": 1, "name": "car"},
            {"id": 2, "name": "road"},
            {"id": 3, "name": "sky"},
            {"id": 4, "name": "person"},
            {"id": 5, "name": "outdoor"},
            {"id": 6, "name": "bus"},  # listed, never used: no problem
        ],
        "annotations": [
            {
                "image_id": 1,
                "category_id": 1,
                "bbox": [10, 20, 30, 40],
                "score": 0.9,
                "attributes": {"color": "red"},
            },
            {
                "image_id": 1,
                "category_id": 2,
                "segmentation": [[0, 0, 40, 0, 40, 30], [50, 50, 60, 50, 60, 60]],
                "score": 0.5,
            },
            {"image_id": 1, "category_id": 4, "keypoints": [5, 5, 2, 0, 0, 0], "score": 0.7},
            # An RLE in pycocotools' compressed string (a 10 x 10 block in the corner).
            {"image_id": 2, "category_id": 3, "segmentation": None},
            {"image_id": 7, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.2},
        ],
    }


def corner_rle() -> dict[str, Any]:
    mask = np.zeros((80, 100), dtype=bool)
    mask[:10, :10] = True
    rle = rle_encode(mask)
    return {"size": rle["size"], "counts": counts_to_string(rle["counts"]), "runs": rle["counts"]}


def test_a_coco_dataset_becomes_objects_of_the_ontology() -> None:
    data = coco_dataset()
    rle = corner_rle()
    data["annotations"][3]["segmentation"] = {"size": rle["size"], "counts": rle["counts"]}
    parsed = parse_predictions(json.dumps(data), "coco", ONTOLOGY, TARGETS)

    assert list(parsed.predictions) == [TARGETS[0].uri, TARGETS[1].uri]
    assert parsed.unmatched == ["elsewhere.png"]
    first = parsed.predictions[TARGETS[0].uri]
    objects = first.body["objects"]
    assert [(o["type"], o["label"]) for o in objects] == [
        ("box", "car"),
        ("polygon", "road"),
        ("polygon", "road"),  # one polygon per ring
        ("keypoints", "person"),
    ]
    assert objects[0] == {
        "type": "box",
        "label": "car",
        "attributes": {"color": "red"},
        "x": 10.0,
        "y": 20.0,
        "w": 30.0,
        "h": 40.0,
        "angle": 0.0,
    }
    assert objects[1]["points"] == [[0.0, 0.0], [40.0, 0.0], [40.0, 30.0]]
    assert objects[3]["points"] == [[5.0, 5.0, 2], [0.0, 0.0, 0]]
    # 1 - mean score of its annotations (each annotation once, however many objects it made).
    assert first.uncertainty == pytest.approx(1 - (0.9 + 0.5 + 0.7) / 3)
    # The compressed RLE is stored as run lengths; no score: the uncertainty is unknown.
    second = parsed.predictions[TARGETS[1].uri]
    assert second.body["objects"][0]["rle"] == {"size": [80, 100], "counts": rle["runs"]}
    assert second.uncertainty is None


def test_a_results_list_with_its_companion_and_the_one_file_form() -> None:
    data = coco_dataset()
    results = [a for a in data["annotations"] if a["category_id"] == 1]
    companion = json.dumps({"images": data["images"], "categories": data["categories"]})
    parsed = parse_predictions(json.dumps(results), "coco", ONTOLOGY, TARGETS, companion=companion)
    one_file = {"images": data["images"], "categories": data["categories"], "results": results}
    same = parse_predictions(json.dumps(one_file), "coco", ONTOLOGY, TARGETS)
    assert parsed.predictions == same.predictions
    # Image 2 is listed but has no result: the model saw nothing there.
    assert parsed.predictions[TARGETS[1].uri] == Prediction(TARGETS[1].uri, {"objects": []}, 1.0)

    assert refused(lambda: parse_predictions(json.dumps(results), "coco", ONTOLOGY, TARGETS)) == [
        (
            "companion",
            "a bare COCO results list needs its images and categories: give them as its "
            'companion (API: companion; CLI: --companion), or in one file as {"images", '
            '"categories", "results"}',
        )
    ]


def test_an_unknown_class_is_named_with_where_it_is_used() -> None:
    data = coco_dataset()
    data["annotations"][3]["segmentation"] = [[0, 0, 10, 0, 10, 10]]
    data["annotations"] += [
        {"image_id": 1, "category_id": 6, "bbox": [1, 1, 2, 2]},
        {"image_id": 2, "category_id": 6, "bbox": [1, 1, 2, 2]},
    ]
    assert refused(lambda: parse_predictions(json.dumps(data), "coco", ONTOLOGY, TARGETS)) == [
        (
            "categories.5.name",
            "unknown class 'bus' (used by 2 annotation(s), first annotations.5); this "
            "campaign's classes are ['indoor', 'outdoor', 'car', 'road', 'sky', 'person']",
        )
    ]


def test_coco_errors_name_the_annotation_and_its_coco_field() -> None:
    data = coco_dataset()
    data["annotations"][3]["segmentation"] = [[0, 0, 10, 0, 10, 10]]  # rasterized: fine
    data["annotations"] += [
        {"image_id": 1, "category_id": 1, "bbox": [90, 10, 30, 10]},  # 5: past the right edge
        {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "attributes": {"color": "pink"}},
        {"image_id": 1, "category_id": 1, "segmentation": [[0, 0, 1, 1, 1, 0]]},  # 7: no bbox
        {"image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 1.5},
        {"image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5]},
    ]
    errors = refused(lambda: parse_predictions(json.dumps(data), "coco", ONTOLOGY, TARGETS))
    assert errors == [
        ("annotations.5.bbox", "corner 1 (120.0, 10.0) is outside the 100x80 image"),
        ("annotations.6.attributes.color", "must be one of ['red', 'blue']"),
        ("annotations.7.bbox", "a box class needs bbox [x, y, w, h]"),
        ("annotations.8.score", "must be a number from 0 to 1"),
        ("annotations.9.image_id", "no image with id 99"),
    ]


@pytest.mark.parametrize(
    ("multi_label", "scores", "tags", "uncertainty"),
    [
        pytest.param(False, {"cat": 0.7, "dog": 0.2, "bird": 0.1}, ["cat"], 0.3, id="argmax"),
        pytest.param(False, {"cat": 0.4, "dog": 0.4}, ["cat"], 0.6, id="tie-ontology-order"),
        pytest.param(True, {"cat": 0.9, "dog": 0.2}, ["cat"], 1 - (0.9 + 0.8) / 2, id="multi"),
    ],
)
def test_tag_scores_choose_the_tag_and_give_the_uncertainty(
    multi_label: bool, scores: dict[str, float], tags: list[str], uncertainty: float
) -> None:
    ontology = PETS.model_copy(update={"multi_label": multi_label})
    ids = {"cat": 1, "dog": 2, "bird": 3}
    data = {
        "images": [{"id": 1, "file_name": name(0)}, {"id": 2, "file_name": name(1)}],
        "categories": [{"id": i, "name": n} for n, i in ids.items()],
        "results": [{"image_id": 1, "category_id": ids[c], "score": p} for c, p in scores.items()],
    }
    parsed = parse_predictions(json.dumps(data), "coco", ontology, TARGETS)
    # Image 2 has no result: in a classification campaign that is no prediction at all.
    assert list(parsed.predictions) == [TARGETS[0].uri]
    (prediction,) = parsed.predictions.values()
    assert [o["label"] for o in prediction.body["objects"]] == tags
    assert prediction.uncertainty == pytest.approx(uncertainty)


# --------------------------------------------------------------------------------------------
# JSON Lines
# --------------------------------------------------------------------------------------------


def box(x: float, y: float, w: float, h: float, **extra: Any) -> dict[str, Any]:
    return {"type": "box", "label": "car", "x": x, "y": y, "w": w, "h": h, **extra}


def jsonl(*entries: Any) -> str:
    return "\n".join(e if isinstance(e, str) else json.dumps(e) for e in entries) + "\n"


def test_json_lines_by_uri_or_file_name_with_scores_or_a_given_uncertainty() -> None:
    text = jsonl(
        {"uri": TARGETS[0].uri, "objects": [box(1, 1, 5, 5, score=0.8), box(9, 9, 5, 5)]},
        "",
        {"file_name": name(1), "objects": [], "uncertainty": 0.25},
        {
            "uri": f"s3://bucket/elsewhere/{name(2)}",
            "objects": [{"type": "tag", "label": "indoor"}],
        },
        {"file_name": "nowhere.png", "objects": []},
    )
    parsed = parse_predictions(text, "jsonl", ONTOLOGY, TARGETS)
    got = {uri: (len(p.body["objects"]), p.uncertainty) for uri, p in parsed.predictions.items()}
    assert got == {
        TARGETS[0].uri: (2, pytest.approx(0.2)),  # the one score counts; the other is unknown
        TARGETS[1].uri: (0, 0.25),  # given
        TARGETS[2].uri: (1, None),  # matched by the basename of its uri; no score
    }
    assert parsed.unmatched == ["nowhere.png"]
    # The stored objects are the response schema's, without the scores.
    assert parsed.predictions[TARGETS[0].uri].body["objects"][0] == {
        **box(1.0, 1.0, 5.0, 5.0),
        "angle": 0.0,
        "attributes": {},
    }


def test_scores_choose_a_single_tag_when_the_line_gives_none() -> None:
    text = jsonl(
        {"file_name": name(0), "objects": [], "scores": {"cat": 0.1, "dog": 0.85, "bird": 0.05}},
        {
            "file_name": name(1),
            "objects": [{"type": "tag", "label": "cat"}],
            "scores": {"cat": 0.6},
        },
    )
    parsed = parse_predictions(text, "jsonl", PETS, TARGETS)
    first, second = parsed.predictions.values()
    assert [o["label"] for o in first.body["objects"]] == ["dog"]
    assert first.uncertainty == pytest.approx(0.15)  # 1 - max p
    assert [o["label"] for o in second.body["objects"]] == ["cat"]
    assert second.uncertainty == pytest.approx(0.4)


def test_bad_lines_are_named_by_line_number_and_field_and_nothing_is_taken() -> None:
    text = jsonl(
        {"file_name": name(0), "objects": [box(1, 1, 5, 5)]},  # fine
        "{not json",
        {"file_name": name(1), "objects": [box(1, 1, 0, 5)], "extra": 1},
        {"objects": []},
        {"file_name": name(2), "objects": [{"type": "box", "label": "bus", "x": 1}]},
        {"file_name": name(3), "objects": [box(1, 1, 5, 5, score=2)], "uncertainty": "high"},
        [1, 2],
        {"file_name": name(0), "objects": []},
        {"file_name": "other.png"},
        {"file_name": name(2), "objects": [box(1, 1, 5, 5, z=1)]},
    )
    errors = refused(lambda: parse_predictions(text, "jsonl", ONTOLOGY, TARGETS))
    assert errors == [
        (
            "lines.2",
            "not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        ("lines.3.extra", "unknown field"),
        ("lines.3.objects.0.w", "the box has zero area"),
        ("lines.4.uri", "give the image as one of uri or file_name"),
        ("lines.5.objects.0.h", "this field is required"),
        ("lines.5.objects.0.w", "this field is required"),
        ("lines.5.objects.0.y", "this field is required"),
        ("lines.6.objects.0.score", "must be a number from 0 to 1"),
        ("lines.6.uncertainty", "must be a number from 0 to 1"),
        ("lines.7", "must be a JSON object"),
        ("lines.8.file_name", "'image_00000.png' was already predicted at lines.1.file_name"),
        ("lines.9.objects", "this field is required"),
        ("lines.10.file_name", "'image_00002.png' was already predicted at lines.5.file_name"),
    ]


def test_an_unknown_class_in_a_line_is_named() -> None:
    text = jsonl({"file_name": name(0), "objects": [{**box(1, 1, 5, 5), "label": "bus"}]})
    assert refused(lambda: parse_predictions(text, "jsonl", ONTOLOGY, TARGETS)) == [
        (
            "lines.1.objects.0.label",
            "unknown class 'bus'; expected one of "
            "['indoor', 'outdoor', 'car', 'road', 'sky', 'person']",
        )
    ]


def test_a_file_that_names_no_image_of_the_campaign_is_refused() -> None:
    text = jsonl({"file_name": "a.png", "objects": []}, {"file_name": "b.png", "objects": []})
    ((field, message),) = refused(lambda: parse_predictions(text, "jsonl", ONTOLOGY, TARGETS))
    assert field == "file_name"
    assert message.startswith("no prediction names an image of this campaign")
    assert "'a.png', 'b.png'" in message


def test_a_basename_shared_by_two_images_needs_the_full_uri() -> None:
    targets = [Target("s3://b/a/x.png"), Target("s3://b/b/x.png")]
    text = jsonl({"file_name": "x.png", "objects": []}, {"uri": "s3://b/b/x.png", "objects": []})
    ((field, message),) = refused(lambda: parse_predictions(text, "jsonl", ONTOLOGY, targets))
    assert field == "lines.1.file_name" and "names 2 images" in message


# --------------------------------------------------------------------------------------------
# The rule and the order
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidences", "objects", "expected"),
    [
        pytest.param([0.9, 0.7], 2, 0.2, id="one-minus-mean"),
        pytest.param([0.6], 1, 0.4, id="single-tag"),
        pytest.param([], 0, 1.0, id="nothing-found"),
        pytest.param([], 3, None, id="no-scores"),
        pytest.param([1.0, 1.0], 2, 0.0, id="sure"),
    ],
)
def test_uncertainty_rule(confidences: list[float], objects: int, expected: float | None) -> None:
    assert uncertainty_of(confidences, objects) == (
        None if expected is None else pytest.approx(expected)
    )


def test_the_least_sure_come_first_then_unknown_and_unpredicted_in_listed_order() -> None:
    images = [ImageRef(f"file:///i/{n}.png") for n in range(6)]
    u = {0: 0.1, 1: None, 2: 0.8, 4: 0.8, 5: 0.5}  # 3 has no prediction
    predictions = {
        images[n].uri: Prediction(images[n].uri, {"objects": []}, v) for n, v in u.items()
    }
    loaded = LaunchPrelabels("m", "jsonl", "uncertainty", Parsed(predictions, []))
    assert [images.index(i) for i in loaded.work_order(images)] == [2, 4, 5, 0, 1, 3]
    loaded.order = "as_listed"
    assert loaded.work_order(images) == images


def test_format_by_extension() -> None:
    assert format_of("p.jsonl") == "jsonl" and format_of("p.JSON") == "coco"
    assert format_of("p.txt", "jsonl") == "jsonl"
    with pytest.raises(InvalidInput, match=r"cannot tell the format of 'p\.txt'"):
        format_of("p.txt")


# --------------------------------------------------------------------------------------------
# Launch and import on SQLite (the real migrations), no Temporal
# --------------------------------------------------------------------------------------------


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'prelabels.db'}"
    await upgrade_database(url)
    engine = create_engine(url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


def spec_for(tmp_path: Path, images: int = 5, **prelabels: Any) -> CampaignSpec:
    generate_images(tmp_path / "images", images)  # 96 x 96
    return CampaignSpec.model_validate(
        {
            "name": "pre",
            "images": {"directory": "images"},
            "ontology": ONTOLOGY.model_dump(mode="json"),
            "annotators_per_image": 1,
            "agreement_threshold": 0.5,
            "lease_timeout": "1m",
            "review_timeout": "1m",
            **({"prelabels": prelabels} if prelabels else {}),
        }
    )


def scored_lines() -> str:
    """image 1 least sure (0.9), then 3 (0.6), 0 (0.2); 2 has no score; 4 no prediction."""
    return jsonl(
        {"file_name": name(0), "objects": [box(1, 1, 9, 9, score=0.8)]},
        {"file_name": name(1), "objects": [box(1, 1, 9, 9, score=0.1)]},
        {"file_name": name(2), "objects": [box(1, 1, 9, 9)]},
        {"file_name": name(3), "objects": [], "uncertainty": 0.6},
        {"file_name": "not-in-campaign.png", "objects": []},
    )


async def items_of(sessions: async_sessionmaker[AsyncSession], cid: str) -> list[str]:
    async with sessions() as s:
        uris = await s.scalars(
            select(Item.uri).where(Item.campaign_id == cid).order_by(Item.ordinal)
        )
        return [u.rsplit("/", 1)[1] for u in uris]


async def test_launch_orders_by_uncertainty_and_stores_the_predictions(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    (tmp_path / "pre.jsonl").write_text(scored_lines())
    spec = spec_for(tmp_path, file="pre.jsonl", model="det-v2", order="uncertainty")
    campaign = await create_campaign(sessions, spec, created_by="ops", base_dir=tmp_path)
    assert await items_of(sessions, campaign.id) == [name(n) for n in (1, 3, 0, 2, 4)]
    async with sessions() as s:
        rows = {
            p.item_id: p
            for p in await s.scalars(select(Prelabel).where(Prelabel.campaign_id == campaign.id))
        }
        # Ordinal 0 is image 1, the least sure.
        assert rows[f"{campaign.id}-0"].uncertainty == pytest.approx(0.9)
        assert rows[f"{campaign.id}-0"].model == "det-v2"
        assert f"{campaign.id}-4" not in rows and len(rows) == 4
        (entry,) = await s.scalars(
            select(AuditEntry).where(
                AuditEntry.chain == campaign.id, AuditEntry.action == ACTION_IMPORTED
            )
        )
        assert entry.actor_id == "ops"
        assert entry.details == {
            "model": "det-v2",
            "format": "jsonl",
            "imported": 4,
            "replaced": 0,
            "unmatched": 1,
            "at_launch": True,
            "order": "uncertainty",
        }


async def test_without_prelabels_the_listed_order_stands(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    campaign = await create_campaign(
        sessions, spec_for(tmp_path), created_by="ops", base_dir=tmp_path
    )
    assert await items_of(sessions, campaign.id) == [name(n) for n in range(5)]
    (tmp_path / "pre.jsonl").write_text(scored_lines())
    listed = spec_for(tmp_path, file="pre.jsonl")  # order as_listed
    other = await create_campaign(sessions, listed, created_by="ops", base_dir=tmp_path)
    assert await items_of(sessions, other.id) == [name(n) for n in range(5)]


async def test_a_bad_file_at_launch_stores_no_campaign(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    (tmp_path / "pre.jsonl").write_text(
        jsonl({"file_name": name(0), "objects": [box(90, 1, 20, 5)]})
    )
    with pytest.raises(InvalidInput) as caught:
        await create_campaign(
            sessions, spec_for(tmp_path, file="pre.jsonl"), created_by="ops", base_dir=tmp_path
        )
    assert [(e.field, e.message) for e in caught.value.errors] == [
        ("prelabels.file", "lines.1.objects.0: corner 1 (110.0, 1.0) is outside the 96x96 image")
    ]
    with pytest.raises(InvalidInput, match=r"prelabels.file: .*missing.jsonl is not a file"):
        await create_campaign(
            sessions, spec_for(tmp_path, file="missing.jsonl"), created_by="ops", base_dir=tmp_path
        )
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Campaign)) == 0


async def test_a_reimport_replaces_per_item_and_says_the_order_stays(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    (tmp_path / "pre.jsonl").write_text(scored_lines())
    spec = spec_for(tmp_path, file="pre.jsonl", order="uncertainty")
    campaign = await create_campaign(sessions, spec, created_by="ops", base_dir=tmp_path)
    before = await items_of(sessions, campaign.id)
    text = jsonl(
        {"file_name": name(4), "objects": [box(2, 2, 3, 3, score=0.99)]},
        {"file_name": name(0), "objects": []},
    )
    async with sessions.begin() as s:
        result = await import_prelabels(s, campaign.id, text, fmt="jsonl", model="det-v3")
    assert (result.imported, result.replaced, result.unmatched) == (2, 1, [])
    assert (
        result.message
        == f"imported 2 prediction(s) of model 'det-v3'; 1 replaced earlier ones; {ORDER_KEPT}"
    )
    assert await items_of(sessions, campaign.id) == before
    async with sessions() as s:
        rows = {
            p.item_id: (p.model, round(p.uncertainty or 0.0, 9))
            for p in await s.scalars(select(Prelabel).where(Prelabel.campaign_id == campaign.id))
        }
        ids = dict((await s.execute(select(Item.uri, Item.id))).all())
        by_name = {uri.rsplit("/", 1)[1]: rows.get(item) for uri, item in ids.items()}
        assert by_name[name(0)] == ("det-v3", 1.0)
        assert by_name[name(4)] == ("det-v3", 0.01)
        assert by_name[name(1)] == ("model", 0.9)  # untouched
        actions = await s.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.chain == campaign.id)
            .order_by(AuditEntry.seq)
        )
        assert list(actions).count(ACTION_IMPORTED) == 2
    # Refused: nothing changes.
    async with sessions.begin() as s:
        with pytest.raises(InvalidInput):
            await import_prelabels(
                s,
                campaign.id,
                jsonl({"file_name": name(1), "objects": []}, "oops"),
                fmt="jsonl",
                model="det-v4",
            )
    async with sessions() as s:
        assert await s.scalar(select(func.count()).where(Prelabel.model == "det-v4")) == 0


async def test_voter_responses_are_transient_answers_of_the_model(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    (tmp_path / "pre.jsonl").write_text(scored_lines())
    voter = await create_campaign(
        sessions,
        spec_for(tmp_path, file="pre.jsonl", model="det-v2", mode="voter"),
        created_by="ops",
        base_dir=tmp_path,
    )
    start = await create_campaign(
        sessions, spec_for(tmp_path, file="pre.jsonl"), created_by="ops", base_dir=tmp_path
    )
    ids = [f"{voter.id}-{n}" for n in range(5)]
    async with sessions() as s:
        got = await voter_responses(s, voter.id, ids)
        assert sorted(got) == ids[:4]  # the fifth image has no prediction
        r = got[ids[0]]
        assert isinstance(r, Response) and r not in s
        assert (r.id, r.annotator_id, r.item_id, r.campaign_id) == (
            f"pre-{ids[0]}",
            "model:det-v2",
            ids[0],
            voter.id,
        )
        assert r.body == {"objects": [{**box(1.0, 1.0, 9.0, 9.0), "angle": 0.0, "attributes": {}}]}
        assert await voter_responses(s, start.id, [f"{start.id}-0"]) == {}
        assert await voter_responses(s, "cmp_nope", ids) == {}
        await s.commit()
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Response)) == 0


def gold_spec_for(tmp_path: Path, **prelabels: Any) -> CampaignSpec:
    """Five images, and three gold items: ``gold/image_00000.png`` (the name of image 0, in
    another folder), ``gold/gold_a.png`` (a name no image has), and image 3 itself."""
    spec = spec_for(tmp_path, **prelabels)
    generate_images(tmp_path / "gold", 1, seed=3)
    shutil.copyfile(tmp_path / "gold" / name(0), tmp_path / "gold" / "gold_a.png")
    uris = [
        (tmp_path / "gold" / name(0)).as_uri(),
        (tmp_path / "gold" / "gold_a.png").as_uri(),
        (tmp_path / "images" / name(3)).as_uri(),
    ]
    return CampaignSpec.model_validate(
        {
            **spec.model_dump(mode="json", exclude_none=True),
            "gold": {"rate": 0.2, "items": [{"uri": u, "label": "indoor"} for u in uris]},
        }
    )


async def prelabels_by_uri(
    sessions: async_sessionmaker[AsyncSession], cid: str
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(kind, URI) -> the stored draft's objects, for every item that has one."""
    async with sessions() as s:
        rows = await s.execute(
            select(Item.kind, Item.uri, Prelabel.body)
            .join(Prelabel, Prelabel.item_id == Item.id)
            .where(Item.campaign_id == cid)
        )
        return {(kind, uri): body["objects"] for kind, uri, body in rows.all()}


async def test_gold_items_take_predictions_when_annotators_see_them(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """A gold task that opened empty among images that open with a draft would give itself
    away: in mode start, gold items are matched like images (an image's name wins)."""
    gold_box = box(5, 5, 9, 9, attributes={"color": "red"})
    (tmp_path / "pre.jsonl").write_text(
        scored_lines()
        + jsonl(
            {"uri": (tmp_path / "gold" / name(0)).as_uri(), "objects": [gold_box]},
            {"file_name": "gold_a.png", "objects": []},
        )
    )
    campaign = await create_campaign(
        sessions, gold_spec_for(tmp_path, file="pre.jsonl"), created_by="ops", base_dir=tmp_path
    )
    stored = await prelabels_by_uri(sessions, campaign.id)
    gold_dir, images = (tmp_path / "gold"), (tmp_path / "images")
    image_0 = stored[("image", (images / name(0)).as_uri())]
    assert image_0 == [{**box(1.0, 1.0, 9.0, 9.0), "angle": 0.0, "attributes": {}}]
    assert stored[("gold", (gold_dir / name(0)).as_uri())] == [
        {**box(5.0, 5.0, 9.0, 9.0), "angle": 0.0, "attributes": {"color": "red"}}
    ]
    assert stored[("gold", (gold_dir / "gold_a.png").as_uri())] == []
    # Image 3 is also a gold item: both get its prediction.
    assert (
        stored[("gold", (images / name(3)).as_uri())]
        == stored[("image", (images / name(3)).as_uri())]
    )
    async with sessions() as s:
        gold_ids = (
            await s.scalars(
                select(Item.id).where(Item.campaign_id == campaign.id, Item.kind == "gold")
            )
        ).all()
        drafts = [await for_annotator(s, campaign, item_id) for item_id in gold_ids]
        (entry,) = await s.scalars(
            select(AuditEntry).where(
                AuditEntry.chain == campaign.id, AuditEntry.action == ACTION_IMPORTED
            )
        )
    assert all(draft is not None for draft in drafts)
    assert "gold_without_prediction" not in entry.details


async def test_gold_without_a_prediction_among_predicted_images_is_said(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    (tmp_path / "pre.jsonl").write_text(scored_lines())  # images 0-3 only (3 is also gold)
    campaign = await create_campaign(
        sessions, gold_spec_for(tmp_path, file="pre.jsonl"), created_by="ops", base_dir=tmp_path
    )
    async with sessions() as s:
        (entry,) = await s.scalars(
            select(AuditEntry).where(
                AuditEntry.chain == campaign.id, AuditEntry.action == ACTION_IMPORTED
            )
        )
    assert entry.details["gold_without_prediction"] == 2
    async with sessions.begin() as s:
        result = await import_prelabels(
            s, campaign.id, jsonl({"file_name": name(4), "objects": []}), fmt="jsonl", model="m"
        )
    assert result.message.endswith(GOLD_WITHOUT_PREDICTION.format(n=2))
    async with sessions.begin() as s:
        result = await import_prelabels(
            s,
            campaign.id,
            jsonl(
                {"file_name": "gold_a.png", "objects": []}, {"file_name": name(0), "objects": []}
            ),
            fmt="jsonl",
            model="m",
        )
    # gold/image_00000.png shares its name with image 0, which the name picks: still missing.
    assert result.message.endswith(GOLD_WITHOUT_PREDICTION.format(n=1))

    # A voter's predictions are never shown, so gold takes none (nor any warning).
    (tmp_path / "voter").mkdir()
    voter = await create_campaign(
        sessions,
        gold_spec_for(tmp_path / "voter", file=str(tmp_path / "pre.jsonl"), mode="voter"),
        created_by="ops",
        base_dir=tmp_path / "voter",
    )
    assert {kind for kind, _ in await prelabels_by_uri(sessions, voter.id)} == {"image"}


async def test_the_command_imports_and_says_what_it_did(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    (tmp_path / "pre.jsonl").write_text(scored_lines())
    campaign = await create_campaign(
        sessions,
        spec_for(tmp_path, file="pre.jsonl", order="uncertainty"),
        created_by="ops",
        base_dir=tmp_path,
    )
    url = str(sessions.kw["bind"].url)
    good = tmp_path / "later.json"
    good.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": name(4)}, {"id": 2, "file_name": "x.png"}],
                "categories": [{"id": 1, "name": "car"}],
                "annotations": [
                    {"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "score": 0.5}
                ],
            }
        )
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text(jsonl({"file_name": name(4), "objects": [{**box(1, 1, 4, 4), "label": "bus"}]}))

    def quorum(*args: str | Path) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "QUORUM_DATABASE__URL": url,
            "QUORUM_HOME": str(tmp_path / "home"),
            "PYTHONPATH": str(ROOT),
        }
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "prelabels", "import", *map(str, args)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    ok = await asyncio.to_thread(quorum, campaign.id, good, "--model", "det-v3")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == (
        f"{campaign.id}: imported 1 prediction(s) of model 'det-v3'; 1 file name(s) matched no "
        f"image of the campaign ('x.png'); {ORDER_KEPT}\n"
    )
    no = await asyncio.to_thread(quorum, campaign.id, bad)
    assert no.returncode == 2 and no.stdout == ""
    assert no.stderr == (
        f"{bad}: nothing was imported:\n"
        f"{bad}: lines.1.objects.0.label: unknown class 'bus'; expected one of "
        "['indoor', 'outdoor', 'car', 'road', 'sky', 'person']\n"
    )
    other = await asyncio.to_thread(quorum, "cmp_nope", good)
    assert (other.returncode, other.stderr) == (2, "quorum prelabels: no campaign cmp_nope\n")
    odd = await asyncio.to_thread(quorum, campaign.id, tmp_path / "pre.txt", "--model", "Big Model")
    assert odd.returncode == 2 and "'Big Model' is not a model name" in odd.stderr


# --------------------------------------------------------------------------------------------
# On the real servers: launch through the API, the tasks, and the import route
# --------------------------------------------------------------------------------------------


@pytest.fixture
def quorum(pipeline: Pipeline) -> Pipeline:  # noqa: F811
    return pipeline


BOXES = {"classes": [{"name": "car", "geometry": "box"}, {"name": "truck", "geometry": "box"}]}


async def test_the_annotator_gets_the_least_sure_image_first_with_its_prediction(
    quorum: Pipeline,
) -> None:
    p = quorum
    pre = p.tmp / "pre.jsonl"
    pre.write_text(scored_lines())
    cid = await p.launch(
        5,
        ontology=BOXES,
        annotators_per_image=1,
        agreement_threshold=0.5,
        prelabels={"file": str(pre), "model": "det-v2", "order": "uncertainty"},
    )
    (ann,) = await p.people([1.0])
    seen = []
    for _ in range(2):
        r = await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(ann.token))
        task = r.json()["task"]
        seen.append((await p.item_of(cid, task), task["prelabel"]))
        r = await p.http.post(
            f"/campaigns/{cid}/tasks/{task['assignment_id']}/response",
            json={"idempotency_key": f"key-{task['assignment_id']}", "objects": []},
            headers=bearer(ann.token),
        )
        assert r.status_code == 200, r.text
    assert seen == [
        (f"{cid}-0", {"objects": [{**box(1.0, 1.0, 9.0, 9.0), "angle": 0.0, "attributes": {}}]}),
        (f"{cid}-1", {"objects": []}),  # image 3: nothing found, uncertainty given as 0.6
    ]
    async with p.sessions() as s:
        first = await s.scalar(select(Item.uri).where(Item.id == f"{cid}-0"))
    assert first is not None and first.endswith(name(1))


async def test_voter_predictions_are_not_shown_to_annotators(quorum: Pipeline) -> None:
    p = quorum
    pre = p.tmp / "pre.jsonl"
    pre.write_text(scored_lines())
    cid = await p.launch(
        5,
        ontology=BOXES,
        annotators_per_image=1,
        agreement_threshold=0.5,
        prelabels={"file": str(pre), "mode": "voter"},
    )
    (ann,) = await p.people([1.0])
    r = await p.http.post(f"/campaigns/{cid}/tasks/next", headers=bearer(ann.token))
    assert r.json()["task"]["prelabel"] is None
    async with p.sessions() as s:
        assert len(await voter_responses(s, cid, [f"{cid}-{n}" for n in range(5)])) == 4


async def test_the_import_route_counts_or_refuses_with_fields(quorum: Pipeline) -> None:
    p = quorum
    cid = await p.launch(3, ontology=BOXES, annotators_per_image=1, agreement_threshold=0.5)
    url = f"/campaigns/{cid}/prelabels"
    good = jsonl(
        {"file_name": name(0), "objects": [box(1, 1, 9, 9, score=0.7)]},
        {"file_name": "gone.png", "objects": []},
    )
    r = await p.http.post(url, json={"format": "jsonl", "content": good}, headers=operator())
    assert r.status_code == 200, r.text
    assert r.json() == {
        "campaign_id": cid,
        "model": "model",
        "format": "jsonl",
        "imported": 1,
        "replaced": 0,
        "unmatched": 1,
        "unmatched_file_names": ["gone.png"],
        "message": "imported 1 prediction(s) of model 'model'; 1 file name(s) matched no image "
        "of the campaign ('gone.png')",
    }

    bad = jsonl(
        {"file_name": name(1), "objects": [{**box(1, 1, 9, 9), "label": "bus"}]},
        {"file_name": name(2), "objects": [box(90, 1, 9, 9)]},
    )
    r = await p.http.post(
        url, json={"format": "jsonl", "model": "det", "content": bad}, headers=operator()
    )
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {
            "field": "lines.1.objects.0.label",
            "message": "unknown class 'bus'; expected one of ['car', 'truck']",
        },
        {
            "field": "lines.2.objects.0",
            "message": "corner 1 (99.0, 1.0) is outside the 96x96 image",
        },
    ]
    r = await p.http.post(
        url, json={"format": "yaml", "model": "Det!", "content": ""}, headers=operator()
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["format", "model", "content"]
    r = await p.http.post(url, json={"format": "jsonl", "content": good}, headers=bearer("x"))
    assert r.status_code == 403
    r = await p.http.post(
        "/campaigns/cmp_nope/prelabels",
        json={"format": "jsonl", "content": good},
        headers=operator(),
    )
    assert r.status_code == 404
    async with p.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Prelabel)) == 1
