"""Histories of real runs, kept under tests/histories/, replay with the current workflow code.

A change to a workflow that would break running workflows (a non-deterministic change without
``workflow.patched``) fails here, in CI, before it reaches a deployment. Refresh the files with
``QUORUM_KEEP_HISTORIES=$PWD/tests/histories pytest tests/pipeline/test_history_archive.py
tests/pipeline/test_quality_control.py -k sqlite`` when a change is meant to be incompatible
(and version the workflow).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from infra.temporal_client import DATA_CONVERTER
from workers.registry import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path) -> None:
    recorded = json.loads(path.read_text())  # noqa: ASYNC240 (a small local fixture)
    history = WorkflowHistory.from_json(f"recorded/{path.stem}", recorded)
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=DATA_CONVERTER)
    await replayer.replay_workflow(history)


def test_the_recorded_histories_cover_both_paths() -> None:
    names = {p.stem for p in HISTORIES}
    assert {"campaign-agreed", "campaign-reviewed", "item-agreed", "item-reviewed"} <= names
    reviewed = (Path(__file__).parent / "histories" / "item-reviewed.json").read_text()
    assert "review_decided" in reviewed and "finalize_review" in reviewed
    # An adaptive campaign whose refit after the last image re-opened an image (the
    # final-refit patch): recorded by tests/pipeline/test_quality_control.py with
    # QUORUM_KEEP_HISTORIES set.
    reopened = (Path(__file__).parent / "histories" / "campaign-adaptive-reopen.json").read_text()
    assert "refit_reliability" in reopened and "restart_items" in reopened
