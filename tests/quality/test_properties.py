"""Properties of agreement and consensus that must hold for any input (hypothesis)."""

from __future__ import annotations

import math
import random as random_module

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from quality import (
    MajorityVote,
    Vote,
    item_agreement,
    krippendorff_alpha_nominal,
    majority_vote,
)

ORDER = ("a", "b", "c", "d")

label = st.sampled_from(ORDER)
label_set = st.frozensets(label)
weight = st.floats(min_value=0.01, max_value=100.0, allow_nan=False, allow_infinity=False)


def _votes(label_sets: list[frozenset[str]]) -> list[Vote]:
    return [Vote(f"a{i}", labels, f"r{i}") for i, labels in enumerate(label_sets)]


def _weights(votes: list[Vote], values: list[float]) -> dict[str, float]:
    return {vote.annotator_id: w for vote, w in zip(votes, values, strict=False)}


single_label_votes = st.lists(label, min_size=1, max_size=12).map(
    lambda labels: _votes([frozenset((x,)) for x in labels])
)
multi_label_votes = st.lists(label_set, min_size=1, max_size=12).map(_votes)


@given(single_label_votes, st.lists(weight, min_size=12, max_size=12))
def test_single_label_agreement_in_unit_interval(votes: list[Vote], values: list[float]) -> None:
    for weights in (None, _weights(votes, values)):
        agreement = item_agreement(votes, multi_label=False, weights=weights)
        assert 0.0 <= agreement <= 1.0
        if weights is None:
            # Unweighted, the plurality share is at least one vote's worth.
            assert agreement >= 1 / len(votes) - 1e-12
        result = majority_vote(votes, multi_label=False, class_order=ORDER, weights=weights)
        # The single-label consensus confidence is the agreement, by definition.
        assert math.isclose(result.confidence, agreement, rel_tol=1e-12)
        assert len(result.labels) == 1
        assert result.support  # the winner has at least one vote


@given(multi_label_votes, st.lists(weight, min_size=12, max_size=12))
def test_multi_label_agreement_in_unit_interval(votes: list[Vote], values: list[float]) -> None:
    for weights in (None, _weights(votes, values)):
        assert 0.0 <= item_agreement(votes, multi_label=True, weights=weights) <= 1.0
        result = majority_vote(votes, multi_label=True, class_order=ORDER, weights=weights)
        assert 0.0 <= result.confidence <= 1.0
        assert list(result.labels) == sorted(result.labels, key=ORDER.index)


@given(label_set, st.integers(min_value=1, max_value=10), st.booleans())
def test_identical_votes_agree_fully(labels: frozenset[str], count: int, multi: bool) -> None:
    if not multi and len(labels) != 1:
        labels = frozenset(("c",))
    votes = _votes([labels] * count)
    assert item_agreement(votes, multi_label=multi) == 1.0
    result = majority_vote(votes, multi_label=multi, class_order=ORDER)
    assert frozenset(result.labels) == labels
    assert result.confidence == 1.0
    assert result.tie is False
    assert result.support == tuple(vote.response_id for vote in votes)


@given(
    st.lists(label_set, min_size=1, max_size=10),
    st.lists(weight, min_size=10, max_size=10),
    st.randoms(use_true_random=False),
    st.booleans(),
)
def test_consensus_ignores_vote_order(
    label_sets: list[frozenset[str]], values: list[float], random: random_module.Random, multi: bool
) -> None:
    if not multi:
        label_sets = [frozenset((min(s),)) if s else frozenset(("d",)) for s in label_sets]
    votes = _votes(label_sets)
    weights = _weights(votes, values)
    shuffled = list(votes)
    random.shuffle(shuffled)
    first = majority_vote(votes, multi_label=multi, class_order=ORDER, weights=weights)
    second = majority_vote(shuffled, multi_label=multi, class_order=ORDER, weights=weights)
    assert first.labels == second.labels
    assert first.tie == second.tie
    assert math.isclose(first.confidence, second.confidence, rel_tol=1e-12)
    assert sorted(first.support) == sorted(second.support)


@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 4), st.integers(0, len(ORDER) - 1)),
        min_size=1,
        max_size=40,
    )
)
def test_table_and_per_item_majority_agree(rows: list[tuple[int, int, int]]) -> None:
    tasks, workers, labels = (np.array(column) for column in zip(*rows, strict=True))
    model = MajorityVote(n_classes=len(ORDER)).fit((tasks, workers, labels))
    for task, predicted, tie in zip(model.tasks_, model.predict(), model.ties_, strict=True):
        votes = [
            Vote.single(f"w{w}", ORDER[k], str(i)) for i, (t, w, k) in enumerate(rows) if t == task
        ]
        result = majority_vote(votes, multi_label=False, class_order=ORDER)
        assert result.labels == (ORDER[predicted],)
        assert result.tie == bool(tie)
    np.testing.assert_allclose(model.predict_proba().sum(axis=1), 1.0)


@given(
    st.lists(st.lists(st.sampled_from("xyz"), max_size=6), max_size=15),
    st.permutations("xyz"),
)
def test_alpha_bounded_and_invariant_to_renaming(units: list[list[str]], names: list[str]) -> None:
    alpha = krippendorff_alpha_nominal(units)
    renamed = [[names["xyz".index(v)] for v in unit] for unit in units]
    other = krippendorff_alpha_nominal(renamed)
    if math.isnan(alpha):
        assert math.isnan(other)
    else:
        assert alpha <= 1.0 + 1e-12
        assert math.isclose(alpha, other, rel_tol=1e-12, abs_tol=1e-12)
