"""The reliability model's fits, without a database: who looks reliable, and how much, and how
often a campaign refits it."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from activities.campaign_activities import refit_every
from db.models import Campaign
from schemas.campaign_spec import ReliabilitySpec
from services.reliability import (
    POPULATION,
    Estimate,
    _Answer,
    _fit_classes,
    _fit_scores,
    model_verdict,
)
from workflows.campaign_workflow import refit_gap

CLASSES = ["cat", "dog", "bird"]


def _crowd(seed: int = 3) -> tuple[list[_Answer], dict[str, str]]:
    rng = random.Random(seed)
    truth = {f"t{n}": rng.choice(CLASSES) for n in range(60)}
    answers = []
    for task, label in truth.items():
        for worker in ("good-1", "good-2", "good-3"):
            said = label if rng.random() < 0.9 else rng.choice(CLASSES)
            answers.append(_Answer(task, worker, {"objects": [{"label": said}]}, None))
        answers.append(_Answer(task, "spammer", {"objects": [{"label": "cat"}]}, None))
    return answers, truth


def test_dawid_skene_sees_the_spammer_and_weighs_them_at_zero() -> None:
    answers, _ = _crowd()
    estimates = _fit_classes(answers, CLASSES, gold={})
    assert set(estimates) == {"good-1", "good-2", "good-3", "spammer", POPULATION}
    # Confusion matrices, rows = true class: the spammer's "cat" column takes every row.
    spam = estimates["spammer"].confusion
    assert spam is not None and all(row[0] == max(row) for row in spam)
    good = estimates["good-1"].confusion
    assert good is not None and all(good[c][c] == max(good[c]) for c in range(3))
    for worker in ("good-1", "good-2", "good-3"):
        assert estimates[worker].accuracy > 0.85 and estimates[worker].weight > 1.5
    # Always "cat": right on the cats only (about a third), below chance-adjusted usefulness.
    assert estimates["spammer"].accuracy < 0.5
    assert estimates["spammer"].evidence == 60
    rules = ReliabilitySpec(min_accuracy=0.6, min_evidence=20)
    assert model_verdict(estimates["spammer"], rules) is not None
    assert model_verdict(estimates["good-1"], rules) is None


def test_gold_is_clamped_so_a_lone_answer_on_gold_counts_against_its_author() -> None:
    answers = [
        _Answer(f"g{n}", "newcomer", {"objects": [{"label": "dog"}]}, None) for n in range(8)
    ]
    estimates = _fit_classes(answers, CLASSES, gold={f"g{n}": "cat" for n in range(8)})
    # Every gold item missed: at chance (1/3) or below, the prior keeps it off zero; no weight.
    assert estimates["newcomer"].accuracy < 0.35 and estimates["newcomer"].weight == 0.0
    without_gold = _fit_classes(answers, CLASSES, gold={})
    # Alone, nothing contradicts them: the same answers look better without the gold.
    assert without_gold["newcomer"].accuracy > estimates["newcomer"].accuracy + 0.05


def test_few_answers_are_not_trusted_fully() -> None:
    estimates = _fit_scores({"lucky": [1.0], "steady": [1.0] * 30, "poor": [0.1] * 30})
    assert estimates["lucky"].accuracy < estimates["steady"].accuracy < 1.0
    assert estimates["poor"].accuracy < 0.2
    assert estimates["lucky"].evidence == 1 and estimates["steady"].evidence == 30
    assert estimates["steady"].weight == estimates["steady"].accuracy


@pytest.mark.parametrize(
    ("accuracy", "evidence", "judged"), [(0.5, 4, False), (0.5, 5, True), (0.7, 50, False)]
)
def test_the_model_rule_needs_enough_evidence(accuracy: float, evidence: int, judged: bool) -> None:
    rules = ReliabilitySpec(min_accuracy=0.6, min_evidence=5)
    verdict = model_verdict(Estimate(accuracy, 0.0, evidence), rules)
    assert (verdict is not None) == judged


def _campaign(images: int, **spec: object) -> Campaign:
    return Campaign(item_count=images, spec={"ontology": {"classes": []}, **spec})


@pytest.mark.parametrize(
    ("images", "spec", "expected"),
    [
        (1_000, {"redundancy": {"min_annotators": 2}}, 50),  # never closer than 50 images
        (100_000, {"redundancy": {"min_annotators": 2}}, 2_000),  # about 50 fits in all
        (100_000, {"reliability": {"min_accuracy": 0.6}}, 2_000),
        (100_000, {"reliability": {"min_accuracy": 0.6, "refit_every": 200}}, 200),  # as asked
        (100_000, {}, None),  # no reliability model: never fitted
    ],
)
def test_a_campaign_is_refitted_about_fifty_times_unless_its_spec_says_otherwise(
    images: int, spec: dict[str, object], expected: int | None
) -> None:
    assert refit_every(_campaign(images, **spec)) == expected


@pytest.mark.parametrize(
    ("took", "gap"),
    [(0.02, 1.0), (0.1, 1.0), (0.5, 5.0), (4.0, 40.0)],
    ids=["tiny-campaign", "at-the-floor", "half-a-second", "large-campaign"],
)
def test_gold_triggered_refits_keep_their_share_of_the_time_bounded(
    took: float, gap: float
) -> None:
    """A refit reads the whole campaign: on a large one, the refits gold answers trigger wait
    ten times the last one's duration, so refitting takes at most about a tenth of the time."""
    assert refit_gap(timedelta(seconds=took)) == timedelta(seconds=gap)
