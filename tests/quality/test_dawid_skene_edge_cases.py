"""Edge cases for Dawid-Skene: one worker, one task, one class, unanimity, ties, bad labels, bad
gold and bad hyperparameters."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from quality import DawidSkene

# --- degenerate tables ----------------------------------------------------------------------


def test_one_worker_is_followed() -> None:
    model = DawidSkene().fit((["t1", "t2", "t3", "t4"], ["w"] * 4, [1, 0, 2, 1]))
    assert model.predict().tolist() == [1, 0, 2, 1]
    assert model.errors_.shape == (1, 3, 3)
    np.testing.assert_allclose(model.probas_.sum(axis=1), 1.0)


def test_one_task() -> None:
    model = DawidSkene().fit((["t"] * 3, ["a", "b", "c"], [0, 0, 1]))
    assert model.tasks_.tolist() == ["t"]
    assert model.predict().tolist() == [0]
    assert 0.5 < model.probas_[0, 0] <= 1.0


def test_one_class_present() -> None:
    model = DawidSkene().fit((["t1", "t1", "t2"], ["a", "b", "a"], [0, 0, 0]))
    assert model.n_classes_ == 1
    np.testing.assert_array_equal(model.probas_, [[1.0], [1.0]])
    np.testing.assert_array_equal(model.errors_, np.ones((2, 1, 1)))
    assert model.worker_spammer_score() == {"a": 0.0, "b": 0.0}
    assert model.worker_accuracy() == {"a": 1.0, "b": 1.0}


def test_one_class_present_of_several() -> None:
    # Class 2 only, with n_classes=4: the absent classes keep a small, non-zero prior. The
    # imaginary worker guesses 2 half the time here (rho0 = [1, 1, 3, 1] / 6), so a single
    # answer 2 is weaker evidence than two: t1 (one answer) is less sure than t2 (two).
    model = DawidSkene(n_classes=4).fit((["t1", "t2", "t2"], ["a", "a", "b"], [2, 2, 2]))
    assert model.predict().tolist() == [2, 2]
    assert model.probas_.shape == (2, 4)
    assert np.all(model.probas_[:, 2] > 0.7)
    assert model.probas_[1, 2] > max(model.probas_[0, 2], 0.9)
    assert np.all(np.isfinite(model.loglikelihoods_))


def test_all_workers_agree() -> None:
    truth = [0, 1, 2, 1, 0, 2]
    tasks = [f"t{i}" for i, _ in enumerate(truth) for _ in range(3)]
    workers = ["a", "b", "c"] * len(truth)
    labels = [z for z in truth for _ in range(3)]
    model = DawidSkene().fit((tasks, workers, labels))
    assert model.predict().tolist() == truth
    assert np.all(model.probas_.max(axis=1) > 0.95)
    assert min(model.worker_spammer_score().values()) > 0.5


def test_symmetric_disagreement_is_a_tie_broken_by_class_index() -> None:
    # Two workers, one task, opposite answers: nothing tells them apart.
    model = DawidSkene().fit((["t", "t"], ["a", "b"], [1, 0]))
    np.testing.assert_allclose(model.probas_, [[0.5, 0.5]])
    assert model.predict().tolist() == [0]


def test_repeated_answers_count_twice() -> None:
    # The same (task, worker) pair twice is two votes, as in MajorityVote. One iteration of
    # plain Dawid-Skene by hand: majority vote gives [1/3, 2/3] (it would be [1/2, 1/2] if the
    # repeat were dropped), so rho = [1/3, 2/3]; a's rows are [0, 2/3] and [0, 4/3] -> both
    # [0, 1]; b's are [1/3, 0] and [2/3, 0] -> both [1, 0]; the E-step gives 1/3 * 1 * 1 * 1
    # against 2/3 * 1 * 1 * 1.
    model = DawidSkene(prior_strength=0.0, class_prior=0.0, max_iter=1)
    model.fit((["t", "t", "t"], ["a", "a", "b"], [1, 1, 0]))
    np.testing.assert_allclose(model.probas_, [[1 / 3, 2 / 3]], atol=1e-8)
    assert model.predict().tolist() == [1]


def test_max_iter_one_runs_one_iteration() -> None:
    model = DawidSkene(max_iter=1, without_overlap="em").fit((["t1", "t2"], ["a", "a"], [0, 1]))
    assert model.n_iter_ == 1
    assert len(model.loglikelihoods_) == 1


def test_integer_ids() -> None:
    model = DawidSkene().fit(([3, 1, 3], [10, 10, 20], [1, 0, 1]))
    assert model.tasks_.tolist() == [1, 3]
    assert set(model.worker_accuracy()) == {10, 20}


# --- malformed input ------------------------------------------------------------------------


def test_unseen_label_index_raises() -> None:
    with pytest.raises(ValueError, match="out of range"):
        DawidSkene(n_classes=3).fit((["t1", "t2"], ["a", "a"], [0, 3]))


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (([], [], np.array([], dtype=np.int64)), "empty"),
        ((["t1", "t2"], ["a"], [0, 1]), "same length"),
        ((["t1"], ["a"], [-1]), "non-negative"),
        ((["t1"], ["a"], ["cat"]), "integer class codes"),
        ((["t1"], ["a"], [0.5]), "integer class codes"),
    ],
    ids=["empty", "unequal-lengths", "negative-label", "string-label", "float-label"],
)
def test_malformed_answers_raise(answers: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DawidSkene().fit(answers)


@pytest.mark.parametrize(
    ("gold", "message"),
    [({"t1": 2}, "out of range"), ({"t1": -1}, "out of range"), ({"t1": "0"}, "integer")],
    ids=["too-large", "negative", "string"],
)
def test_bad_gold_label_raises(gold: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DawidSkene().fit((["t1", "t2"], ["a", "a"], [0, 1]), gold=gold)


def test_gold_with_ids_of_another_type_is_ignored() -> None:
    model = DawidSkene().fit((["t1", "t2"], ["a", "a"], [0, 1]), gold={1: 0})
    assert model.n_gold_ == 0


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        ({"prior_strength": -1.0}, "prior_strength"),
        ({"prior_strength": float("inf")}, "prior_strength"),
        ({"prior_diagonal": 1.5}, "prior_diagonal"),
        ({"prior_diagonal": -0.1}, "prior_diagonal"),
        ({"class_prior": -1.0}, "class_prior"),
        ({"max_iter": 0}, "max_iter"),
        ({"tol": -1e-3}, "tol"),
        ({"tol": float("nan")}, "tol"),
        ({"prior_guess": "gaussian"}, "prior_guess"),
        ({"n_classes": 0}, "n_classes"),
    ],
    ids=lambda value: str(value),
)
def test_bad_hyperparameters_raise(hyperparameters: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DawidSkene(**hyperparameters).fit((["t1"], ["a"], [0]))


def _one_answer_per_task(seed: int) -> tuple[list[str], list[str], list[int], list[int]]:
    """300 tasks of 3 classes, each answered once by one of 150 workers (two answers each on
    average, as on a campaign with k = 1) who are right 70% of the time."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, 300).tolist()
    workers = [f"w{rng.integers(0, 150)}" for _ in truth]
    labels = [z if rng.random() < 0.7 else int((z + rng.integers(1, 3)) % 3) for z in truth]
    return [f"t{i:03d}" for i in range(len(truth))], workers, labels, truth


