"""A spec with errors is refused field by field, by the schema, the CLI and the API."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from api.task_routes import serves_by_proxy
from schemas.campaign_spec import parse_spec
from services.gold import load_gold

REPO = Path(__file__).resolve().parents[1]

GOOD = {
    "name": "cats-and-dogs",
    "images": {"directory": "images"},
    "ontology": {"classes": [{"name": "cat"}, {"name": "dog"}]},
    "annotators_per_image": 3,
    "agreement_threshold": 0.66,
    "lease_timeout": "10m",
    "review_timeout": "2d",
}

REDUNDANCY = {"min_annotators": 2, "max_annotators": 10, "target_confidence": 0.99}
ADAPTIVE: dict[str, object] = {
    "annotators_per_image": None,
    "agreement_threshold": None,
    "redundancy": REDUNDANCY,
}

BAD = {
    "name": "Bad Name!",
    "images": {},
    "ontology": {"classes": [{"name": "cat"}]},
    "annotators_per_image": 0,
    "agreement_threshold": 1.5,
    "lease_timeout": "soon",
    "review_timeout": "10m",
    "colour": "red",
}
BAD_FIELDS = {
    "name",
    "images",
    "ontology",
    "annotators_per_image",
    "agreement_threshold",
    "lease_timeout",
    "colour",
}


def test_a_good_spec_parses_with_durations() -> None:
    spec, errors = parse_spec(GOOD)
    assert errors == [] and spec is not None
    assert spec.lease_timeout == timedelta(minutes=10)
    assert spec.review_timeout == timedelta(days=2)
    assert spec.dataset_name == "cats-and-dogs"
    assert spec.window == 256


def test_every_bad_field_is_named_once() -> None:
    spec, errors = parse_spec(BAD)
    assert spec is None
    assert {e.field for e in errors} == BAD_FIELDS
    by_field = {e.field: e.message for e in errors}
    assert by_field["colour"] == "unknown field"
    assert "exactly one of directory" in by_field["images"]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"ontology": {"classes": [{"name": "cat"}, {"name": "cat"}]}}, "ontology"),
        ({"images": {"directory": "a", "uris": ["file:///x.png"]}}, "images"),
        ({"images": {"s3_prefix": "http://bucket/x"}}, "images.s3_prefix"),
        ({"review_timeout": 0}, "review_timeout"),
        ({"window": 5000}, "window"),
        (
            {"ontology": {"classes": [{"name": "cat"}, {"name": "dog", "colour": 1}]}},
            "ontology.classes.1.colour",
        ),
        (
            {**ADAPTIVE, "redundancy": {**REDUNDANCY, "reopen_below_target": "maybe"}},
            "redundancy.reopen_below_target",
        ),
        (
            {**ADAPTIVE, "redundancy": {**REDUNDANCY, "stop_when_futile": [1]}},
            "redundancy.stop_when_futile",
        ),
        ({"images": {"directory": "images", "serve": "cdn"}}, "images.serve"),
    ],
    ids=[
        "duplicate-class",
        "two-sources",
        "s3-not-s3",
        "zero-timeout",
        "window-too-big",
        "unknown-class-field",
        "reopen-not-a-boolean",
        "futile-not-a-boolean",
        "unknown-serve-mode",
    ],
)
def test_single_mistakes(patch: dict[str, object], field: str) -> None:
    spec, errors = parse_spec({**GOOD, **patch})
    assert spec is None
    assert [e.field for e in errors] == [field]


def test_adaptive_redundancy_re_checks_by_default_and_never_stops_futile_unasked() -> None:
    spec, errors = parse_spec({**GOOD, **ADAPTIVE})
    assert errors == [] and spec is not None and spec.redundancy is not None
    assert spec.redundancy.reopen_below_target and not spec.redundancy.stop_when_futile


def test_cli_validate_lists_every_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(BAD))
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "campaign", "validate", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "no campaign was started" in run.stderr
    for field in BAD_FIELDS:
        assert f"  {field}: " in run.stderr

    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    ok = subprocess.run(
        [sys.executable, "-m", "cli.main", "campaign", "validate", str(good)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout


def test_cli_names_a_missing_or_broken_file(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "campaign", "validate", str(tmp_path / "nope.yaml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "no such file" in run.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed")
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "campaign", "validate", str(broken)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "not valid YAML" in run.stderr


def test_a_web_gold_image_carries_its_size_as_the_campaigns_images_do() -> None:
    """A task shows its image's size when known; a gold task without one would stand out."""
    item = {"uri": "https://img.example/g.png", "label": "cat", "width": 640, "height": 480}
    spec, errors = parse_spec({**GOOD, "gold": {"rate": 0.2, "items": [item]}})
    assert errors == [] and spec is not None
    (row,) = load_gold(spec, None)
    assert (row.uri, row.width, row.height) == (item["uri"], 640, 480)

    del item["height"]
    spec, errors = parse_spec({**GOOD, "gold": {"rate": 0.2, "items": [item]}})
    assert spec is None
    assert [(e.field, e.message) for e in errors] == [
        ("gold.items.0", "give both width and height, or neither")
    ]


@pytest.mark.parametrize(
    ("serve", "gold", "proxied"),
    [(None, False, False), (None, True, True), ("redirect", True, False), ("proxy", False, True)],
)
def test_images_are_proxied_when_asked_or_by_default_when_there_is_gold(
    serve: str | None, gold: bool, proxied: bool
) -> None:
    images = {"directory": "images", **({"serve": serve} if serve else {})}
    item = {"uri": "https://img.example/g.png", "label": "cat"}
    patch = {"images": images, **({"gold": {"rate": 0.2, "items": [item]}} if gold else {})}
    spec, errors = parse_spec({**GOOD, **patch})
    assert errors == [] and spec is not None
    assert serves_by_proxy(spec.model_dump(mode="json")) is proxied
