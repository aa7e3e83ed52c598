"""Edge cases for per-item agreement and majority vote: empty input, one annotator, ties, total
disagreement, labels outside the ontology, bad weights and malformed answer tables."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from quality import MajorityVote, Vote, item_agreement, majority_vote

ORDER = ("cat", "dog", "bird")


def single(*labels: str) -> list[Vote]:
    return [Vote.single(f"a{i}", label, f"r{i}") for i, label in enumerate(labels)]


def multi(*label_sets: set[str]) -> list[Vote]:
    return [Vote(f"a{i}", frozenset(labels), f"r{i}") for i, labels in enumerate(label_sets)]


# --- no votes -------------------------------------------------------------------------------


@pytest.mark.parametrize("multi_label", [False, True], ids=["single-label", "multi-label"])
def test_no_votes_raise(multi_label: bool) -> None:
    with pytest.raises(ValueError, match="no votes"):
        item_agreement([], multi_label=multi_label)
    with pytest.raises(ValueError, match="no votes"):
        majority_vote([], multi_label=multi_label, class_order=ORDER)


def test_empty_answers_table_raises() -> None:
    empty: list[Any] = []
    with pytest.raises(ValueError, match="empty"):
        MajorityVote().fit((empty, empty, np.array([], dtype=np.int64)))


# --- one annotator --------------------------------------------------------------------------


def test_one_single_label_vote() -> None:
    votes = single("dog")
    assert item_agreement(votes, multi_label=False) == 1.0
    result = majority_vote(votes, multi_label=False, class_order=ORDER)
    assert (result.labels, result.confidence, result.support, result.tie) == (
        ("dog",),
        1.0,
        ("r0",),
        False,
    )


@pytest.mark.parametrize(
    ("labels", "expected"),
    [({"cat", "bird"}, ("cat", "bird")), (set(), ())],
    ids=["two-labels", "no-label"],
)
def test_one_multi_label_vote(labels: set[str], expected: tuple[str, ...]) -> None:
    votes = multi(labels)
    assert item_agreement(votes, multi_label=True) == 1.0
    result = majority_vote(votes, multi_label=True, class_order=ORDER)
    assert (result.labels, result.confidence, result.support, result.tie) == (
        expected,
        1.0,
        ("r0",),
        False,
    )


def test_one_worker_table() -> None:
    model = MajorityVote(n_classes=2).fit((["t1", "t2"], ["w", "w"], [1, 0]))
    assert model.predict().tolist() == [1, 0]
    np.testing.assert_array_equal(model.predict_proba(), [[0.0, 1.0], [1.0, 0.0]])


# --- ties and total disagreement ------------------------------------------------------------


def test_total_disagreement_single_label() -> None:
    votes = single("bird", "dog", "cat")
    # Floor of the plurality share: 1 / number of votes.
    assert item_agreement(votes, multi_label=False) == pytest.approx(1 / 3)
    result = majority_vote(votes, multi_label=False, class_order=ORDER)
    assert result.labels == ("cat",)
    assert result.confidence == pytest.approx(1 / 3)
    assert result.support == ("r2",)
    assert result.tie is True


def test_total_disagreement_multi_label() -> None:
    votes = multi({"cat"}, {"dog"}, {"bird"})
    assert item_agreement(votes, multi_label=True) == 0.0
    result = majority_vote(votes, multi_label=True, class_order=ORDER)
    assert result.labels == ()
    assert result.confidence == pytest.approx(2 / 3)
    assert result.support == ()  # nobody voted for the empty set
    assert result.tie is False


def test_total_disagreement_table() -> None:
    model = MajorityVote().fit((["t"] * 3, ["w1", "w2", "w3"], [2, 1, 0]))
    assert model.predict().tolist() == [0]
    assert model.ties_.tolist() == [True]
    np.testing.assert_allclose(model.predict_proba(), [[1 / 3, 1 / 3, 1 / 3]])


def test_tie_break_follows_class_order_not_alphabet() -> None:
    votes = single("cat", "bird")
    order = ("zebra", "bird", "cat")
    result = majority_vote(votes, multi_label=False, class_order=order)
    assert result.labels == ("bird",)
    assert result.tie is True


@pytest.mark.parametrize(
    "order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)], ids=["as-given", "reversed", "rotated"]
)
def test_float_weight_near_tie_is_order_independent(order: tuple[int, int, int]) -> None:
    # 0.1 + 0.2 != 0.3 in binary floating point; the tie must still be seen, whatever the order.
    base = single("dog", "dog", "cat")
    votes = [base[i] for i in order]
    weights = {"a0": 0.1, "a1": 0.2, "a2": 0.3}
    result = majority_vote(votes, multi_label=False, class_order=ORDER, weights=weights)
    assert result.labels == ("cat",)
    assert result.tie is True


def test_float_weight_near_tie_in_table() -> None:
    answers = (["t", "t", "t"], ["w1", "w2", "w3"], [1, 1, 0])
    model = MajorityVote().fit(answers, weights={"w1": 0.1, "w2": 0.2, "w3": 0.3})
    assert model.predict().tolist() == [0]
    assert model.ties_.tolist() == [True]


# --- labels outside the ontology ------------------------------------------------------------


@pytest.mark.parametrize("multi_label", [False, True], ids=["single-label", "multi-label"])
def test_label_not_in_class_order_raises(multi_label: bool) -> None:
    votes = multi({"cat"}, {"unicorn"})
    with pytest.raises(ValueError, match="unicorn"):
        majority_vote(votes, multi_label=multi_label, class_order=ORDER)


def test_duplicate_class_order_raises() -> None:
    with pytest.raises(ValueError, match="twice"):
        majority_vote(single("cat"), multi_label=False, class_order=("cat", "dog", "cat"))


def test_unvoted_labels_in_class_order_are_fine() -> None:
    result = majority_vote(single("dog"), multi_label=False, class_order=("x", "y", "dog"))
    assert result.labels == ("dog",)


# --- malformed votes and weights ------------------------------------------------------------


@pytest.mark.parametrize("labels", [set(), {"cat", "dog"}], ids=["no-label", "two-labels"])
def test_single_label_vote_needs_exactly_one_label(labels: set[str]) -> None:
    votes = [*single("cat"), Vote("a9", frozenset(labels), "r9")]
    with pytest.raises(ValueError, match="exactly one"):
        item_agreement(votes, multi_label=False)
    with pytest.raises(ValueError, match="exactly one"):
        majority_vote(votes, multi_label=False, class_order=ORDER)


def test_vote_rejects_a_bare_string() -> None:
    with pytest.raises(TypeError, match="single string"):
        Vote("a0", "cat", "r0")  # type: ignore[arg-type]


def test_vote_freezes_other_iterables() -> None:
    vote = Vote("a0", ["cat", "dog"], "r0")  # type: ignore[arg-type]
    assert vote.labels == frozenset({"cat", "dog"})


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"a0": 1.0}, "no weight for annotator 'a1'"),
        ({"a0": 1.0, "a1": -1.0}, ">= 0"),
        ({"a0": 1.0, "a1": float("nan")}, ">= 0"),
        ({"a0": 0.0, "a1": 0.0}, "sum to zero"),
    ],
    ids=["missing", "negative", "nan", "all-zero"],
)
def test_bad_weights_raise(weights: dict[str, float], message: str) -> None:
    votes = single("cat", "dog")
    with pytest.raises(ValueError, match=message):
        majority_vote(votes, multi_label=False, class_order=ORDER, weights=weights)
    with pytest.raises(ValueError, match=message):
        item_agreement(votes, multi_label=False, weights=weights)


def test_zero_weight_vote_has_no_say() -> None:
    votes = single("cat", "dog", "dog")
    weights = {"a0": 1.0, "a1": 0.0, "a2": 0.0}
    result = majority_vote(votes, multi_label=False, class_order=ORDER, weights=weights)
    assert result.labels == ("cat",)
    assert result.confidence == 1.0


def test_multi_label_needs_two_weighted_votes() -> None:
    votes = multi({"cat"}, {"dog"})
    with pytest.raises(ValueError, match="no pair"):
        item_agreement(votes, multi_label=True, weights={"a0": 1.0, "a1": 0.0})


@pytest.mark.parametrize(
    ("answers", "n_classes", "message"),
    [
        ((["t"], ["w"], [3]), 3, "out of range"),
        ((["t"], ["w"], [-1]), None, "non-negative"),
        ((["t"], ["w"], [0.5]), None, "integer class codes"),
        ((["t"], ["w"], ["cat"]), None, "integer class codes"),
        ((["t", "t"], ["w"], [0, 1]), None, "same length"),
        ((["t"], ["w"], [[0]]), None, "one-dimensional"),
        ((["t"], ["w"], [0]), 0, "positive"),
    ],
    ids=[
        "label-too-large",
        "negative-label",
        "float-label",
        "string-label",
        "ragged",
        "2d-labels",
        "zero-classes",
    ],
)
def test_malformed_table_raises(answers: Any, n_classes: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MajorityVote(n_classes=n_classes).fit(answers)


def test_table_needs_three_columns() -> None:
    with pytest.raises(ValueError, match="three parallel arrays"):
        MajorityVote().fit((["t"], [0]))  # type: ignore[arg-type]


def test_table_weight_errors() -> None:
    answers = (["t", "t"], ["w1", "w2"], [0, 1])
    with pytest.raises(ValueError, match="no weight for worker 'w2'"):
        MajorityVote().fit(answers, weights={"w1": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        MajorityVote().fit(answers, weights={"w1": 1.0, "w2": -2.0})
    with pytest.raises(ValueError, match="weigh zero"):
        MajorityVote().fit(answers, weights={"w1": 0.0, "w2": 0.0})


def test_unchosen_classes_keep_their_column() -> None:
    model = MajorityVote(n_classes=4).fit((["t"], ["w"], [1]))
    np.testing.assert_array_equal(model.predict_proba(), [[0.0, 1.0, 0.0, 0.0]])
