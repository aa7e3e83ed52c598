"""Campaign-level agreement metrics against hand-computed values and reference packages.

The ``krippendorff`` and ``statsmodels`` packages are test-only oracles (the ``dev`` extra);
``quality`` itself depends on numpy alone.
"""

from __future__ import annotations

import math
import time

import krippendorff
import numpy as np
import pytest
from statsmodels.stats.inter_rater import cohens_kappa as sm_cohens_kappa
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from quality import (
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha_nominal,
    krippendorff_alpha_nominal_matrix,
)

NAN = np.nan

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, nominal values 1..5, missing values. Unit 12 has one value and is not pairable.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]


def _units(matrix: np.ndarray) -> list[list[float]]:
    """Coders x units matrix -> list of the values present in each unit."""
    return [[float(v) for v in column if not math.isnan(v)] for column in matrix.T]


def _random_reliability_data(
    seed: int, coders: int, units: int, categories: int, missing: float
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Codes are spread out (0, 7, 14, ...) to check that they need not be contiguous, and units
    # lean towards one category so that alpha is not always near 0.
    unit_bias = rng.integers(0, categories, size=units)
    agree = rng.random((coders, units)) < 0.6
    noise = rng.integers(0, categories, size=(coders, units))
    data = np.where(agree, unit_bias, noise).astype(np.float64) * 7
    data[rng.random(data.shape) < missing] = np.nan
    return data


# --- Krippendorff's alpha -------------------------------------------------------------------


def test_alpha_krippendorff_2011_worked_example() -> None:
    # The paper's arithmetic: n = 40 pairable values, n_c = (9, 13, 10, 5, 3) so
    # sum n_c^2 = 384, and sum_c o_cc = 32 (matching pairs), hence
    # alpha = 1 - (n - 1)(n - 32) / (n^2 - 384) = 1 - 39 * 8 / 1216 = 113/152 = 0.743.
    assert krippendorff_alpha_nominal_matrix(KRIPPENDORFF_2011) == pytest.approx(113 / 152)
    units = _units(np.array(KRIPPENDORFF_2011))
    assert krippendorff_alpha_nominal(units) == pytest.approx(113 / 152)
    assert round(113 / 152, 3) == 0.743  # the value printed in the paper


def test_alpha_tiny_hand_computed() -> None:
    # Units (a,a), (a,b), (b,b): n = 6, n_a = n_b = 3, so sum n_c^2 = 18.
    # Matching pairs: units 1 and 3 give 2 * 1 / (2 - 1) = 2 each, unit 2 gives 0 -> 4.
    # alpha = 1 - (6 - 1)(6 - 4) / (36 - 18) = 1 - 10/18 = 4/9.
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "b"], ["b", "b"]]) == pytest.approx(4 / 9)


@pytest.mark.parametrize(
    ("seed", "coders", "units", "categories", "missing"),
    [
        (0, 2, 50, 2, 0.0),
        (1, 3, 200, 3, 0.2),
        (2, 5, 300, 4, 0.4),
        (3, 10, 100, 7, 0.6),
        (4, 30, 40, 2, 0.8),
    ],
    ids=[
        "2-coders-binary-complete",
        "3-coders-20pct-missing",
        "5-coders-40pct-missing",
        "10-coders-7-classes-60pct-missing",
        "30-coders-80pct-missing",
    ],
)
def test_alpha_matches_krippendorff_package(
    seed: int, coders: int, units: int, categories: int, missing: float
) -> None:
    data = _random_reliability_data(seed, coders, units, categories, missing)
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert krippendorff_alpha_nominal_matrix(data) == pytest.approx(expected, abs=1e-9)
    assert krippendorff_alpha_nominal(_units(data)) == pytest.approx(expected, abs=1e-9)


def test_alpha_perfect_agreement_is_one() -> None:
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b", "b"], ["c"]]) == 1.0


def test_alpha_list_form_accepts_any_hashable() -> None:
    as_strings = [["cat", "cat", "dog"], ["dog", "dog"], ["cat", "dog"]]
    as_tuples = [[("c",), ("c",), ("d",)], [("d",), ("d",)], [("c",), ("d",)]]
    assert krippendorff_alpha_nominal(as_strings) == pytest.approx(
        krippendorff_alpha_nominal(as_tuples)
    )


@pytest.mark.parametrize(
    "units",
    [[["a", "a"], ["a", "a", "a"]], [["a"], ["b"], []], []],
    ids=["no-variation", "no-pairable-unit", "no-units"],
)
def test_alpha_undefined_is_nan(units: list[list[str]]) -> None:
    assert math.isnan(krippendorff_alpha_nominal(units))


def test_alpha_matrix_undefined_is_nan() -> None:
    assert math.isnan(krippendorff_alpha_nominal_matrix([[1, 1, NAN], [1, NAN, 2]]))
    assert math.isnan(krippendorff_alpha_nominal_matrix(np.full((3, 4), np.nan)))


def test_alpha_matrix_rejects_bad_shapes_and_values() -> None:
    with pytest.raises(ValueError, match="coders x units"):
        krippendorff_alpha_nominal_matrix([1.0, 2.0])
    with pytest.raises(ValueError, match="numeric"):
        krippendorff_alpha_nominal_matrix([["a", "b"], ["a", "b"]])


