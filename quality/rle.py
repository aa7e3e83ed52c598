"""COCO run-length encoding (RLE) of binary masks, in numpy, compatible with pycocotools.

A mask of ``height x width`` pixels is flattened in column-major (Fortran) order, i.e. down the
first column, then down the second, and so on, and stored as the lengths of its alternating
runs, starting with a run of zeros (of length 0 when the first pixel is set):
``{"size": [height, width], "counts": [z0, o0, z1, o1, ...]}``. pycocotools' compact form
stores the same counts as a string (`counts_to_string`).

Areas, intersections and IoU are computed on the runs themselves, without decoding to pixels:
the cost is linear in the number of runs, not in the number of pixels.

Reference: T.-Y. Lin et al. (2014), "Microsoft COCO: Common Objects in Context", and
pycocotools ``maskApi.c`` (``rleEncode``, ``rleToString``, ``rleFrString``, ``rleArea``,
``rleIou``, ``rleToBbox``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "counts_from_string",
    "counts_to_string",
    "rle_area",
    "rle_bbox",
    "rle_decode",
    "rle_encode",
    "rle_intersection",
    "rle_iou",
    "rle_size",
    "rle_to_runs",
    "runs_bbox",
    "runs_iou",
]


def counts_to_string(counts: Sequence[int] | NDArray[np.int64]) -> str:
    """pycocotools' compressed string form of RLE counts (``rleToString``).

    Each count, after the third, is stored as its difference from the count two before it
    (runs of the same value tend to have similar lengths), then as a variant of LEB128: 5 bits
    per character plus a continuation bit, sign-extended, offset into printable ASCII (48..111).
    """
    values = [int(c) for c in counts]
    out: list[str] = []
    for i, count in enumerate(values):
        x = count - values[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: negative differences stay negative
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def counts_from_string(text: str) -> list[int]:
    """Decode pycocotools' compressed string counts (``rleFrString``) into run lengths."""
    counts: list[int] = []
    p = 0
    n = len(text)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                raise ValueError("truncated RLE string: a count's last character is missing")
            c = ord(text[p]) - 48
            if c < 0 or c > 63:
                raise ValueError(f"invalid character {text[p]!r} in an RLE string")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)  # sign-extend
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_size(rle: Mapping[str, Any]) -> tuple[int, int]:
    """``(height, width)`` of an RLE mapping, validated."""
    try:
        size = rle["size"]
        height, width = int(size[0]), int(size[1])
    except (KeyError, TypeError, IndexError, ValueError):
        raise ValueError(f"an RLE needs size [height, width], got {rle.get('size')!r}") from None
    if height < 0 or width < 0:
        raise ValueError(f"RLE size must be non-negative, got {[height, width]}")
    return height, width


def rle_to_runs(rle: Mapping[str, Any]) -> NDArray[np.int64]:
    """The run lengths of an RLE mapping (list or string ``counts``), validated.

    Raises:
        ValueError: missing or malformed size or counts, a negative run, or runs that do not
            add up to ``height * width``.
    """
    height, width = rle_size(rle)
    raw = rle.get("counts")
    if isinstance(raw, bytes):
        raw = raw.decode("ascii")
    if isinstance(raw, str):
        runs = np.asarray(counts_from_string(raw), dtype=np.int64)
    elif isinstance(raw, Sequence | np.ndarray):
        try:
            runs = np.asarray(raw, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError("RLE counts must be integers") from None
    else:
        raise ValueError(f"RLE counts must be a list of run lengths or a string, got {raw!r}")
    if runs.size and runs.min() < 0:
        raise ValueError("RLE run lengths cannot be negative")
    total = int(runs.sum())
    if total != height * width:
        raise ValueError(f"RLE runs add up to {total}, not {height} x {width} = {height * width}")
    return runs


def rle_decode(rle: Mapping[str, Any]) -> NDArray[np.bool_]:
    """The ``(height, width)`` boolean mask of an RLE mapping."""
    height, width = rle_size(rle)
    runs = rle_to_runs(rle)
    values = np.zeros(runs.size, dtype=np.bool_)
    values[1::2] = True
    flat = np.repeat(values, runs)
    # Column-major: the flat runs fill column after column.
    return flat.reshape(width, height).T


def rle_encode(mask: NDArray[Any]) -> dict[str, Any]:
    """Encode a 2-D mask (non-zero is set) as ``{"size": [h, w], "counts": [...]}``.

    The counts are a plain list of Python ints (JSON-ready), the same runs as pycocotools'
    ``mask.encode`` before its string compression.
    """
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"a mask must be two-dimensional, got shape {array.shape}")
    height, width = array.shape
    flat = np.ravel(array != 0, order="F")
    if flat.size == 0:
        return {"size": [height, width], "counts": [0]}
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds)
    counts = runs.tolist()
    if flat[0]:
        counts.insert(0, 0)
    return {"size": [height, width], "counts": counts}


