"""``python -m cli.consensus`` (``quorum consensus``) end to end, in a subprocess."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cli.consensus import METHOD_HELP
from quality import DEFAULT_METHOD, METHODS

ROOT = Path(__file__).resolve().parents[1]
BLUEBIRDS = ROOT.parent / "shared" / "data" / "crowd" / "bluebirds"


def consensus(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cli.consensus", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


SMALL = """task,worker,label
img-2,ann,cat
img-2,bob,cat
img-2,cyd,dog
img-1,ann,dog
img-1,bob,dog
img-1,cyd,dog
img-3,ann,bird
img-3,bob,cat
img-3,cyd,bird
"""


@pytest.fixture
def small(tmp_path: Path) -> Path:
    return write(tmp_path / "answers.csv", SMALL)


@pytest.mark.parametrize("method", ["majority_vote", "dawid_skene", "dawid_skene_mle"])
def test_writes_one_row_per_task_with_original_labels(
    small: Path, tmp_path: Path, method: str
) -> None:
    out = tmp_path / "out" / "labels.csv"
    result = consensus("--answers", small, "--out", out, "--method", method)
    assert result.returncode == 0, result.stderr
    assert f"{method}: 3 tasks, 9 answers, 3 workers, 3 labels" in result.stdout
    rows = read_rows(out)
    assert [row["task"] for row in rows] == ["img-1", "img-2", "img-3"]
    assert [row["label"] for row in rows] == ["dog", "cat", "bird"]
    confidences = [float(row["confidence"]) for row in rows]
    assert all(0.5 <= c <= 1.0 for c in confidences)
    if method == "majority_vote":
        assert confidences == pytest.approx([1.0, 2 / 3, 2 / 3], abs=1e-6)


def test_default_method_and_truth_accuracy(small: Path, tmp_path: Path) -> None:
    truth = write(tmp_path / "truth.csv", "task,label\nimg-1,dog\nimg-2,dog\nunanswered,cat\n")
    out = tmp_path / "labels.csv"
    result = consensus("--answers", small, "--out", out, "--truth", truth)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{DEFAULT_METHOD}:")
    # img-1 is right, img-2 (truth dog, 2 of 3 said cat) wrong; "unanswered" is not scored.
    assert "accuracy 0.5000 (1 of 2 tasks" in result.stdout
    assert "1 truth tasks without answers" in result.stdout


def test_columns_in_any_order_and_extra_columns(tmp_path: Path) -> None:
    answers = write(
        tmp_path / "answers.csv",
        "label,comment,worker,task\nyes,,a,t1\nyes,x,b,t1\nno,,a,t2\nno,,b,t2\n",
    )
    out = tmp_path / "labels.csv"
    result = consensus("--answers", answers, "--out", out)
    assert result.returncode == 0, result.stderr
    assert [(r["task"], r["label"]) for r in read_rows(out)] == [("t1", "yes"), ("t2", "no")]


def test_bluebirds(tmp_path: Path) -> None:
    if not (BLUEBIRDS / "answers.csv").is_file():
        pytest.skip(f"the bluebirds crowd dataset is not at {BLUEBIRDS}")
    out = tmp_path / "bluebirds.csv"
    result = consensus(
        "--answers", BLUEBIRDS / "answers.csv", "--out", out, "--truth", BLUEBIRDS / "truth.csv"
    )
    assert result.returncode == 0, result.stderr
    rows = read_rows(out)
    assert len(rows) == 108
    assert {row["label"] for row in rows} <= {"0", "1"}
    match = re.search(r"accuracy (\d\.\d+) \((\d+) of (\d+) tasks", result.stdout)
    assert match, result.stdout
    assert int(match.group(3)) == 108
    # Majority vote gets 0.7593 here; Dawid-Skene 0.898.
    assert float(match.group(1)) > 0.85


# --- input errors: exit status 2 and a message saying what to fix ---------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("", "the file is empty; it needs a header line task,worker,label"),
        ("task,worker\nt1,a\n", "missing column(s) label"),
        ("task,worker,label\n", "no rows after the header"),
        ("task,worker,label\nt1,a,\n", "line 2: empty label"),
        ("task,worker,label\nt1,a\n", "line 2: expected 3 fields, got 2"),
    ],
    ids=["missing-file", "empty-file", "missing-column", "header-only", "empty-cell", "short-row"],
)
def test_bad_answers_file(tmp_path: Path, content: str | None, message: str) -> None:
    answers = tmp_path / "answers.csv"
    if content is not None:
        write(answers, content)
    out = tmp_path / "labels.csv"
    result = consensus("--answers", answers, "--out", out)
    assert result.returncode == 2
    assert message in result.stderr
    assert str(answers) in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_truth_without_shared_tasks(small: Path, tmp_path: Path) -> None:
    truth = write(tmp_path / "truth.csv", "task,label\nother,cat\n")
    result = consensus("--answers", small, "--out", tmp_path / "o.csv", "--truth", truth)
    assert result.returncode == 2
    assert "same task ids" in result.stderr


def test_truth_missing_column(small: Path, tmp_path: Path) -> None:
    truth = write(tmp_path / "truth.csv", "task,truth\nimg-1,dog\n")
    result = consensus("--answers", small, "--out", tmp_path / "o.csv", "--truth", truth)
    assert result.returncode == 2
    assert "missing column(s) label" in result.stderr


def test_unknown_method(small: Path, tmp_path: Path) -> None:
    result = consensus("--answers", small, "--out", tmp_path / "o.csv", "--method", "nope")
    assert result.returncode == 2
    assert "unknown consensus method 'nope'; choose one of" in result.stderr


def test_help_names_every_method() -> None:
    # The help text is written out (the parser does not import quality); it must not drift.
    for name in METHODS:
        assert name in METHOD_HELP
    assert f"{DEFAULT_METHOD} (" in METHOD_HELP and "the default" in METHOD_HELP


def test_missing_required_option(small: Path) -> None:
    result = consensus("--answers", small)
    assert result.returncode == 2
    assert "--out" in result.stderr


# --- JSON Lines answers: consensus of objects, for every annotation type ---------------------

BOX_ONTOLOGY = """classes:
  - name: car
    geometry: box
  - name: person
    geometry: box
