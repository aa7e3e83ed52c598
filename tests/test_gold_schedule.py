"""Where gold tasks fall in an annotator's queue (services/gold.py ``gold_is_due``), and which
gold item comes next (``next_gold``).

One gold task in every block of about ``1 / rate`` tasks, at a place an annotator cannot work
out by counting: not always the block's last task, and not the same place for everyone. The
gold items come in an order of each annotator's own.
"""

from __future__ import annotations

import math

import pytest

from services.gold import gold_is_due, gold_salt, next_gold

RATES = [
    pytest.param(0.5, id="every-2nd"),
    pytest.param(1 / 3, id="every-3rd"),
    pytest.param(0.3, id="uneven-blocks"),
    pytest.param(0.2, id="every-5th"),
    pytest.param(0.1, id="every-10th"),
]


def schedule(rate: float, salt: str, tasks: int = 1000) -> list[int]:
    """The task numbers (from 0) that are gold."""
    return [n for n in range(tasks) if gold_is_due(rate, n, salt)]


def block_start(rate: float, k: int) -> int:
    return math.floor(k / rate + 1e-9)


def block_of(rate: float, n: int) -> int:
    return max(k for k in range(n + 1) if block_start(rate, k) <= n)


SALTS = [f"cmp_x/2026-01-01T00:00:00.123456/ann_{n}" for n in range(40)]


@pytest.mark.parametrize("rate", RATES)
def test_every_block_holds_exactly_one_gold_task(rate: float) -> None:
    for salt in SALTS[:5]:
        gold = schedule(rate, salt)
        assert [block_of(rate, n) for n in gold] == list(range(len(gold))), "one per block"
        assert block_start(rate, len(gold)) >= 1000 - round(1 / rate)
        for n in (1, 7, 10, 99, 1000):
            count = sum(1 for g in gold if g < n)
            assert math.floor(n * rate + 1e-9) <= count <= math.floor(n * rate + 1e-9) + 1


@pytest.mark.parametrize("rate", RATES)
def test_the_place_in_a_block_cannot_be_counted_on(rate: float) -> None:
    offsets = [n - block_start(rate, block_of(rate, n)) for n in schedule(rate, SALTS[0])]
    assert len(set(offsets)) > 1, "the same place in every block"
    firsts = {schedule(rate, salt, tasks=20)[0] for salt in SALTS}
    assert len(firsts) > 1, "everyone's first gold task at the same place"
    assert schedule(rate, SALTS[0]) == schedule(rate, SALTS[0]), "one salt, one plan"


def test_a_rate_out_of_range_is_refused() -> None:
    for rate in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="gold rate"):
            gold_is_due(rate, 3)


def gold_order(salt: str, items: list[str]) -> list[str]:
    """Every gold item, in the order ``next_gold`` hands them to one annotator."""
    left, order = set(items), []
    while (chosen := next_gold(sorted(left), salt)) is not None:
        order.append(chosen)
        left.remove(chosen)
    return order


def test_each_annotator_gets_the_gold_items_in_an_order_of_their_own() -> None:
    items = [f"cmp_x-{100 + n}" for n in range(8)]
    orders = [gold_order(salt, items) for salt in SALTS]
    assert all(sorted(order) == items for order in orders), "every item, once"
    assert len({tuple(order) for order in orders}) > len(SALTS) // 2
    assert len({order[0] for order in orders}) > 3, "the same first gold item for everyone"
    assert gold_order(SALTS[0], items) == gold_order(SALTS[0], list(reversed(items)))
    assert next_gold([], SALTS[0]) is None


def test_the_salt_is_the_campaign_secret_or_for_older_campaigns_the_creation_time() -> None:
    created = "2026-01-01T00:00:00+00:00"
    assert gold_salt("cmp_x", "s3cret", created, "ann_a") == "cmp_x/s3cret/ann_a"
    assert gold_salt("cmp_x", None, created, "ann_a") == f"cmp_x/{created}/ann_a"
