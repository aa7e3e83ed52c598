"""`quorum demo` end to end: the real worker, API (uvicorn), SQLite and local dataset store.

It runs against the session's Temporal dev server: something answers at the configured
address, so the demo uses it and starts no server of its own.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from cli.demo import DATASET, run_demo
from infra.devstack import TemporalDevServer
from infra.settings import Settings, TemporalSettings
from simulation.images import SHAPES
from storage import open_store, read_records

IMAGES = 12


def _match(pattern: str, text: str) -> re.Match[str]:
    match = re.search(pattern, text)
    assert match, f"{text!r} does not match {pattern!r}"
    return match


def _field(report: str, name: str) -> str:
    match = re.search(rf"^\s*{re.escape(name)}\s{{2,}}(.+)$", report, re.MULTILINE)
    assert match, f"no {name!r} line in the report:\n{report}"
    return match.group(1).strip()


@pytest.mark.integration
async def test_demo_runs_a_campaign_and_reports_it(
    temporal_server: TemporalDevServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Nothing of the developer's own stack (~/.cache/quorum/stack) may be touched.
    monkeypatch.setenv("QUORUM_HOME", str(tmp_path))
    settings = Settings(
        environment="test",
        home=tmp_path,
        temporal=TemporalSettings(address=temporal_server.address, ui_url=temporal_server.ui_url),
    )

    code = await run_demo(settings, images=IMAGES, seed=3)
    out = capsys.readouterr().out
    assert code == 0, out

    assert _field(out, "images done") == f"{IMAGES} of {IMAGES}"
    assert "stop it with `quorum dev down`" not in out, "the demo did not start this server"
    assert not await asyncio.to_thread((tmp_path / "stack").exists)

    dataset = _field(out, "dataset")
    version = int(_match(rf"^{DATASET} version (\d+)", dataset).group(1))
    assert version == 1
    manifest = Path(_field(out, "local path"))
    assert await asyncio.to_thread(manifest.is_file)
    assert manifest.is_relative_to(tmp_path)
    assert f"quorum datasets show {DATASET} {version}" in out
    assert f"quorum datasets verify {DATASET} {version}" in out
    assert "/namespaces/default/workflows/campaign%2Fcmp_" in _field(out, "campaign workflow")

    # Recompute the accuracies from the published records and the images' known classes
    # (generate_images cycles through SHAPES, so image_0000N.png shows SHAPES[N % 3]).
    store = open_store(settings.store, settings.s3, settings.home)
    records = list(read_records(store, DATASET, version))
    assert len(records) == IMAGES

    def truth(record: dict[str, object]) -> str:
        ordinal = int(_match(r"image_(\d+)\.png$", str(record["image"])).group(1))
        return SHAPES[ordinal % len(SHAPES)]

    reviewed = [r for r in records if r["method"] == "review"]
    assert all(r["labels"] == [truth(r)] for r in reviewed), "the expert is always right"
    assert all(r["method"] in {"review", "majority_vote"} for r in records)
    # Threshold 1.0: an item skips review only if all 3 answers agree.
    for r in records:
        answers = {a["labels"][0] for a in r["responses"]}
        assert len(r["responses"]) == 3
        assert (r["method"] == "majority_vote") == (len(answers) == 1)

    correct = sum(r["labels"] == [truth(r)] for r in records)
    consensus = _field(out, "consensus accuracy")
    assert consensus.startswith(f"{correct / IMAGES:.3f} ({correct}/{IMAGES} ")
    assert re.match(r"\d\.\d{3} \(\d+/12;", _field(out, "majority-vote accuracy"))
    assert _field(out, "sent to expert review").startswith(f"{len(reviewed)} ")
    assert re.match(r"\d\.\d{3}$", _field(out, "mean item agreement"))