"""

# A campaign spec: only its ontology is read.
TAG_SPEC = """name: street-scenes
images:
  directory: ./images
ontology:
  classes:
    - name: car
    - name: bicycle
annotators_per_image: 3
agreement_threshold: 0.66
lease_timeout: 10m
review_timeout: 2d
"""


def box(label: str, x: float, y: float, w: float, h: float) -> dict[str, object]:
    return {"type": "box", "label": label, "x": x, "y": y, "w": w, "h": h}


def jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in records))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def box_ontology(tmp_path: Path) -> Path:
    return write(tmp_path / "ontology.yaml", BOX_ONTOLOGY)


def test_boxes_from_three_workers_fuse(tmp_path: Path, box_ontology: Path) -> None:
    answers = jsonl(
        tmp_path / "answers.jsonl",
        [
            {"task": "img-1", "worker": "ann", "objects": [box("car", 10, 20, 50, 30)]},
            {"task": "img-1", "worker": "bob", "objects": [box("car", 12, 21, 49, 30)]},
            # cyd also draws a person nobody else saw: below the quorum, not in the consensus.
            {
                "task": "img-1",
                "worker": "cyd",
                "objects": [box("car", 11, 19, 51, 31), box("person", 200, 10, 20, 60)],
            },
            {"task": "img-0", "worker": "ann", "objects": [], "note": "extra keys are ignored"},
        ],
    )
    out = tmp_path / "out" / "consensus.jsonl"
    result = consensus("--answers", answers, "--ontology", box_ontology, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "consensus: 2 tasks, 4 answers, 3 workers, 2 classes" in result.stdout
    empty, boxes = read_jsonl(out)  # sorted by task
    assert empty == {"task": "img-0", "objects": [], "agreement": 1.0, "confidence": 1.0}
    assert boxes["task"] == "img-1"
    assert set(boxes) == {"task", "objects", "agreement", "confidence"}
    [car] = boxes["objects"]
    assert car["type"] == "box" and car["label"] == "car"
    assert car["support"] == ["ann", "bob", "cyd"]
    # The fused box lies within the three drawn ones, coordinate by coordinate.
    assert 10 <= car["x"] <= 12 and 19 <= car["y"] <= 21
    assert 49 <= car["w"] <= 51 and 30 <= car["h"] <= 31
    assert 0.9 < car["confidence"] <= 1.0
    assert boxes["confidence"] == pytest.approx(car["confidence"])
    # The unmatched person lowers the agreement of cyd's pairs.
    assert 0.0 < boxes["agreement"] < 0.9


def test_tags_with_a_campaign_spec_and_explicit_format(tmp_path: Path) -> None:
    spec = write(tmp_path / "campaign.yaml", TAG_SPEC)
    answers = jsonl(
        tmp_path / "answers.txt",
        [
            {"task": 7, "worker": "ann", "objects": [{"type": "tag", "label": "car"}]},
            {"task": 7, "worker": "bob", "objects": [{"type": "tag", "label": "bicycle"}]},
            {"task": 7, "worker": "cyd", "objects": [{"type": "tag", "label": "car"}]},
        ],
    )
    out = tmp_path / "consensus.jsonl"
    result = consensus("--answers", answers, "--format", "jsonl", "--ontology", spec, "--out", out)
    assert result.returncode == 0, result.stderr
    [record] = read_jsonl(out)
    assert record["task"] == "7"
    assert [(o["label"], o["support"]) for o in record["objects"]] == [("car", ["ann", "cyd"])]
    assert record["agreement"] == pytest.approx(2 / 3)
    assert record["confidence"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            {"task": "img-1", "worker": "bob", "objects": [box("car", 10, 20, 0, 30)]},
            "line 2, field objects.0.w: the box has zero area",
        ),
        (
            {"task": "img-1", "worker": "bob", "objects": [{"type": "box", "label": "car"}]},
            "line 2, field objects.0.x: this field is required",
        ),
        (
            {"task": "img-1", "worker": "bob", "objects": [box("truck", 1, 1, 5, 5)]},
            "line 2, field objects.0.label: unknown class 'truck'",
        ),
        (
            {"task": "img-1", "worker": "bob", "objects": [{"type": "tag", "label": "car"}]},
            "line 2, field objects.0.type: class 'car' is drawn as box, not tag",
        ),
        ({"task": "img-1", "objects": []}, "line 2, field worker: missing or empty"),
        ({"task": "img-1", "worker": "bob"}, "line 2, field objects: missing"),
        (
            {"task": "img-1", "worker": "ann", "objects": []},
            "line 2, field worker: 'ann' already answered task 'img-1' on line 1",
        ),
        (
            {"task": "img-1", "worker": "bob", "objects": [], "image_size": [640]},
            "line 2, field image_size: must be [width, height]",
        ),
        (
            {
                "task": "img-1",
                "worker": "bob",
                "objects": [box("car", 600, 20, 50, 30)],
                "image_size": [640, 480],
            },
            "line 2, field objects.0: corner 1 (650.0, 20.0) is outside the 640x480 image",
        ),
        ("not json", "line 2: not valid JSON"),
        ([1, 2], "line 2: expected a JSON object"),
    ],
    ids=[
        "zero-area",
        "missing-coordinate",
        "unknown-class",
        "wrong-geometry",
        "missing-worker",
        "missing-objects",
        "answered-twice",
        "bad-image-size",
        "outside-image",
        "not-json",
        "not-an-object",
    ],
)
def test_bad_line_names_line_and_field(
    tmp_path: Path, box_ontology: Path, line: object, message: str
) -> None:
    first = {"task": "img-1", "worker": "ann", "objects": [box("car", 10, 20, 50, 30)]}
    second = line if isinstance(line, str) else json.dumps(line)
    answers = write(tmp_path / "answers.jsonl", json.dumps(first) + "\n" + second + "\n")
    out = tmp_path / "consensus.jsonl"
    result = consensus("--answers", answers, "--ontology", box_ontology, "--out", out)
    assert result.returncode == 2
    assert message in result.stderr
    assert str(answers) in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_every_bad_line_is_listed(tmp_path: Path, box_ontology: Path) -> None:
    answers = write(tmp_path / "answers.jsonl", "{}\n\n[]\n")
    result = consensus("--answers", answers, "--ontology", box_ontology, "--out", tmp_path / "o")
    assert result.returncode == 2
    assert "4 problem(s); nothing was written" in result.stderr
    for field in ("task", "worker", "objects"):
        assert f"line 1, field {field}: missing" in result.stderr
    assert "line 3: expected a JSON object" in result.stderr


@pytest.mark.parametrize(
    ("answers_name", "extra", "message"),
    [
        ("answers.jsonl", (), "--ontology is required with JSON Lines answers"),
        ("answers.jsonl", ("--method", "majority_vote"), "--method applies to CSV answers"),
        ("answers.csv", ("--ontology", "ONTOLOGY"), "--ontology applies to JSON Lines answers"),
        ("answers.txt", (), "cannot tell the format from the extension '.txt'"),
    ],
    ids=["no-ontology", "method-with-jsonl", "ontology-with-csv", "unknown-extension"],
)
def test_options_that_do_not_fit_the_format(
    tmp_path: Path, box_ontology: Path, answers_name: str, extra: tuple[str, ...], message: str
) -> None:
    answers = write(tmp_path / answers_name, SMALL)
    options = [str(box_ontology) if value == "ONTOLOGY" else value for value in extra]
    result = consensus("--answers", answers, "--out", tmp_path / "o", *options)
    assert result.returncode == 2
    assert message in result.stderr


def test_invalid_ontology_names_the_field(tmp_path: Path) -> None:
    spec = write(tmp_path / "campaign.yaml", "name: x\nontology:\n  classes:\n    - name: car\n")
    answers = jsonl(tmp_path / "answers.jsonl", [{"task": "t", "worker": "w", "objects": []}])
    result = consensus("--answers", answers, "--ontology", spec, "--out", tmp_path / "o.jsonl")
    assert result.returncode == 2
    assert f"{spec}: not a valid ontology: ontology.(spec): a single-label" in result.stderr
