"""Campaign metrics against the reference implementations, to 1e-9.

The ``krippendorff`` and ``statsmodels`` packages are test-only oracles (the ``dev`` extra).
Geometry alpha is checked by handing the ``krippendorff`` package the same units with a
distance matrix computed pair by pair with `quality.similarity`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import krippendorff
import numpy as np
import pytest
from statsmodels.stats.inter_rater import cohens_kappa as sm_cohens_kappa

import quality.campaign_metrics as campaign_metrics
from quality import (
    Annotation,
    CampaignItem,
    ClassSpec,
    GeometryAlpha,
    ResponseObjects,
    annotator_consensus_agreement,
    cohen_kappa,
    cohen_kappa_matrix,
    geometry_alpha,
    geometry_units,
    krippendorff_alpha,
    rle_encode,
    similarity,
)

NAN = np.nan
METRICS = ("nominal", "ordinal", "interval", "ratio")

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C.
KRIPPENDORFF_2011 = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
        [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
    ]
)


def _random_data(
    seed: int, coders: int, units: int, values: np.ndarray, missing: float
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, values.size, size=units)
    agree = rng.random((coders, units)) < 0.6
    noise = rng.integers(0, values.size, size=(coders, units))
    data = values[np.where(agree, truth, noise)].astype(np.float64)
    data[rng.random(data.shape) < missing] = np.nan
    return data


DATASETS = {
    "krippendorff-2011": KRIPPENDORFF_2011,
    "small-integers": _random_data(1, 5, 300, np.arange(5), 0.2),
    "sparse-codes": _random_data(2, 4, 200, np.array([0.0, 7.0, 14.0, 70.0]), 0.3),
    "non-integer": _random_data(3, 6, 150, np.array([0.5, 1.25, 2.0, 3.75]), 0.1),
    "many-values": _random_data(4, 3, 400, np.arange(100) * 1.0, 0.1),
    "negative": _random_data(5, 3, 100, np.array([-3.0, -1.0, 2.0]), 0.0),
    "one-pairable-unit": np.array([[1, 2, NAN], [2, NAN, 3]], dtype=float),
}


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("data", DATASETS.values(), ids=DATASETS.keys())
def test_alpha_matches_krippendorff_package(data: np.ndarray, metric: str) -> None:
    if metric == "ratio" and np.nanmin(data) < 0:
        pytest.skip("the ratio metric is for non-negative values")
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement=metric)
    assert krippendorff_alpha(data, metric=metric) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("metric", METRICS)
def test_alpha_sparse_path_matches(metric: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Force the general path: no per-value comparison, sparse (unit, value) cells.
    monkeypatch.setattr(campaign_metrics, "_FEW_VALUES", 0)
    monkeypatch.setattr(campaign_metrics, "_DENSE_CELLS", 0)
    for data in DATASETS.values():
        expected = krippendorff.alpha(reliability_data=data, level_of_measurement=metric)
        if metric == "ratio" and np.nanmin(data) < 0:
            continue
        assert krippendorff_alpha(data, metric=metric) == pytest.approx(expected, abs=1e-9)


def test_alpha_worked_example() -> None:
    # The paper's nominal alpha for this example is 0.743.
    assert krippendorff_alpha(KRIPPENDORFF_2011) == pytest.approx(0.7434, abs=5e-5)


def test_alpha_with_a_value_domain_and_a_distance_matrix() -> None:
    data = _random_data(6, 4, 120, np.arange(4), 0.2)
    domain = np.array([3.0, 2.0, 1.0, 0.0, 9.0])  # unordered, with an unused value
    rng = np.random.default_rng(0)
    distance = rng.random((5, 5))
    distance = (distance + distance.T) / 2
    np.fill_diagonal(distance, 0.0)

    def metric(v1: Any, v2: Any, i1: Any, i2: Any, n_v: Any, dtype: Any = np.float64) -> Any:
        return distance[i1, i2]

    expected = krippendorff.alpha(
        reliability_data=data, value_domain=domain, level_of_measurement=metric
    )
    assert krippendorff_alpha(data, metric=distance, value_domain=domain) == pytest.approx(
        expected, abs=1e-9
    )


def test_alpha_undefined_and_refused() -> None:
    assert math.isnan(krippendorff_alpha([[1, 1, 1], [1, 1, 1]]))  # no variation
    assert math.isnan(krippendorff_alpha([[1, NAN], [NAN, 2]]))  # no pairable unit
    with pytest.raises(ValueError, match="coders x units"):
        krippendorff_alpha([1, 2, 3])
    with pytest.raises(ValueError, match="not in value_domain"):
        krippendorff_alpha([[1, 2], [1, 3]], value_domain=[1, 2])
    with pytest.raises(ValueError, match="unknown metric"):
        krippendorff_alpha([[1, 2], [1, 3]], metric="cosine")


# --- geometry alpha --------------------------------------------------------------------------

CLASSES = {
    "car": ClassSpec("car", "box"),
    "bus": ClassSpec("bus", "box"),
    "lake": ClassSpec("lake", "polygon"),
    "road": ClassSpec("road", "polyline"),
    "face": ClassSpec("face", "keypoints", sigmas=(0.05, 0.08, 0.1)),
    "sky": ClassSpec("sky", "mask"),
    "cat": ClassSpec("cat", "tag"),
}
W, H = 64, 48


def _truth_object(rng: np.random.Generator, label: str) -> dict[str, Any]:
    x, y = rng.uniform(5, 40), rng.uniform(5, 30)
    geometry = CLASSES[label].geometry
    if geometry == "box":
        return {
            "x": x,
            "y": y,
            "w": rng.uniform(5, 20),
            "h": rng.uniform(5, 15),
            "angle": float(rng.choice([0.0, 0.0, 30.0])),
        }
    if geometry == "polygon":
        r = rng.uniform(4, 10)
        t = np.sort(rng.uniform(0, 2 * np.pi, 6))
        return {"points": np.column_stack((x + r * np.cos(t), y + r * np.sin(t))).tolist()}
    if geometry == "polyline":
        return {"points": [[x, y], [x + 10, y + rng.uniform(-5, 5)], [x + 20, y]]}
    if geometry == "keypoints":
        return {"points": [[x, y, 2], [x + 8, y, 2], [x + 4, y + 6, 1]]}
    if geometry == "mask":
        yy, xx = np.mgrid[0:H, 0:W]
        return {"r": rng.uniform(4, 10), "cx": x, "cy": y, "_": (yy, xx)}
    return {}


def _noisy(rng: np.random.Generator, label: str, truth: dict[str, Any]) -> dict[str, Any]:
    geometry = CLASSES[label].geometry
    if geometry == "box":
        return {k: (v + rng.normal(0, 1.5) if k != "angle" else v) for k, v in truth.items()}
    if geometry in ("polygon", "polyline"):
        pts = np.asarray(truth["points"]) + rng.normal(0, 1.0, (len(truth["points"]), 2))
        return {"points": pts.tolist()}
    if geometry == "keypoints":
        return {
            "points": [
                [x + rng.normal(0, 1), y + rng.normal(0, 1), v if rng.random() > 0.1 else 0]
                for x, y, v in truth["points"]
            ]
        }
    if geometry == "mask":
        yy, xx = truth["_"]
        disc = (xx - truth["cx"] - rng.normal(0, 1)) ** 2 + (yy - truth["cy"]) ** 2 < (
            truth["r"] + rng.normal(0, 1)
        ) ** 2
        return {"rle": rle_encode(disc)}
    return {}


def _shift(label: str, data: dict[str, Any], dx: float) -> dict[str, Any]:
    geometry = CLASSES[label].geometry
    if geometry == "box":
        return {**data, "x": data["x"] + dx}
    if geometry in ("polygon", "polyline", "keypoints"):
        return {"points": [[p[0] + dx, *p[1:]] for p in data["points"]]}
    return data


def _campaign(seed: int, n_items: int = 12, spread: float = 0.0) -> list[CampaignItem]:
    """Items of noisy annotators; ``spread`` moves item i's objects ``i * spread`` px right, so
    that objects of different items are far apart (masks stay)."""
    rng = np.random.default_rng(seed)
    items = []
    for item in range(n_items):
        labels = list(rng.choice(list(CLASSES), size=3))
        truths = [(label, _truth_object(rng, label)) for label in labels]
        n_responses = int(rng.choice([1, 2, 3, 3]))
        responses = []
        for r in range(n_responses):
            rid = f"i{item}r{r}"
            drawn = [(label, _noisy(rng, label, t)) for label, t in truths if rng.random() > 0.2]
            if rng.random() < 0.2:
                label = str(rng.choice(["car", "bus"]))
                drawn.append((label, _noisy(rng, label, _truth_object(rng, label))))
            drawn = [(label, _shift(label, data, item * spread)) for label, data in drawn]
            objects = [
                Annotation(rid, f"a{r}", k, label, CLASSES[label].geometry, data, {})
                for k, (label, data) in enumerate(drawn)
            ]
            responses.append(ResponseObjects(rid, f"a{r}", objects))
        items.append(CampaignItem(responses, image_size=(W, H)))
    return items


def _oracle_alpha(items: list[CampaignItem]) -> float:
    units = geometry_units(items, CLASSES)
    values: list[Annotation] = []
    rows = max(len(u.values) for u in units)
    codes = np.full((rows, len(units)), np.nan)
    for u, unit in enumerate(units):
        for r, value in enumerate(unit.values):
            if value is not None:
                codes[r, u] = len(values)
                values.append(value)
    nothing = len(values)
    codes[np.isnan(codes) & (np.arange(rows)[:, None] < [len(u.values) for u in units])] = nothing
    k = nothing + 1
    distance = np.ones((k, k))
    distance[nothing, nothing] = 0.0
    for i, j in itertools.product(range(nothing), repeat=2):
        a, b = values[i], values[j]
        if a.label == b.label:
            distance[i, j] = 1.0 - similarity(a, b, CLASSES[a.label], image_size=(W, H))

    def metric(v1: Any, v2: Any, i1: Any, i2: Any, n_v: Any, dtype: Any = np.float64) -> Any:
        return distance[i1, i2]

    return float(
        krippendorff.alpha(
            reliability_data=codes, value_domain=np.arange(k), level_of_measurement=metric
        )
    )


@pytest.mark.parametrize(("seed", "spread"), [(0, 0.0), (1, 0.0), (2, 0.0), (3, 40.0), (4, 400.0)])
def test_geometry_alpha_matches_krippendorff_package(seed: int, spread: float) -> None:
    # With spread, most pairs across items are ruled out by the R-tree of bounding boxes.
    items = _campaign(seed, spread=spread)
    assert geometry_alpha(items, CLASSES) == pytest.approx(_oracle_alpha(items), abs=1e-9)


@pytest.mark.parametrize("seed", [0, 3])
def test_geometry_alpha_in_batches_equals_alpha_of_all(seed: int) -> None:
    # The publish reads a campaign in chunks; its alpha must not depend on the chunking.
    items = _campaign(seed, n_items=15, spread=40.0 * seed)
    alpha = GeometryAlpha(CLASSES)
    for start, stop in ((0, 1), (1, 7), (7, 7), (7, 15)):
        alpha.add(items[start:stop])
    assert alpha.value() == pytest.approx(geometry_alpha(items, CLASSES), abs=1e-12)
    assert alpha.value() == pytest.approx(_oracle_alpha(items), abs=1e-9)
    assert math.isnan(GeometryAlpha(CLASSES).value())


def test_geometry_alpha_by_hand() -> None:
    def item(n: int, *boxes: dict[str, float] | None) -> CampaignItem:
        responses = []
        for r, b in enumerate(boxes):
            rid = f"{n}-{r}"
            objects = [] if b is None else [Annotation(rid, f"a{r}", 0, "car", "box", b, {})]
            responses.append(ResponseObjects(rid, f"a{r}", objects))
        return CampaignItem(responses)

    same = {"x": 0, "y": 0, "w": 10, "h": 10}
    far = {"x": 100, "y": 100, "w": 10, "h": 10}
    # Two units, each seen identically by both: no observed disagreement.
    assert geometry_alpha([item(0, same, same), item(1, far, far)], CLASSES) == 1.0
    # One box seen by one of two, one box seen by both: values {b, nothing} and {b', b''}.
    # n = 4, D_o = (2 x 1 / 1 + 0) / 4; all pairs: 12 ordered, of which b'-b'' (2) and
    # b'-b, b''-b (4 more, IoU 1 as they are the same box) are similar: D_e = (12 - 6) / 12.
    got = geometry_alpha([item(0, same, None), item(1, same, same)], CLASSES)
    assert got == pytest.approx(1 - (2 / 4) / (6 / 12))
    assert math.isnan(geometry_alpha([item(0, same)], CLASSES))  # one response: nothing pairs


# --- Cohen's kappa matrix --------------------------------------------------------------------


def _answers(seed: int) -> tuple[list[int], list[str], list[str]]:
    rng = np.random.default_rng(seed)
    tasks, workers, labels = [], [], []
    for task in range(300):
        truth = rng.integers(0, 3)
        for worker in rng.choice(6, size=int(rng.integers(1, 4)), replace=False):
            skill = 0.5 + 0.08 * worker
            label = truth if rng.random() < skill else rng.integers(0, 3)
            tasks.append(task)
            workers.append(f"w{worker}")
            labels.append("abc"[label])
    # w9 shares exactly one task with w0: kappa needs at least two.
    tasks += [0, 1000]
    workers += ["w9", "w9"]
    labels += ["a", "b"]
    return tasks, workers, labels


def test_cohen_kappa_matrix_matches_statsmodels() -> None:
    tasks, workers, labels = _answers(11)
    result = cohen_kappa_matrix(tasks, workers, labels)
    assert result.annotators == tuple(sorted(set(workers)))
    by_worker: dict[str, dict[int, str]] = {}
    for t, w, x in zip(tasks, workers, labels, strict=True):
        by_worker.setdefault(w, {})[t] = x
    for i, a in enumerate(result.annotators):
        assert math.isnan(result.kappa[i, i])
        for j, b in enumerate(result.annotators):
            if i == j:
                continue
            shared = sorted(by_worker[a].keys() & by_worker[b].keys())
            assert result.shared[i, j] == len(shared)
            if len(shared) < 2:
                assert math.isnan(result.kappa[i, j])
                continue
            xa = [by_worker[a][t] for t in shared]
            xb = [by_worker[b][t] for t in shared]
            table = np.zeros((3, 3))
            for p, q in zip(xa, xb, strict=True):
                table["abc".index(p), "abc".index(q)] += 1
            expected = sm_cohens_kappa(table, return_results=False)
            assert result.kappa[i, j] == pytest.approx(expected, abs=1e-9)
            assert result.kappa[i, j] == pytest.approx(cohen_kappa(xa, xb), abs=1e-12)


def test_cohen_kappa_matrix_refuses_duplicates() -> None:
    with pytest.raises(ValueError, match="twice"):
        cohen_kappa_matrix([1, 1], ["w", "w"], ["a", "b"])


def test_cohen_kappa_matrix_one_label_throughout_is_undefined() -> None:
    result = cohen_kappa_matrix([1, 1, 2, 2], ["u", "v", "u", "v"], ["a", "a", "a", "a"])
    assert math.isnan(result.kappa[0, 1])
    assert result.shared[0, 1] == 2


# --- agreement with the consensus ------------------------------------------------------------


def test_annotator_consensus_agreement_by_hand() -> None:
    tags = {"cat": ClassSpec("cat", "tag"), "dog": ClassSpec("dog", "tag")}

    def item(n: int, *labels: str) -> CampaignItem:
        return CampaignItem(
            [
                ResponseObjects(
                    f"{n}-{r}", f"a{r}", [Annotation(f"{n}-{r}", f"a{r}", 0, label, "tag", {}, {})]
                )
                for r, label in enumerate(labels)
            ]
        )

    items = [
        item(0, "cat", "cat", "dog"),
        item(1, "dog", "dog", "dog"),
        item(2, "cat", "dog", "dog"),
    ]
    got = annotator_consensus_agreement(items, tags)
    # Consensus cat, dog, dog: a0 agrees 2 of 3, a1 3 of 3, a2 2 of 3.
    assert {a: (s.mean, s.items) for a, s in got.items()} == {
        "a0": (pytest.approx(2 / 3), 3),
        "a1": (1.0, 3),
        "a2": (pytest.approx(2 / 3), 3),
    }


def test_annotator_consensus_agreement_on_boxes() -> None:
    items = _campaign(5)
    got = annotator_consensus_agreement(items, CLASSES)
    assert set(got) <= {"a0", "a1", "a2"}
    assert all(0.0 <= s.mean <= 1.0 and s.items > 0 for s in got.values())
