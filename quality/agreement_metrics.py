"""Campaign-level inter-annotator agreement for nominal (classification) labels.

* `krippendorff_alpha_nominal` / `krippendorff_alpha_nominal_matrix`: any number of coders,
  missing values allowed. The metric to report for a crowd campaign, where each item is seen by a
  different subset of annotators.
* `fleiss_kappa`: every unit rated by the same number of raters (not necessarily the same ones).
* `cohen_kappa`: exactly two raters who rated the same units.

All three are chance-corrected: 1 is perfect agreement, 0 is what independent random labelling
with the observed label frequencies would give, negative is systematic disagreement. Each returns
``nan`` where the coefficient is undefined because the data show no variation at all (every
value in one category), rather than raising: "undefined" is a legitimate state of a campaign
early on, and a dashboard can show it as such.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "cohen_kappa",
    "fleiss_kappa",
    "krippendorff_alpha_nominal",
    "krippendorff_alpha_nominal_matrix",
]


def _alpha_nominal_from_codes(
    unit_index: NDArray[np.int64],
    category_index: NDArray[np.int64],
    n_units: int,
    n_categories: int,
) -> float:
    """Nominal alpha from one (unit, category) code pair per value; see the public functions."""
    values_per_unit = np.bincount(unit_index, minlength=n_units)
    pairable = values_per_unit[unit_index] >= 2
    unit_index = unit_index[pairable]
    category_index = category_index[pairable]
    if unit_index.size == 0:
        return float("nan")
    # n_uc for the (unit, category) cells that occur. A sparse group-by via np.unique rather than
    # a dense units x categories table, so memory stays O(values) whatever the number of classes.
    cells, n_uc = np.unique(unit_index * n_categories + category_index, return_counts=True)
    m_u = values_per_unit[cells // n_categories]
    # Sum of the coincidence matrix diagonal: sum_c o_cc = sum_u sum_c n_uc (n_uc - 1) / (m_u - 1).
    matching_pairs = float(np.sum(n_uc * (n_uc - 1) / (m_u - 1)))
    # Coincidence matrix margins n_c: how often each category was used in pairable units.
    n_c = np.bincount(category_index, minlength=n_categories)
    # Python ints: n^2 - sum n_c^2 is exact (no float cancellation when nearly all agree).
    n = int(n_c.sum())
    expected_mismatches = n * n - int(np.dot(n_c, n_c))
    if expected_mismatches == 0:
        return float("nan")
    return 1.0 - (n - 1) * (n - matching_pairs) / expected_mismatches


def krippendorff_alpha_nominal(units: Sequence[Sequence[Hashable]]) -> float:
    """Krippendorff's alpha for nominal data, from a list of units.

    Each unit is the list of the values its coders gave it; a coder who did not code the unit is
    simply absent. Values are any hashables, compared with ``==`` (so ``1`` and ``1.0`` are the
    same category; ``None`` or ``nan`` are not treated as missing here). Units with fewer than two
    values cannot be paired and are dropped, as the method prescribes.

    With ``n_uc`` the number of values ``c`` in unit ``u`` and ``m_u = sum_c n_uc`` (only units
    with ``m_u >= 2``), the coincidence matrix is

        o_ck = sum_u (n_uc n_uk - [c = k] n_uc) / (m_u - 1),
        n_c = sum_k o_ck,   n = sum_c n_c,

    and for the nominal metric (disagreement 1 between different categories, 0 otherwise)

        alpha = 1 - D_o / D_e = 1 - (n - 1) (n - sum_c o_cc) / (n^2 - sum_c n_c^2).

    Only the diagonal and the margins of the coincidence matrix enter the nominal formula, so
    those are computed directly (vectorized, one sort over the values) and the full matrix is
    never built.

    Reference: K. Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability",
    University of Pennsylvania, https://repository.upenn.edu/asc_papers/43 (section C, nominal).

    Returns:
        alpha (1 is perfect agreement, 0 chance level), or ``nan`` when it is undefined: no
        pairable unit, or every pairable value in one category (expected disagreement 0).
    """
    lengths = np.fromiter((len(unit) for unit in units), dtype=np.int64, count=len(units))
    codes: dict[Hashable, int] = {}
    category_index = np.fromiter(
        (codes.setdefault(value, len(codes)) for unit in units for value in unit),
        dtype=np.int64,
        count=int(lengths.sum()),
    )
    unit_index = np.repeat(np.arange(len(units), dtype=np.int64), lengths)
    return _alpha_nominal_from_codes(unit_index, category_index, len(units), len(codes))


def krippendorff_alpha_nominal_matrix(data: ArrayLike) -> float:
    """Krippendorff's alpha for nominal data, from a dense coders x units matrix.

    ``data[i, u]`` is the category code coder ``i`` gave unit ``u``, or ``np.nan`` when coder
    ``i`` did not code unit ``u``. This is the layout of the ``krippendorff`` package's
    ``reliability_data``. Codes are numbers compared exactly; they need not be contiguous.

    Same formula as `krippendorff_alpha_nominal` (Krippendorff 2011), without any Python loop
    over units: a million labels take well under a second.

    Raises:
        ValueError: ``data`` is not two-dimensional or not numeric.

    Returns:
        alpha, or ``nan`` when undefined (no unit with two values, or no variation at all).
    """
    try:
        matrix = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"data must be numeric category codes with nan for missing: {error}"
        ) from error
    if matrix.ndim != 2:
        raise ValueError(f"data must be a coders x units matrix, got shape {matrix.shape}")
    present = ~np.isnan(matrix)
    # Row-major nonzero: the same order as matrix[present], so indices and values stay aligned.
    _, unit_index = np.nonzero(present)
    categories, category_index = np.unique(matrix[present], return_inverse=True)
    return _alpha_nominal_from_codes(
        unit_index.astype(np.int64, copy=False),
        category_index.reshape(-1).astype(np.int64, copy=False),
        matrix.shape[1],
        len(categories),
    )


def fleiss_kappa(counts: ArrayLike) -> float:
    """Fleiss' kappa for a fixed number of raters per unit.

    ``counts[i, j]`` is the number of raters who put unit ``i`` in category ``j``; every row must
    sum to the same number of raters ``n >= 2``. With ``N`` units,

        p_j = sum_i n_ij / (N n),                      (share of all ratings in category j)
        P_i = (sum_j n_ij^2 - n) / (n (n - 1)),        (agreeing rater pairs in unit i)
        P = mean_i P_i,   P_e = sum_j p_j^2,
        kappa = (P - P_e) / (1 - P_e).

    Reference: J. L. Fleiss (1971), "Measuring nominal scale agreement among many raters",
    Psychological Bulletin 76(5), 378-382.

    Raises:
        ValueError: not a non-empty 2-D table of non-negative integer counts, fewer than two
            raters per unit, or rows with different totals.

    Returns:
        kappa (at most 1), or ``nan`` when every rating is in one category (``P_e = 1``).
    """
    table = np.asarray(counts, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] == 0 or table.shape[1] == 0:
        raise ValueError(f"counts must be a non-empty units x categories table, got {table.shape}")
    if not np.all(np.isfinite(table)) or np.any(table < 0) or np.any(table != np.round(table)):
        raise ValueError("counts must be non-negative integers")
    raters = table.sum(axis=1)
    n = float(raters[0])
    if np.any(raters != n):
        raise ValueError(
            "every unit must be rated by the same number of raters, got between "
            f"{int(raters.min())} and {int(raters.max())}; use Krippendorff's alpha instead"
        )
    if n < 2:
        raise ValueError(f"every unit needs at least two raters, got {int(n)}")
    category_totals = table.sum(axis=0)
    if np.count_nonzero(category_totals) <= 1:
        return float("nan")
    p_j = category_totals / (table.shape[0] * n)
    p_i = (np.sum(table * table, axis=1) - n) / (n * (n - 1))
    p_bar = float(p_i.mean())
    p_e = float(np.dot(p_j, p_j))
    return (p_bar - p_e) / (1.0 - p_e)


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa between two raters' labels of the same units.

    ``a[i]`` and ``b[i]`` are the two raters' labels of unit ``i``. With ``N`` units, ``p_o`` the
    share of units where they agree, and ``p_a(c)``, ``p_b(c)`` each rater's share of label
    ``c``,

        p_e = sum_c p_a(c) p_b(c),     kappa = (p_o - p_e) / (1 - p_e).

    It is computed from integer counts, ``(N * agreements - S) / (N^2 - S)`` with
    ``S = sum_c count_a(c) count_b(c)``, so it is exact up to the final division.

    Reference: J. Cohen (1960), "A coefficient of agreement for nominal scales", Educational and
    Psychological Measurement 20(1), 37-46.

    Raises:
        ValueError: the sequences are empty or of different lengths.

    Returns:
        kappa in [-1, 1], or ``nan`` when both raters used one and the same label throughout
        (``p_e = 1``).
    """
    if len(a) != len(b):
        raise ValueError(f"a and b must be aligned, got lengths {len(a)} and {len(b)}")
    if len(a) == 0:
        raise ValueError("cohen_kappa needs at least one unit")
    codes: dict[Hashable, int] = {}
    codes_a = np.fromiter((codes.setdefault(x, len(codes)) for x in a), np.int64, count=len(a))
    codes_b = np.fromiter((codes.setdefault(x, len(codes)) for x in b), np.int64, count=len(b))
    n_categories = len(codes)
    count_a = np.bincount(codes_a, minlength=n_categories)
    count_b = np.bincount(codes_b, minlength=n_categories)
    n = len(a)
    agreements = int(np.count_nonzero(codes_a == codes_b))
    chance = int(np.dot(count_a, count_b))
    denominator = n * n - chance
    if denominator == 0:
        return float("nan")
    return (n * agreements - chance) / denominator