def test_without_overlap_each_task_keeps_its_own_answer() -> None:
    tasks, workers, labels, truth = _one_answer_per_task(0)
    model = DawidSkene().fit((tasks, workers, labels))
    assert model.n_iter_ == 0
    assert model.predict().tolist() == labels
    assert model.probas_.max(axis=1).tolist() == [1.0] * len(tasks)
    # Without the rule, EM drifts away from the only evidence there is, well below the answers'
    # own accuracy (0.72 here).
    drifted = DawidSkene(without_overlap="em").fit((tasks, workers, labels))

    def accuracy(predicted: list[int]) -> float:
        return sum(p == z for p, z in zip(predicted, truth, strict=True)) / len(truth)

    assert accuracy(labels) > 0.7
    assert accuracy(drifted.predict().tolist()) < accuracy(labels) - 0.2


def test_one_task_with_two_answers_is_enough_to_run_em() -> None:
    tasks, workers, labels, _ = _one_answer_per_task(1)
    model = DawidSkene().fit(([*tasks, tasks[0]], [*workers, "other"], [*labels, labels[0]]))
    assert model.n_iter_ > 0


def test_gold_answers_are_enough_to_run_em() -> None:
    tasks, workers, labels, truth = _one_answer_per_task(2)
    model = DawidSkene().fit((tasks, workers, labels), gold={tasks[0]: truth[0]})
    assert model.n_iter_ > 0


def test_without_overlap_must_be_a_known_rule() -> None:
    with pytest.raises(ValueError, match="without_overlap"):
        DawidSkene(without_overlap="vote").fit((["t"], ["w"], [0]))  # type: ignore[arg-type]
