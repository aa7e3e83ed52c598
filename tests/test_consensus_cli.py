"""``python -m cli.consensus`` (``quorum consensus``) end to end, in a subprocess."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

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