def test_alpha_matrix_is_fast_on_a_million_labels() -> None:
    data = _random_reliability_data(seed=7, coders=10, units=125_000, categories=5, missing=0.2)
    assert np.count_nonzero(~np.isnan(data)) == pytest.approx(1_000_000, rel=0.01)
    start = time.perf_counter()
    alpha = krippendorff_alpha_nominal_matrix(data)
    elapsed = time.perf_counter() - start
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert alpha == pytest.approx(expected, abs=1e-9)
    # Takes about 0.1 s on a laptop core; the bound is loose so that a loaded CI machine passes.
    assert elapsed < 5.0


# --- Fleiss' kappa --------------------------------------------------------------------------


def test_fleiss_wikipedia_example() -> None:
    # 10 subjects, 14 raters, 5 categories (the example on Wikipedia's "Fleiss' kappa" page):
    # P = 0.378, P_e = 0.213, kappa = 0.210.
    table = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-5)


def test_fleiss_tiny_hand_computed() -> None:
    # 2 units, 2 raters: (2, 0) and (1, 1). P_1 = 1, P_2 = 0 -> P = 1/2.
    # p = (3/4, 1/4) -> P_e = 9/16 + 1/16 = 5/8. kappa = (1/2 - 5/8) / (3/8) = -1/3.
    assert fleiss_kappa([[2, 0], [1, 1]]) == pytest.approx(-1 / 3)


@pytest.mark.parametrize(
    ("seed", "units", "categories", "raters"),
    [(0, 20, 2, 2), (1, 100, 3, 5), (2, 500, 6, 3), (3, 50, 4, 12)],
    ids=["binary-2-raters", "3-classes-5-raters", "6-classes-3-raters", "4-classes-12-raters"],
)
def test_fleiss_matches_statsmodels(seed: int, units: int, categories: int, raters: int) -> None:
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.full(categories, 0.5), size=units)
    table = np.array([rng.multinomial(raters, p) for p in probabilities])
    expected = sm_fleiss_kappa(table, method="fleiss")
    assert fleiss_kappa(table) == pytest.approx(expected, abs=1e-9)


def test_fleiss_perfect_agreement_is_one() -> None:
    assert fleiss_kappa([[3, 0], [0, 3], [3, 0]]) == pytest.approx(1.0)


def test_fleiss_single_category_is_nan() -> None:
    assert math.isnan(fleiss_kappa([[3, 0], [3, 0]]))


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ([[2, 1], [1, 1]], "same number of raters"),
        ([[1, 0], [0, 1]], "at least two raters"),
        ([[1.5, 0.5]], "non-negative integers"),
        ([[3, -1]], "non-negative integers"),
        ([1, 2], "units x categories"),
        (np.zeros((0, 3)), "units x categories"),
    ],
    ids=["unequal-raters", "one-rater", "fractional", "negative", "1d", "no-units"],
)
def test_fleiss_rejects_bad_tables(counts: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fleiss_kappa(counts)  # type: ignore[arg-type]


# --- Cohen's kappa --------------------------------------------------------------------------


def test_cohen_tiny_hand_computed() -> None:
    # Agreement on 3 of 4 -> p_o = 3/4. Rater a: y 1/2, n 1/2; rater b: y 1/4, n 3/4.
    # p_e = 1/2 * 1/4 + 1/2 * 3/4 = 1/2 -> kappa = (3/4 - 1/2) / (1/2) = 1/2.
    assert cohen_kappa(["y", "y", "n", "n"], ["y", "n", "n", "n"]) == pytest.approx(0.5)


def _manual_cohen(a: list[int], b: list[int]) -> float:
    """Textbook oracle written independently from the implementation: proportions, not counts."""
    n = len(a)
    labels = sorted(set(a) | set(b))
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    p_e = sum((a.count(c) / n) * (b.count(c) / n) for c in labels)
    return (p_o - p_e) / (1 - p_e)


@pytest.mark.parametrize(
    ("seed", "units", "categories"),
    [(0, 30, 2), (1, 200, 3), (2, 1000, 8)],
    ids=["binary", "3-classes", "8-classes"],
)
def test_cohen_matches_statsmodels_and_manual(seed: int, units: int, categories: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, categories, size=units)
    b = np.where(rng.random(units) < 0.5, a, rng.integers(0, categories, size=units))
    table = np.zeros((categories, categories))
    np.add.at(table, (a, b), 1)
    expected = float(sm_cohens_kappa(table).kappa)
    assert cohen_kappa(a.tolist(), b.tolist()) == pytest.approx(expected, abs=1e-9)
    assert cohen_kappa(a.tolist(), b.tolist()) == pytest.approx(
        _manual_cohen(a.tolist(), b.tolist()), abs=1e-12
    )


def test_cohen_perfect_and_opposite() -> None:
    assert cohen_kappa(["x", "y", "x"], ["x", "y", "x"]) == 1.0
    assert cohen_kappa(["x", "y"], ["y", "x"]) == -1.0


def test_cohen_constant_raters_is_nan() -> None:
    assert math.isnan(cohen_kappa(["x", "x"], ["x", "x"]))


def test_cohen_rejects_misaligned_or_empty() -> None:
    with pytest.raises(ValueError, match="aligned"):
        cohen_kappa(["x"], ["x", "y"])
    with pytest.raises(ValueError, match="at least one"):
        cohen_kappa([], [])
