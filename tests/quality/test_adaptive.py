"""Adaptive redundancy (`quality.adaptive`): golden values by hand, edge cases, properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quality import (
    confusion_posterior,
    expected_confidence_gain,
    one_coin_posterior,
    redundancy_decision,
    smoothed_accuracy,
    vote_weight,
)

ABC = ("a", "b", "c")

# --- one_coin_posterior: golden values ------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "accuracies", "classes", "prior", "expected"),
    [
        # cat ∝ 0.9 * 0.8 * 0.4 = 0.288, dog ∝ 0.1 * 0.2 * 0.6 = 0.012; total 0.3.
        (
            ["cat", "cat", "dog"],
            [0.9, 0.8, 0.6],
            ("cat", "dog"),
            None,
            {"cat": 0.96, "dog": 0.04},
        ),
        # K = 3, a wrong answer goes to each other class with (1 - a) / 2:
        # a ∝ 0.8 * 0.25 = 0.2, b ∝ 0.1 * 0.5 = 0.05, c ∝ 0.1 * 0.25 = 0.025; total 0.275.
        (["a", "b"], [0.8, 0.5], ABC, None, {"a": 8 / 11, "b": 2 / 11, "c": 1 / 11}),
        # The same with prior (0.5, 0.25, 0.25): a ∝ 0.1, b ∝ 0.0125, c ∝ 0.00625 (0.11875).
        (
            ["a", "b"],
            [0.8, 0.5],
            ABC,
            [0.5, 0.25, 0.25],
            {"a": 16 / 19, "b": 2 / 19, "c": 1 / 19},
        ),
        # An unnormalized prior is normalized: (2, 1, 1) is the prior above.
        (["a", "b"], [0.8, 0.5], ABC, [2, 1, 1], {"a": 16 / 19, "b": 2 / 19, "c": 1 / 19}),
        # Two agreeing 0.7 answers, two classes: 0.49 / (0.49 + 0.09).
        (["x", "x"], [0.7, 0.7], ("x", "y"), None, {"x": 49 / 58, "y": 9 / 58}),
        # Below chance counts against its class: a 0.2 annotator saying x, two classes.
        (["x"], [0.2], ("x", "y"), None, {"x": 0.2, "y": 0.8}),
        # Accuracy 1 is clipped to 0.999, so a contradiction is very unlikely, not impossible:
        # x ∝ 0.999 * 0.3, y ∝ 0.001 * 0.7.
        (
            ["x", "y"],
            [1.0, 0.7],
            ("x", "y"),
            None,
            {"x": 0.2997 / 0.3004, "y": 0.0007 / 0.3004},
        ),
        # No answers: the prior.
        ([], [], ABC, None, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}),
        ([], [], ABC, [1, 0, 3], {"a": 0.25, "b": 0.0, "c": 0.75}),
        # A class with prior 0 stays impossible however many answers back it.
        (["b", "b", "b"], [0.9, 0.9, 0.9], ABC, [1, 0, 1], {"a": 0.5, "b": 0.0, "c": 0.5}),
    ],
    ids=[
        "two-of-three",
        "three-classes",
        "three-classes-prior",
        "unnormalized-prior",
        "two-agreeing-unknowns",
        "below-chance",
        "clipped-perfect",
        "no-answers",
        "no-answers-prior",
        "zero-prior",
    ],
)
def test_posterior_golden(
    labels: list[str],
    accuracies: list[float],
    classes: tuple[str, ...],
    prior: list[float] | None,
    expected: dict[str, float],
) -> None:
    result = one_coin_posterior(labels, accuracies, classes, prior)
    assert list(result) == list(classes)
    assert result == pytest.approx(expected, abs=1e-12)


def test_posterior_does_not_underflow_with_many_answers() -> None:
    # 600 answers: a product of probabilities would be 0.999**300 * 0.001**300 ~ 1e-900.
    labels = ["x"] * 300 + ["y"] * 300
    result = one_coin_posterior(labels, [0.999] * 600, ("x", "y"))
    assert result == pytest.approx({"x": 0.5, "y": 0.5})
    # One more x decides it: log-odds log(999) ~ 6.9, so y ~ 1/1000.
    result = one_coin_posterior([*labels, "x"], [0.999] * 601, ("x", "y"))
    assert result["y"] == pytest.approx(0.001)


@pytest.mark.parametrize(
    ("labels", "accuracies", "classes", "prior", "message"),
    [
        (["cat", "emu"], [0.9, 0.9], ("cat", "dog"), None, "label 'emu' (answer 1) is not one"),
        (["a"], [0.9, 0.8], ABC, None, "same length, got 1 and 2"),
        (["a"], [0.9], ("a",), None, "at least two classes"),
        (["a"], [0.9], ("a", "b", "a"), None, "classes repeat"),
        (["a"], [math.nan], ABC, None, "accuracy 0 is NaN"),
        (["a"], [0.9], ABC, [0.5, 0.5], "one value per class (3)"),
        (["a"], [0.9], ABC, [0.5, -0.1, 0.6], "finite and >= 0"),
        (["a"], [0.9], ABC, [0.5, math.inf, 0.6], "finite and >= 0"),
        (["a"], [0.9], ABC, [0, 0, 0], "sum to zero"),
    ],
    ids=[
        "unknown-label",
        "length-mismatch",
        "one-class",
        "repeated-class",
        "nan-accuracy",
        "short-prior",
        "negative-prior",
        "infinite-prior",
        "zero-prior",
    ],
)
def test_posterior_rejects(
    labels: list[str],
    accuracies: list[float],
    classes: tuple[str, ...],
    prior: list[float] | None,
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        one_coin_posterior(labels, accuracies, classes, prior)


# --- vote_weight ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accuracy", "n_classes", "expected"),
    [
        (0.9, 2, math.log(9)),  # log(1 * 0.9 / 0.1)
        (0.75, 2, math.log(3)),  # log(0.75 / 0.25)
        (0.5, 4, math.log(3)),  # log(3 * 0.5 / 0.5)
        (0.5, 2, 0.0),  # chance with two classes
        (0.25, 4, 0.0),  # chance with four classes
        (0.2, 4, 0.0),  # below chance: floored, not negative
        (0.0, 2, 0.0),
        (1.0, 2, math.log(999)),  # clipped to 0.999
        (1.0, 3, math.log(2 * 999)),
    ],
    ids=[
        "0.9-of-2",
        "0.75-of-2",
        "0.5-of-4",
        "chance-2",
        "chance-4",
        "below-chance",
        "zero",
        "perfect-clipped",
        "perfect-clipped-3",
    ],
)
def test_vote_weight_golden(accuracy: float, n_classes: int, expected: float) -> None:
    assert vote_weight(accuracy, n_classes) == pytest.approx(expected)


def test_vote_weight_is_the_posterior_log_odds() -> None:
    # Two answers for x, one for y, uniform prior: log P(x)/P(y) = w1 + w2 - w3.
    accuracies = [0.9, 0.7, 0.8]
    post = one_coin_posterior(["x", "x", "y"], accuracies, ("x", "y"))
    w = [vote_weight(a, 2) for a in accuracies]
    assert math.log(post["x"] / post["y"]) == pytest.approx(w[0] + w[1] - w[2])


@pytest.mark.parametrize(("accuracy", "n_classes"), [(0.9, 1), (math.nan, 2)])
def test_vote_weight_rejects(accuracy: float, n_classes: int) -> None:
    with pytest.raises(ValueError):
        vote_weight(accuracy, n_classes)


# --- smoothed_accuracy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("correct", "total", "kwargs", "expected"),
    [
        (0, 0, {}, 0.7),  # no track record: the prior accuracy
        (2, 2, {}, 0.85),  # (2 + 2 * 0.7) / (2 + 2) = 3.4 / 4
        (3, 3, {}, 0.88),  # 4.4 / 5
        (0, 3, {}, 0.28),  # 1.4 / 5
        (90, 100, {}, 91.4 / 102),
        (1.5, 2.0, {}, 2.9 / 4),  # expected (fractional) counts
        (2, 4, {"prior_accuracy": 0.9, "prior_strength": 6}, 7.4 / 10),
        (3, 4, {"prior_strength": 0}, 0.75),  # no prior: the raw share
    ],
    ids=["none", "2-of-2", "3-of-3", "0-of-3", "90-of-100", "fractional", "custom", "raw"],
)
def test_smoothed_accuracy_golden(
    correct: float, total: float, kwargs: dict[str, float], expected: float
) -> None:
    assert smoothed_accuracy(correct, total, **kwargs) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("correct", "total", "kwargs", "message"),
    [
        (3, 2, {}, "exceeds total"),
        (-1, 2, {}, ">= 0"),
        (math.nan, 2, {}, "finite"),
        (1, math.inf, {}, "finite"),
        (1, 2, {"prior_accuracy": 1.5}, "prior_accuracy"),
        (1, 2, {"prior_strength": -1}, "prior_strength"),
        (0, 0, {"prior_strength": 0}, "undefined"),
    ],
    ids=["over", "negative", "nan", "inf", "bad-prior", "negative-strength", "undefined"],
)
def test_smoothed_accuracy_rejects(
    correct: float, total: float, kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        smoothed_accuracy(correct, total, **kwargs)


# --- redundancy_decision ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "n_answers", "expected"),
    [
        (1.0, 0, "more"),  # below the minimum, whatever the confidence
        (0.99, 1, "more"),
        (0.95, 2, "stop"),  # at the minimum and exactly at the target
        (0.94, 2, "more"),
        (0.99, 4, "stop"),
        (0.5, 4, "more"),
        (0.95, 5, "stop"),  # at the maximum and confident
        (0.94, 5, "escalate"),  # at the maximum and still uncertain
        (0.10, 7, "escalate"),  # past the maximum counts as at it
    ],
)
def test_redundancy_decision(confidence: float, n_answers: int, expected: str) -> None:
    assert redundancy_decision(confidence, n_answers, 2, 5, 0.95) == expected


def test_redundancy_decision_min_equals_max() -> None:
    # A fixed number of annotators: never "more" at it, escalate when uncertain.
    assert redundancy_decision(0.6, 3, 3, 3, 0.9) == "escalate"
    assert redundancy_decision(0.9, 3, 3, 3, 0.9) == "stop"
    assert redundancy_decision(0.9, 2, 3, 3, 0.9) == "more"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1.5, 1, 1, 3, 0.9), "confidence"),
        ((math.nan, 1, 1, 3, 0.9), "confidence"),
        ((0.5, -1, 1, 3, 0.9), "n_answers"),
        ((0.5, 1, 0, 3, 0.9), "min_annotators"),
        ((0.5, 1, 3, 2, 0.9), "below min_annotators"),
        ((0.5, 1, 1, 3, 0.0), "target_confidence"),
        ((0.5, 1, 1, 3, 1.1), "target_confidence"),
    ],
    ids=["confidence", "nan", "n", "min", "max-below-min", "target-0", "target-above-1"],
)
def test_redundancy_decision_rejects(
    args: tuple[float, int, int, int, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        redundancy_decision(*args)


# --- properties ------------------------------------------------------------------------------

CLASSES = ("a", "b", "c", "d")
accuracy = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
answers = st.lists(st.tuples(st.sampled_from(CLASSES), accuracy), max_size=30)
prior = st.lists(st.floats(min_value=0.01, max_value=10.0, allow_nan=False), min_size=4, max_size=4)


@given(answers, st.one_of(st.none(), prior), st.integers(min_value=2, max_value=4))
def test_posterior_is_a_distribution(
    given_answers: list[tuple[str, float]], given_prior: list[float] | None, n_classes: int
) -> None:
    classes = CLASSES[:n_classes]
    kept = [(label, a) for label, a in given_answers if label in classes]
    result = one_coin_posterior(
        [label for label, _ in kept],
        [a for _, a in kept],
        classes,
        None if given_prior is None else given_prior[:n_classes],
    )
    assert list(result) == list(classes)
    assert all(0.0 <= p <= 1.0 for p in result.values())
    assert math.fsum(result.values()) == pytest.approx(1.0)


@given(
    answers,
    st.sampled_from(CLASSES),
    # "Reliable": better than chance (1/4) for four classes.
    st.floats(min_value=0.26, max_value=1.0, allow_nan=False),
    st.integers(min_value=1, max_value=5),
)
def test_agreeing_reliable_answers_never_lower_their_class(
    given_answers: list[tuple[str, float]], label: str, reliable: float, extra: int
) -> None:
    labels = [x for x, _ in given_answers]
    accuracies = [a for _, a in given_answers]
    before = one_coin_posterior(labels, accuracies, CLASSES)[label]
    for _ in range(extra):
        labels.append(label)
        accuracies.append(reliable)
        after = one_coin_posterior(labels, accuracies, CLASSES)[label]
        # Exact in real arithmetic; the slack covers float rounding near 1.
        assert after >= before - 1e-12
        before = after


@given(answers)
def test_posterior_ignores_answer_order(given_answers: list[tuple[str, float]]) -> None:
    labels = [x for x, _ in given_answers]
    accuracies = [a for _, a in given_answers]
    forward = one_coin_posterior(labels, accuracies, CLASSES)
    backward = one_coin_posterior(labels[::-1], accuracies[::-1], CLASSES)
    assert forward == pytest.approx(backward, abs=1e-9)


@given(st.floats(min_value=0.0, max_value=1.0), st.integers(min_value=2, max_value=10))
def test_vote_weight_is_zero_exactly_at_or_below_chance(a: float, n_classes: int) -> None:
    weight = vote_weight(a, n_classes)
    assert weight >= 0.0
    if a <= 1 / n_classes:
        # Exactly 0 below chance; at chance log(1) up to the rounding of (K - 1) a / (1 - a).
        assert weight == pytest.approx(0.0, abs=1e-12)


@given(
    st.integers(min_value=0, max_value=200),
    st.integers(min_value=0, max_value=200),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_smoothed_accuracy_lies_between_prior_and_share(
    correct: int, extra: int, prior_accuracy: float
) -> None:
    total = correct + extra
    value = smoothed_accuracy(correct, total, prior_accuracy)
    share = correct / total if total else prior_accuracy
    assert min(share, prior_accuracy) - 1e-12 <= value <= max(share, prior_accuracy) + 1e-12


# --- confusion_posterior ----------------------------------------------------------------------


def _one_coin_matrix(accuracy: float, n_classes: int) -> list[list[float]]:
    off = (1.0 - accuracy) / (n_classes - 1)
    return [[accuracy if r == c else off for c in range(n_classes)] for r in range(n_classes)]


def test_confusion_posterior_golden() -> None:
    # Worker 1 is reliable on x (0.9) but answers x on half the y items; worker 2 is 0.8 / 0.8.
    # Labels (x, y): x ∝ 0.9 * 0.2 = 0.18, y ∝ 0.5 * 0.8 = 0.4; total 0.58.
    w1 = [[0.9, 0.1], [0.5, 0.5]]
    w2 = [[0.8, 0.2], [0.2, 0.8]]
    got = confusion_posterior(["x", "y"], [w1, w2], ("x", "y"))
    assert got == pytest.approx({"x": 0.18 / 0.58, "y": 0.4 / 0.58})
    # With prior (0.25, 0.75): x ∝ 0.045, y ∝ 0.3.
    got = confusion_posterior(["x", "y"], [w1, w2], ("x", "y"), [1, 3])
    assert got == pytest.approx({"x": 0.045 / 0.345, "y": 0.3 / 0.345})


def test_confusion_posterior_class_dependent_answer_weighs_less() -> None:
    # An "x" from worker 1 (who says x on half the y items) is weaker evidence than an "x"
    # from a symmetric worker of the same overall accuracy (0.7).
    w1 = [[0.9, 0.1], [0.5, 0.5]]
    assert confusion_posterior(["x"], [w1], ("x", "y"))["x"] == pytest.approx(0.9 / 1.4)
    assert confusion_posterior(["x"], [_one_coin_matrix(0.7, 2)], ("x", "y"))["x"] == pytest.approx(
        0.7
    )
    # but a "y" from worker 1 is strong evidence for y: 0.5 / 0.6.
    assert confusion_posterior(["y"], [w1], ("x", "y"))["y"] == pytest.approx(0.5 / 0.6)


@given(
    st.lists(
        st.tuples(st.sampled_from(ABC), st.floats(0.0, 1.0)),
        max_size=12,
    ),
    st.none() | st.lists(st.floats(0.01, 10.0), min_size=3, max_size=3),
)
def test_confusion_posterior_equals_one_coin_with_one_coin_matrices(
    answers: list[tuple[str, float]], prior: list[float] | None
) -> None:
    labels = [label for label, _ in answers]
    # Keep accuracies inside the clip, where the two functions floor identically.
    accuracies = [min(max(a, 0.01), 0.98) for _, a in answers]
    matrices = [_one_coin_matrix(a, 3) for a in accuracies]
    expected = one_coin_posterior(labels, accuracies, ABC, prior)
    got = confusion_posterior(labels, matrices, ABC, prior)
    assert got == pytest.approx(expected, abs=1e-9)


def test_confusion_posterior_no_answers_is_the_prior_and_rows_are_normalized() -> None:
    assert confusion_posterior([], [], ("x", "y"), [3, 1]) == pytest.approx({"x": 0.75, "y": 0.25})
    assert confusion_posterior([], [], ("x", "y")) == {"x": 0.5, "y": 0.5}
    # Unnormalized rows: [[9, 1], [2, 8]] is [[0.9, 0.1], [0.2, 0.8]].
    got = confusion_posterior(["x"], [[[9, 1], [2, 8]]], ("x", "y"))
    assert got == pytest.approx({"x": 0.9 / 1.1, "y": 0.2 / 1.1})


def test_confusion_posterior_zero_entry_is_floored_not_impossible() -> None:
    # pi[y, x] = 0 would make y impossible after one "x"; the floor keeps it possible.
    got = confusion_posterior(["x", "y"], [[[1, 0], [0, 1]], [[0.3, 0.7], [0.3, 0.7]]], ("x", "y"))
    assert 0 < got["y"] < 1e-2
    assert got["x"] + got["y"] == pytest.approx(1.0)


def test_confusion_posterior_does_not_underflow() -> None:
    matrix = _one_coin_matrix(0.9, 2)
    got = confusion_posterior(["x"] * 2000 + ["y"] * 1999, [matrix] * 3999, ("x", "y"))
    assert got["x"] == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("labels", "confusions", "classes", "prior", "match"),
    [
        (["x"], [[[1, 0], [0, 1]]], ("x",), None, "at least two classes"),
        (["x"], [[[1, 0], [0, 1]]], ("x", "x"), None, "repeat"),
        (["x"], [], ("x", "y"), None, "same length"),
        (["z"], [[[1, 0], [0, 1]]], ("x", "y"), None, "'z'"),
        (["x"], [[[1, 0, 0], [0, 1, 0]]], ("x", "y"), None, "2 x 2"),
        (["x"], [[[1, -0.1], [0, 1]]], ("x", "y"), None, "negative or non-finite"),
        (["x"], [[[1, math.nan], [0, 1]]], ("x", "y"), None, "negative or non-finite"),
        (["x"], [[[1, 0], [0, 0]]], ("x", "y"), None, "row summing to zero"),
        (["x"], [[[1, 0], [0, 1]]], ("x", "y"), [1.0], "one value per class"),
        (["x"], [[[1, 0], [0, 1]]], ("x", "y"), [0.0, 0.0], "sum to zero"),
    ],
)
def test_confusion_posterior_rejects(
    labels: list[str],
    confusions: list[list[list[float]]],
    classes: tuple[str, ...],
    prior: list[float] | None,
    match: str,
) -> None:
    with pytest.raises(ValueError, match=match):
        confusion_posterior(labels, confusions, classes, prior)


# --- expected_confidence_gain -----------------------------------------------------------------


def test_expected_confidence_gain_golden() -> None:
    # p = (0.6, 0.4), symmetric 0.8 annotator. Answer x: joint (0.48, 0.08) -> 0.48; answer y:
    # joint (0.12, 0.32) -> 0.32 (the decision flips to y). 0.48 + 0.32 - 0.6 = 0.2.
    pi = _one_coin_matrix(0.8, 2)
    assert expected_confidence_gain([0.6, 0.4], pi) == pytest.approx(0.2)
    # p = (0.9, 0.1): answer y gives joint (0.18, 0.08), x stays ahead: no answer can change
    # the decision, the gain is 0.
    assert expected_confidence_gain([0.9, 0.1], pi) == pytest.approx(0.0, abs=1e-15)
    # Two answers can: y, y gives joint (0.036, 0.064). Gain = 0.064 - 0.036 = 0.028.
    assert expected_confidence_gain([0.9, 0.1], pi, 2) == pytest.approx(0.028)


@given(
    st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3).filter(lambda p: sum(p) > 0.01),
    st.lists(st.lists(st.floats(0.01, 1.0), min_size=3, max_size=3), min_size=3, max_size=3),
    st.integers(1, 3),
)
def test_expected_confidence_gain_is_nonnegative_and_grows_with_lookahead(
    posterior: list[float], confusion: list[list[float]], answers: int
) -> None:
    gain = expected_confidence_gain(posterior, confusion, answers)
    assert 0.0 <= gain <= 1.0
    assert expected_confidence_gain(posterior, confusion, answers + 1) >= gain - 1e-12


def test_expected_confidence_gain_is_zero_when_the_next_answer_cannot_flip() -> None:
    # Uninformative annotator (identical rows): nothing can change, whatever the posterior.
    flat = [[0.5, 0.3, 0.2]] * 3
    assert expected_confidence_gain([0.4, 0.35, 0.25], flat) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize(
    ("posterior", "confusion", "answers", "match"),
    [
        ([1.0], [[1.0]], 1, "K >= 2"),
        ([0.5, 0.5], [[1.0, 0.0, 0.0]], 1, "K x K"),
        ([0.5, -0.5], [[1, 0], [0, 1]], 1, "finite and >= 0"),
        ([0.5, 0.5], [[1, 0], [0, 0]], 1, "positive total"),
        ([0.0, 0.0], [[1, 0], [0, 1]], 1, "positive total"),
        ([0.5, 0.5], [[1, 0], [0, 1]], 0, "answers must be >= 1"),
    ],
)
def test_expected_confidence_gain_rejects(
    posterior: list[float], confusion: list[list[float]], answers: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        expected_confidence_gain(posterior, confusion, answers)
