"""The COCO export of a consensus, evaluated by pycocotools against the synthetic truth.

Three annotators draw noisy boxes (and sometimes miss one or add a spurious one). Their
consensus, computed exactly as the item workflow computes it, is exported to COCO with its
confidences as scores, and COCOeval scores it against the truth's own COCO export.
"""

from __future__ import annotations

import contextlib
import io
import random
from pathlib import Path
from typing import Any

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from db.models import Response
from schemas.ontology import Ontology
from services.consensus import assess
from storage.exports import export_records

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

ONTOLOGY = {"classes": [{"name": "car", "geometry": "box"}]}
SIZE = 200


def truth_boxes(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "type": "box",
            "label": "car",
            "x": rng.uniform(0, 140),
            "y": rng.uniform(0, 140),
            "w": rng.uniform(25, 55),
            "h": rng.uniform(25, 55),
            "attributes": {},
        }
        for _ in range(3)
    ]


def noisy(rng: random.Random, boxes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    drawn = []
    for b in boxes:
        if rng.random() < 0.1:
            continue  # missed
        x, y = b["x"] + rng.gauss(0, 3), b["y"] + rng.gauss(0, 3)
        w, h = b["w"] + rng.gauss(0, 3), b["h"] + rng.gauss(0, 3)
        drawn.append({**b, "x": max(0.0, x), "y": max(0.0, y), "w": w, "h": h})
    if rng.random() < 0.1:  # something that is not there
        drawn.append(
            {
                "type": "box",
                "label": "car",
                "x": rng.uniform(0, 150),
                "y": rng.uniform(0, 150),
                "w": 30.0,
                "h": 30.0,
                "attributes": {},
            }
        )
    return drawn


def record(n: int, objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "item_id": f"cmp_eval-{n}",
        "image": f"file:///images/{n:04d}.png",
        "width": SIZE,
        "height": SIZE,
        "labels": [],
        "objects": objects,
        "confidence": 1.0,
    }


def coco(records: list[dict[str, Any]], tmp: Path, name: str) -> COCO:
    files = export_records(records, ONTOLOGY, ("coco",))["coco"].files
    path = tmp / name
    path.write_bytes(next(data for p, data in files.items() if p.endswith(".json")))
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def average_precision(truth: COCO, detections: COCO) -> float:
    """COCO's AP@[.5:.95] of ``detections`` against ``truth`` (images matched by file name)."""
    ids = {img["file_name"]: img["id"] for img in truth.loadImgs(truth.getImgIds())}
    by_name = {img["id"]: img["file_name"] for img in detections.loadImgs(detections.getImgIds())}
    results = [
        {
            "image_id": ids[by_name[a["image_id"]]],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": a.get("score", 1.0),
        }
        for a in detections.loadAnns(detections.getAnnIds())
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])


def test_consensus_beats_each_annotator_under_coco_evaluation(tmp_path: Path) -> None:
    rng = random.Random(11)
    ontology = Ontology.model_validate(ONTOLOGY)
    truths, consensus_records = [], []
    singles: list[list[dict[str, Any]]] = [[], [], []]
    for n in range(40):
        truth = truth_boxes(rng)
        truths.append(record(n, truth))
        responses = []
        for a in range(3):
            drawn = noisy(rng, truth)
            singles[a].append(record(n, drawn))
            responses.append(
                Response(id=f"rsp-{n}-{a}", annotator_id=f"ann-{a}", body={"objects": drawn})
            )
        assessment = assess(ontology, responses, (SIZE, SIZE))
        consensus_records.append(record(n, assessment.objects))

    truth_coco = coco(truths, tmp_path, "truth.json")
    consensus_ap = average_precision(truth_coco, coco(consensus_records, tmp_path, "c.json"))
    single_aps = [
        average_precision(truth_coco, coco(s, tmp_path, f"s{a}.json"))
        for a, s in enumerate(singles)
    ]
    assert consensus_ap > max(single_aps)
    assert consensus_ap > 0.5
