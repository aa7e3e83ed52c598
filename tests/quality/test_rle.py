"""COCO RLE in numpy (`quality.rle`) against pycocotools, the reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as coco

from quality.rle import (
    counts_from_string,
    counts_to_string,
    rle_area,
    rle_bbox,
    rle_decode,
    rle_encode,
    rle_intersection,
    rle_iou,
)

# pycocotools' decode trips numpy 2's __array__ copy deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _coco(mask: np.ndarray) -> dict[str, object]:
    return coco.encode(np.asfortranarray(mask.astype(np.uint8)))


def _masks() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = [
        np.zeros((4, 5), dtype=bool),
        np.ones((4, 5), dtype=bool),
        np.eye(6, dtype=bool),
        np.array([[1, 0, 0], [0, 0, 1]], dtype=bool),  # first pixel set: counts start with 0
        np.ones((1, 1), dtype=bool),
    ]
    for shape, density in [((30, 40), 0.5), ((64, 48), 0.05), ((17, 3), 0.9), ((200, 150), 0.3)]:
        out.append(rng.random(shape) < density)
    # Blobs: long runs, so string counts have large values and negative differences.
    yy, xx = np.mgrid[0:300, 0:400]
    out.append((xx - 150) ** 2 + (yy - 120) ** 2 < 90**2)
    out.append(((xx - 300) ** 2 + (yy - 200) ** 2 < 60**2) | (xx < 20))
    return out


MASKS = _masks()
IDS = [f"{m.shape[0]}x{m.shape[1]}-{i}" for i, m in enumerate(MASKS)]


@pytest.mark.parametrize("mask", MASKS, ids=IDS)
def test_encode_matches_pycocotools(mask: np.ndarray) -> None:
    ours = rle_encode(mask)
    theirs = _coco(mask)
    assert ours["size"] == list(theirs["size"])
    assert counts_to_string(ours["counts"]) == theirs["counts"].decode("ascii")
    assert counts_from_string(theirs["counts"].decode("ascii")) == ours["counts"]
    # pycocotools' own conversion of the uncompressed form gives the same string.
    h, w = mask.shape
    assert (
        coco.frPyObjects({"size": [h, w], "counts": ours["counts"]}, h, w)["counts"]
        == (theirs["counts"])
    )


@pytest.mark.parametrize("mask", MASKS, ids=IDS)
def test_decode_round_trips_both_forms(mask: np.ndarray) -> None:
    theirs = _coco(mask)
    as_string = {"size": list(theirs["size"]), "counts": theirs["counts"].decode("ascii")}
    np.testing.assert_array_equal(rle_decode(as_string), mask)
    np.testing.assert_array_equal(rle_decode(rle_encode(mask)), mask)
    np.testing.assert_array_equal(coco.decode(theirs).astype(bool), rle_decode(as_string))


@pytest.mark.parametrize("mask", MASKS, ids=IDS)
def test_area_and_bbox_match_pycocotools(mask: np.ndarray) -> None:
    theirs = _coco(mask)
    ours = rle_encode(mask)
    assert rle_area(ours) == int(coco.area(theirs))
    assert rle_bbox(ours) == tuple(int(v) for v in coco.toBbox(theirs))


def test_iou_matches_pycocotools() -> None:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:120, 0:90]
    for _ in range(25):
        a = (xx - rng.uniform(0, 90)) ** 2 + (yy - rng.uniform(0, 120)) ** 2 < rng.uniform(
            5, 40
        ) ** 2
        b = (xx - rng.uniform(0, 90)) ** 2 + (yy - rng.uniform(0, 120)) ** 2 < rng.uniform(
            5, 40
        ) ** 2
        b |= rng.random(b.shape) < 0.02
        if not a.any() or not b.any():
            continue
        ca, cb = _coco(a), _coco(b)
        expected = float(coco.iou([ca], [cb], [0])[0, 0])
        assert rle_iou(rle_encode(a), rle_encode(b)) == pytest.approx(expected, abs=1e-12)
        assert rle_intersection(rle_encode(a), rle_encode(b)) == int(np.count_nonzero(a & b))


def test_iou_of_two_empty_masks_is_identity() -> None:
    empty = rle_encode(np.zeros((3, 3), dtype=bool))
    assert rle_iou(empty, empty) == 1.0


def test_iou_with_runs_that_touch() -> None:
    # a = pixels 0..3, b = pixels 4..7 of a 1x8 column: adjacent, no overlap.
    a = {"size": [8, 1], "counts": [0, 4, 4]}
    b = {"size": [8, 1], "counts": [4, 4]}
    assert rle_intersection(a, b) == 0
    assert rle_iou(a, b) == 0.0
    # Zero-length runs in the middle are allowed and change nothing.
    c = {"size": [8, 1], "counts": [0, 2, 0, 2, 4]}
    assert rle_iou(a, c) == 1.0


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ({"size": [2, 2], "counts": [1, 2]}, "add up to 3"),
        ({"size": [2, 2], "counts": [5, -1]}, "negative"),
        ({"counts": [4]}, "size"),
        ({"size": [2, 2]}, "counts"),
        ({"size": [2, 2], "counts": "\x01"}, "invalid character"),
    ],
    ids=["short", "negative", "no-size", "no-counts", "bad-string"],
)
def test_malformed_rle_is_refused(rle: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rle_decode(rle)


def test_intersection_of_different_sizes_is_refused() -> None:
    with pytest.raises(ValueError, match="different sizes"):
        rle_iou({"size": [2, 2], "counts": [4]}, {"size": [1, 4], "counts": [4]})
