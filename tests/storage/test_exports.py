"""Exports, each read back by a real reader: pycocotools, globox (YOLO, VOC), ElementTree, json."""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from globox import Annotation
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from storage.exports import EXPORT_FORMATS, ExportResult, export_records, parse_formats
from storage.exports.rle import (
    decode_counts,
    encode_counts,
    mask_outline,
    mask_outlines,
    rle_area,
    rle_bbox,
    rle_to_mask,
)
from tests.storage.samples import (
    HEIGHT,
    ONTOLOGY,
    WIDTH,
    compressed_rle,
    full_record,
    simple_records,
    sky_mask,
)

# pycocotools 2.0 and numpy 2 (inside pycocotools, harmless)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def write(result: ExportResult, root: Path) -> Path:
    for path, data in result.files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def records() -> list[dict[str, Any]]:
    """Two full records, a tag-only one, and one whose image size is unknown."""
    return [
        full_record("cmp_x-0"),
        full_record(
            "cmp_x-1",
            labels=["dog"],
            objects=[
                {"type": "tag", "label": "dog", "attributes": {}},
                {
                    "type": "mask",
                    "label": "sky",
                    "rle": compressed_rle(sky_mask()),
                    "attributes": {},
                    "confidence": 0.5,
                },
            ],
        ),
        full_record("cmp_x-2", objects=[{"type": "tag", "label": "cat", "attributes": {}}]),
        full_record("cmp_x-3", width=None, height=None),
    ]


# --------------------------------------------------------------------------------------------
# RLE against pycocotools
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_rle_functions_agree_with_pycocotools(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 40, 2))
    mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
    encoded = mask_utils.encode(np.asfortranarray(mask))
    string = encoded["counts"].decode()
    counts = decode_counts(string)

    assert encode_counts(counts) == string
    assert mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)["counts"].decode() == (
        string
    )
    assert np.array_equal(rle_to_mask(string, h, w), mask.astype(bool))
    assert np.array_equal(rle_to_mask(counts, h, w), mask.astype(bool))
    assert rle_area(string) == int(mask_utils.area(encoded))
    assert rle_bbox(counts, h, w) == [float(v) for v in mask_utils.toBbox(encoded)]


def test_rle_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="add up"):
        rle_bbox([1, 2], 2, 2)
    with pytest.raises(ValueError, match="invalid character"):
        decode_counts("ab\x01")


def _rasterize(polygon: list[tuple[int, int]], h: int, w: int) -> np.ndarray[Any, Any]:
    flat = [float(c) for point in polygon for c in point]
    rle = mask_utils.frPyObjects([flat], h, w)
    mask: np.ndarray[Any, Any] = mask_utils.decode(mask_utils.merge(rle)).astype(bool)
    return mask


def test_mask_outline_follows_pixel_edges() -> None:
    rectangle = np.zeros((8, 8), bool)
    rectangle[1:3, 2:6] = True
    assert mask_outline(rectangle) == [(2, 1), (6, 1), (6, 3), (2, 3)]

    l_shape = np.zeros((8, 8), bool)
    l_shape[1:4, 1:3] = True
    l_shape[3, 1:6] = True
    assert mask_outline(l_shape) == [(1, 1), (3, 1), (3, 3), (6, 3), (6, 4), (1, 4)]

    with_hole = np.ones((6, 6), bool)
    with_hole[2, 2] = False  # holes are not represented: the outer boundary only
    assert mask_outline(with_hole) == [(0, 0), (6, 0), (6, 6), (0, 6)]


def test_mask_outlines_are_regions_largest_first() -> None:
    mask = sky_mask().astype(bool)
    outlines = mask_outlines(mask)
    assert len(outlines) == 2
    assert outlines[0] == [(10, 5), (30, 5), (30, 20), (10, 20)]
    assert outlines[1] == [(40, 30), (50, 30), (50, 40), (40, 40)]
    # Diagonal neighbours are separate regions; an empty mask has no outline.
    diagonal = np.zeros((3, 3), bool)
    diagonal[0, 0] = diagonal[1, 1] = True
    assert len(mask_outlines(diagonal)) == 2
    assert mask_outline(np.zeros((3, 3), bool)) == []