def rle_area(rle: Mapping[str, Any]) -> int:
    """Number of set pixels."""
    return int(rle_to_runs(rle)[1::2].sum())


def _ones_intervals(runs: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Half-open ``[begin, end)`` flat-index intervals of the set pixels."""
    ends = np.cumsum(runs)
    begins = ends - runs
    ones_begin, ones_end = begins[1::2], ends[1::2]
    keep = ones_end > ones_begin
    return ones_begin[keep], ones_end[keep]


def _runs_intersection(a: NDArray[np.int64], b: NDArray[np.int64]) -> int:
    """Set pixels common to two run-length arrays of the same size (a sweep over run ends)."""
    begin_a, end_a = _ones_intervals(a)
    begin_b, end_b = _ones_intervals(b)
    if begin_a.size == 0 or begin_b.size == 0:
        return 0
    positions = np.concatenate((begin_a, end_a, begin_b, end_b))
    deltas = np.concatenate(
        (
            np.ones(begin_a.size, np.int64),
            -np.ones(end_a.size, np.int64),
            np.ones(begin_b.size, np.int64),
            -np.ones(end_b.size, np.int64),
        )
    )
    order = np.argsort(positions, kind="stable")
    positions = positions[order]
    coverage = np.cumsum(deltas[order])
    # Between consecutive events the coverage is constant; 2 means both masks are set. Where an
    # interval of one mask ends exactly where one of the other begins, the event order at that
    # position only creates zero-length spans, so it does not matter.
    lengths = np.diff(positions)
    return int(lengths[coverage[:-1] == 2].sum())


def rle_intersection(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
    """Number of pixels set in both masks; they must have the same size."""
    if rle_size(a) != rle_size(b):
        raise ValueError(f"masks of different sizes: {rle_size(a)} and {rle_size(b)}")
    return _runs_intersection(rle_to_runs(a), rle_to_runs(b))


def runs_iou(a: NDArray[np.int64], b: NDArray[np.int64]) -> float:
    """IoU of two validated run-length arrays of the same size (see `rle_iou`)."""
    intersection = _runs_intersection(a, b)
    union = int(a[1::2].sum()) + int(b[1::2].sum()) - intersection
    if union == 0:
        return 1.0  # two empty masks are the same mask
    return intersection / union


def rle_iou(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """Intersection over union of two masks of the same size.

    ``|A & B| / |A | B|`` in pixels; two empty masks are identical, so 1.0 (pycocotools returns
    0 there, having no notion of identity).
    """
    if rle_size(a) != rle_size(b):
        raise ValueError(f"masks of different sizes: {rle_size(a)} and {rle_size(b)}")
    return runs_iou(rle_to_runs(a), rle_to_runs(b))


def runs_bbox(runs: NDArray[np.int64], height: int) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` of the set pixels of validated runs (see `rle_bbox`)."""
    begins, ends = _ones_intervals(runs)
    if begins.size == 0 or height == 0:
        return (0, 0, 0, 0)
    last = ends - 1
    col_begin, row_begin = np.divmod(begins, height)
    col_end, row_end = np.divmod(last, height)
    # A run that wraps into the next column covers every row between.
    wraps = col_end > col_begin
    row_lo = np.where(wraps, 0, row_begin)
    row_hi = np.where(wraps, height - 1, row_end)
    x0, x1 = int(col_begin.min()), int(col_end.max())
    y0, y1 = int(row_lo.min()), int(row_hi.max())
    return (x0, y0, x1 - x0 + 1, y1 - y0 + 1)


def rle_bbox(rle: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` of the set pixels, as pycocotools' ``toBbox``; ``(0, 0, 0, 0)`` if empty."""
    height, _ = rle_size(rle)
    return runs_bbox(rle_to_runs(rle), height)