@pytest.mark.parametrize("seed", range(10))
def test_mask_outline_rasterizes_back_to_a_solid_region(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = np.zeros((30, 30), bool)
    x0, y0 = (int(v) for v in rng.integers(0, 10, 2))
    for _ in range(6):  # a union of overlapping rectangles: one region, maybe with bays
        x, y = x0 + int(rng.integers(0, 8)), y0 + int(rng.integers(0, 8))
        mask[y : y + int(rng.integers(3, 12)), x : x + int(rng.integers(3, 12))] = True
    (outline,) = mask_outlines(mask) or [[]]
    assert np.array_equal(_rasterize(outline, 30, 30), mask)


# --------------------------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------------------------


def load_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_coco_export_loads_with_pycocotools(tmp_path: Path) -> None:
    result = export_records(records(), ONTOLOGY, ("coco",), dataset="pets", info={"version": 3})[
        "coco"
    ]
    coco = load_coco(write(result, tmp_path) / "coco" / "annotations.json")

    # Categories: the non-tag classes, ids 1.. in ontology order; keypoints with a 1-based skeleton.
    cats = {c["name"]: c for c in coco.loadCats(coco.getCatIds())}
    assert list(cats) == ["car", "road", "sky", "person", "lane"]
    assert [c["id"] for c in cats.values()] == [1, 2, 3, 4, 5]
    assert cats["person"]["keypoints"] == ["head", "left", "right"]
    assert cats["person"]["skeleton"] == [[1, 2], [1, 3]]

    # Images: the three of known size, in item_id order; tags as the extra "labels".
    images = coco.loadImgs(coco.getImgIds())
    assert [i["quorum_item_id"] for i in images] == ["cmp_x-0", "cmp_x-1", "cmp_x-2"]
    assert [(i["width"], i["height"]) for i in images] == [(WIDTH, HEIGHT)] * 3
    assert [i["labels"] for i in images] == [["cat"], ["dog"], ["cat"]]
    assert images[0]["coco_url"] == "file:///images/cmp_x-0.png"
    assert images[0]["file_name"] == "cmp_x-0.png"
    assert result.metadata["skipped"] == {"image size unknown": 1}
    assert result.metadata["notes"] == {"polyline_not_in_coco": 1, "rotated_box_as_polygon": 1}

    anns = coco.loadAnns(coco.getAnnIds(imgIds=[images[0]["id"]]))
    by_cat: dict[str, list[dict[str, Any]]] = {}
    for ann in anns:
        by_cat.setdefault(coco.loadCats(ann["category_id"])[0]["name"], []).append(ann)
    assert sorted(by_cat) == ["car", "person", "road", "sky"]

    box, rotated = by_cat["car"]
    assert box["bbox"] == [1, 2, 10, 5]
    assert box["area"] == 50
    assert box["score"] == 0.9
    assert "angle" not in box
    assert coco.annToMask(box).sum() == 50  # its rectangle, exactly
    assert rotated["angle"] == 30
    assert rotated["area"] == 60
    assert coco.annToMask(rotated).sum() == pytest.approx(60, abs=8)
    # The enclosing box of a 10x6 box turned 30 degrees about its centre (25, 23).
    half_w = (10 * math.cos(math.radians(30)) + 6 * math.sin(math.radians(30))) / 2
    assert rotated["bbox"][0] == pytest.approx(25 - half_w, abs=1e-3)
    assert rotated["bbox"][2] == pytest.approx(2 * half_w, abs=2e-3)

    (road,) = by_cat["road"]
    assert road["segmentation"] == [[0, 40, 30, 40, 30, 47]]
    assert road["area"] == 105
    assert road["bbox"] == [0, 40, 30, 7]

    (sky,) = by_cat["sky"]
    assert isinstance(sky["segmentation"]["counts"], str)  # compressed, as pycocotools writes
    assert np.array_equal(coco.annToMask(sky), sky_mask())
    assert sky["area"] == int(sky_mask().sum())
    assert sky["bbox"] == [10, 5, 40, 35]

    (person,) = by_cat["person"]
    assert person["keypoints"] == [5, 5, 2, 0, 0, 0, 9, 9, 1]
    assert person["num_keypoints"] == 2
    assert person["bbox"] == [5, 5, 4, 4]

    # The second image's mask was given compressed: it passes through unchanged.
    (sky1,) = coco.loadAnns(coco.getAnnIds(imgIds=[images[1]["id"]]))
    assert sky1["segmentation"] == compressed_rle(sky_mask())
    assert coco.getAnnIds(imgIds=[images[2]["id"]]) == []


def test_coco_export_evaluates_against_itself(tmp_path: Path) -> None:
    """The annotations' scores make a COCO results file: COCOeval gives them AP 1."""
    result = export_records(records(), ONTOLOGY, ("coco",))["coco"]
    path = write(result, tmp_path) / "coco" / "annotations.json"
    gt = load_coco(path)
    detections = [
        {k: a[k] for k in ("image_id", "category_id", "bbox", "score")}
        for a in gt.loadAnns(gt.getAnnIds())
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(detections)
        evaluation = COCOeval(gt, dt, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[1] == pytest.approx(1.0)  # AP at IoU 0.5


# --------------------------------------------------------------------------------------------
# YOLO
# --------------------------------------------------------------------------------------------


def check_yolo_task(
    task_dir: Path, *, values: int | None = None, odd: bool = False, pose: bool = False
) -> dict[str, list[list[str]]]:
    """The YOLO format rules, checked line by line; returns each label file's rows."""
    data = yaml.safe_load((task_dir / "data.yaml").read_text())
    names = data["names"]
    assert list(names) == list(range(len(names)))
    assert (task_dir / "classes.txt").read_text().splitlines() == list(names.values())
    images = (task_dir / "images.txt").read_text().splitlines()
    assert all(line.startswith("./images/") for line in images)
    stems = {Path(line).stem for line in images}
    sources = dict(line.split("\t") for line in (task_dir / "sources.txt").read_text().splitlines())
    assert sorted(sources) == sorted(line[2:] for line in images)
    rows: dict[str, list[list[str]]] = {}
    for label_file in sorted((task_dir / "labels").glob("*.txt")):
        assert label_file.stem in stems
        rows[label_file.stem] = []
        for line in label_file.read_text().splitlines():
            fields = line.split()
            assert 0 <= int(fields[0]) < len(names)
            coords = [float(v) for v in fields[1:]]
            if pose:  # the box, then x y v per keypoint: v is a visibility 0, 1 or 2
                assert all(fields[i] in {"0", "1", "2"} for i in range(7, len(fields), 3))
                coords = [c for i, c in enumerate(coords) if i < 4 or (i - 4) % 3 != 2]
            if values is not None:
                assert len(fields) == values, line
            if odd:
                assert len(coords) >= 6 and len(coords) % 2 == 0, line
            assert all(0.0 <= c <= 1.0 for c in coords), line
            rows[label_file.stem].append(fields)
    return rows


def test_yolo_detect_export(tmp_path: Path) -> None:
    result = export_records(records(), ONTOLOGY, ("yolo",))["yolo"]
    root = write(result, tmp_path) / "yolo"
    rows = check_yolo_task(root / "detect", values=5)
    assert yaml.safe_load((root / "detect" / "data.yaml").read_text())["names"] == {0: "car"}
    assert list(rows) == ["cmp_x-0"]
    assert result.metadata["skipped"] == {"image size unknown": 1}

    annotation = Annotation.from_yolo_darknet(
        root / "detect" / "labels" / "cmp_x-0.txt", image_size=(WIDTH, HEIGHT)
    )
    boxes = sorted(annotation.boxes, key=lambda b: b.xmin)
    assert [b.label for b in boxes] == ["0", "0"]
    assert (boxes[0].xmin, boxes[0].ymin, boxes[0].xmax, boxes[0].ymax) == pytest.approx(
        (1, 2, 11, 7), abs=1e-3
    )
    # The rotated box: its enclosing axis-aligned box.
    assert boxes[1].xmin == pytest.approx(25 - (5 * math.cos(math.pi / 6) + 1.5), abs=1e-3)


def test_yolo_segment_export(tmp_path: Path) -> None:
    result = export_records(records(), ONTOLOGY, ("yolo",))["yolo"]
    root = write(result, tmp_path) / "yolo" / "segment"
    rows = check_yolo_task(root, odd=True)
    names = yaml.safe_load((root / "data.yaml").read_text())["names"]
    assert names == {0: "car", 1: "road", 2: "sky"}
    assert [r[0] for r in rows["cmp_x-0"]] == ["0", "0", "1", "2"]
    assert [r[0] for r in rows["cmp_x-1"]] == ["2"]
    # The mask: the outline of its largest region (the 20x15 block), in pixel corners.
    sky = [float(v) for v in rows["cmp_x-1"][0][1:]]
    points = [
        (round(x * WIDTH), round(y * HEIGHT)) for x, y in zip(sky[::2], sky[1::2], strict=True)
    ]
    assert points == [(10, 5), (30, 5), (30, 20), (10, 20)]
    assert result.metadata["notes"]["mask_regions_dropped"] == 2  # one per image

    annotation = Annotation.from_yolo_seg(
        root / "labels" / "cmp_x-0.txt", image_size=(WIDTH, HEIGHT)
    )
    road = next(b for b in annotation.boxes if b.label == "1")
    assert (road.xmin, road.ymin, road.xmax, road.ymax) == pytest.approx((0, 40, 30, 47), abs=1e-3)


def test_yolo_pose_export(tmp_path: Path) -> None:
    result = export_records(records(), ONTOLOGY, ("yolo",))["yolo"]
    root = write(result, tmp_path) / "yolo" / "pose"
    data = yaml.safe_load((root / "data.yaml").read_text())
    assert data["kpt_shape"] == [3, 3]
    assert data["names"] == {0: "person"}
    rows = check_yolo_task(root, values=5 + 3 * 3, pose=True)
    (row,) = rows["cmp_x-0"]
    values = [float(v) for v in row[1:]]
    assert values[:4] == pytest.approx([7 / WIDTH, 7 / HEIGHT, 4 / WIDTH, 4 / HEIGHT], abs=1e-6)
    assert values[4:] == pytest.approx(
        [5 / WIDTH, 5 / HEIGHT, 2, 0, 0, 0, 9 / WIDTH, 9 / HEIGHT, 1], abs=1e-6
    )
    assert all(row[i] in {"0", "1", "2"} for i in (7, 10, 13))  # visibility stays an integer


def test_yolo_only_writes_tasks_the_ontology_has(tmp_path: Path) -> None:
    boxes_only = {"classes": [{"name": "car", "geometry": "box"}]}
    result = export_records(simple_records(3), boxes_only, ("yolo",))["yolo"]
    tasks = {path.split("/")[1] for path in result.files if path.count("/") > 1}
    assert tasks == {"detect"}


# --------------------------------------------------------------------------------------------
# Pascal VOC
# --------------------------------------------------------------------------------------------


def test_voc_export_parses_and_validates(tmp_path: Path) -> None:
    result = export_records(records(), ONTOLOGY, ("voc",), dataset="pets")["voc"]
    root = write(result, tmp_path) / "voc"
    files = sorted((root / "Annotations").glob("*.xml"))
    assert [f.stem for f in files] == ["cmp_x-0", "cmp_x-1", "cmp_x-2"]
    for path in files:
        tree = ET.parse(path).getroot()
        assert tree.tag == "annotation"
        assert tree.findtext("filename") == f"{path.stem}.png"
        assert tree.findtext("path") == f"file:///images/{path.stem}.png"
        assert (tree.findtext("size/width"), tree.findtext("size/height")) == ("64", "48")
        assert tree.findtext("size/depth") == "3"
        for obj in tree.iter("object"):
            assert obj.findtext("name") in {"car", "road", "sky"}
            assert obj.findtext("difficult") == "0"
            xmin, ymin, xmax, ymax = (int(obj.findtext(f"bndbox/{k}") or "") for k in (
                "xmin", "ymin", "xmax", "ymax"
            ))  # fmt: skip
            assert 1 <= xmin <= xmax <= WIDTH and 1 <= ymin <= ymax <= HEIGHT

    first = ET.parse(files[0]).getroot()
    corners = ("xmin", "ymin", "xmax", "ymax")
    boxes = [
        (o.findtext("name"), *(int(o.findtext(f"bndbox/{k}") or "") for k in corners))
        for o in first.iter("object")
    ]
    # 1-based inclusive pixels: the box x 1..11, y 2..7 covers pixels 1..10 and 2..6 (0-based).
    assert boxes[0] == ("car", 2, 3, 11, 7)
    assert boxes[2] == ("road", 1, 41, 30, 47)
    assert boxes[3] == ("sky", 11, 6, 50, 40)
    assert len(boxes) == 4  # keypoints and polylines have no VOC form
    assert result.metadata["notes"] == {
        "keypoints_not_in_voc": 1,
        "mask_as_box": 2,
        "polygon_as_box": 1,
        "polyline_not_in_voc": 1,
        "rotated_box_as_enclosing_box": 1,
    }

    annotation = Annotation.from_pascal_voc(files[0])
    assert annotation.image_size == (WIDTH, HEIGHT)
    assert sorted(b.label for b in annotation.boxes) == ["car", "car", "road", "sky"]

    main = root / "ImageSets" / "Main"
    assert (main / "default.txt").read_text().split() == ["cmp_x-0", "cmp_x-1", "cmp_x-2"]
    assert (main / "cat_default.txt").read_text().splitlines() == [
        "cmp_x-0 1",
        "cmp_x-1 -1",
        "cmp_x-2 1",
    ]
    assert (root / "labels.txt").read_text().split() == ["car", "road", "sky"]


# --------------------------------------------------------------------------------------------
# SageMaker-style JSON Lines
# --------------------------------------------------------------------------------------------


def test_jsonl_export_in_ground_truth_style(tmp_path: Path) -> None:
    result = export_records(records(), ONTOLOGY, ("jsonl",), dataset="pets")["jsonl"]
    lines = [
        json.loads(line)
        for line in (write(result, tmp_path) / "jsonl" / "output.manifest").read_text().splitlines()
    ]
    assert [line["source-ref"] for line in lines] == [
        f"file:///images/cmp_x-{i}.png" for i in range(4)
    ]
    first = lines[0]
    assert set(first) == {"source-ref", "pets", "pets-metadata"}
    content, metadata = first["pets"], first["pets-metadata"]
    assert [a["type"] for a in content["annotations"]] == [
        "box", "box", "polygon", "mask", "keypoints", "polyline"
    ]  # fmt: skip
    assert content["annotations"][0] | {} == {
        "class_id": 2, "type": "box", "left": 1.0, "top": 2.0, "width": 10.0, "height": 5.0
    }  # fmt: skip
    assert content["annotations"][1]["angle"] == 30
    assert content["image_size"] == [{"width": WIDTH, "height": HEIGHT, "depth": 3}]
    assert content["labels"] == ["cat"]
    # A confidence per object, aligned with the annotations.
    assert [o["confidence"] for o in metadata["objects"]] == [0.9, 0.7, 0.8, 0.6, 0.85, 0.5]
    assert metadata["class-map"] == {
        "0": "cat", "2": "car", "3": "road", "4": "sky", "5": "person", "6": "lane"
    }  # fmt: skip
    assert metadata["human-annotated"] == "yes"
    assert metadata["job-name"] == "labeling-job/cmp_x"
    assert metadata["creation-date"] == "2025-01-01T00:00:00"
    assert metadata["type"] == "quorum/annotations"
    assert metadata["confidence"] == 0.8
    # Unknown size: kept, without image_size.
    assert "image_size" not in lines[3]["pets"]
    assert result.metadata["skipped"] == {}


def test_jsonl_uses_ground_truth_shapes_for_builtin_task_types() -> None:
    classification = {"classes": [{"name": "cat"}, {"name": "dog"}]}
    recs = [full_record("a", labels=["dog"], objects=[])]
    (line,) = (
        export_records(recs, classification, ("jsonl",), dataset="d")["jsonl"]
        .files["jsonl/output.manifest"]
        .decode()
        .splitlines()
    )
    parsed = json.loads(line)
    assert parsed["d"] == 1
    assert parsed["d-metadata"]["class-name"] == "dog"
    assert parsed["d-metadata"]["type"] == "groundtruth/image-classification"

    multi = {**classification, "multi_label": True}
    tags = [{"type": "tag", "label": n, "confidence": c} for n, c in (("cat", 0.6), ("dog", 0.7))]
    recs = [full_record("a", labels=["cat", "dog"], objects=tags)]
    (line,) = (
        export_records(recs, multi, ("jsonl",), dataset="d")["jsonl"]
        .files["jsonl/output.manifest"]
        .decode()
        .splitlines()
    )
    parsed = json.loads(line)
    assert parsed["d"] == [0, 1]
    assert parsed["d-metadata"]["confidence-map"] == {"0": 0.6, "1": 0.7}
    assert parsed["d-metadata"]["type"] == "groundtruth/image-classification-multilabel"

    boxes = {"classes": [{"name": "car", "geometry": "box"}]}
    (line, *_) = (
        export_records(simple_records(2), boxes, ("jsonl",), dataset="d")["jsonl"]
        .files["jsonl/output.manifest"]
        .decode()
        .splitlines()
    )
    parsed = json.loads(line)
    assert parsed["d"]["annotations"] == [
        {"class_id": 0, "left": 10.0, "top": 5.0, "width": 20.0, "height": 10.0}
    ]
    assert parsed["d-metadata"]["type"] == "groundtruth/object-detection"
    assert parsed["d-metadata"]["objects"] == [{"confidence": 0.8}]


# --------------------------------------------------------------------------------------------
# Every format
# --------------------------------------------------------------------------------------------


def test_exports_are_deterministic() -> None:
    """Same records, whatever their order and sequence types: the same bytes."""
    recs = records()
    shuffled = json.loads(json.dumps(recs))
    random.Random(4).shuffle(shuffled)
    for record in shuffled:  # tuples where the others have lists
        for obj in record["objects"]:
            if "points" in obj:
                obj["points"] = [tuple(p) for p in obj["points"]]
    first = export_records(recs, ONTOLOGY, dataset="pets", info={"version": 1})
    second = export_records(shuffled, ONTOLOGY, dataset="pets", info={"version": 1})
    for fmt in EXPORT_FORMATS:
        assert first[fmt].files == second[fmt].files


def test_malformed_objects_are_counted_never_fatal() -> None:
    bad = full_record(
        "bad",
        objects=[
            {"type": "box", "label": "car", "x": "one", "y": 0, "w": 1, "h": 1},
            {"type": "box", "label": "car", "x": 0, "y": 0, "w": 0, "h": 1},
            {"type": "polygon", "label": "road", "points": [[0, 0], [1, 1]]},
            {"type": "mask", "label": "sky", "rle": {"size": [2, 2], "counts": [4]}},
            {"type": "keypoints", "label": "person", "points": [[1, 1, 2]]},
            {"type": "box", "label": "unicorn", "x": 0, "y": 0, "w": 1, "h": 1},
            "not an object",
        ],
    )
    for fmt, result in export_records([bad], ONTOLOGY).items():
        assert result.metadata["exported"] == 1, fmt
        notes = result.metadata["notes"]
        assert notes.get("unknown_class") == 1, (fmt, notes)
        if fmt != "jsonl":
            assert notes.get("invalid_object", 0) >= 3, (fmt, notes)


def test_without_an_ontology_classes_come_from_the_records() -> None:
    result = export_records(records(), None, ("coco",))["coco"]
    document = json.loads(result.files["coco/annotations.json"])
    assert [c["name"] for c in document["categories"]] == ["car", "lane", "person", "road", "sky"]


def test_parse_formats() -> None:
    assert parse_formats("coco, yolo,coco") == ("coco", "yolo")
    with pytest.raises(ValueError, match="unknown export format"):
        parse_formats("coco,csv")
    with pytest.raises(ValueError, match="no export format"):
        parse_formats("")
