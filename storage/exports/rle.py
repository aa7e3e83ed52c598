"""COCO run-length encoding without pycocotools: the compressed string form, area, bbox, outline.

A COCO RLE mask of ``size [h, w]`` is a list of run lengths over the pixels in column-major
(Fortran) order, starting with a run of zeros. The compressed ``counts`` string is what
pycocotools writes (``maskApi.c: rleToString``); its codec lives in ``quality.rle`` and is
re-exported here. The tests check every function here against pycocotools.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

# One codec for the compressed counts string, shared with the consensus math.
from quality.rle import counts_from_string as decode_counts
from quality.rle import counts_to_string as encode_counts

__all__ = [
    "decode_counts",
    "encode_counts",
    "mask_outline",
    "mask_outlines",
    "rle_area",
    "rle_bbox",
    "rle_to_mask",
    "uncompressed_counts",
]


def uncompressed_counts(counts: Sequence[int] | str) -> list[int]:
    return decode_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]


def _check(counts: Sequence[int], height: int, width: int) -> None:
    if any(c < 0 for c in counts):
        raise ValueError("negative run length")
    if sum(counts) != height * width:
        raise ValueError(f"run lengths add up to {sum(counts)}, not {height}*{width}")


def rle_area(counts: Sequence[int] | str) -> int:
    """Foreground pixels (the odd runs)."""
    return sum(uncompressed_counts(counts)[1::2])


def rle_bbox(counts: Sequence[int] | str, height: int, width: int) -> list[float]:
    """``[x, y, w, h]`` of the foreground, as pycocotools' ``toBbox`` computes it."""
    runs = uncompressed_counts(counts)
    _check(runs, height, width)
    xmin, ymin, xmax, ymax = width, height, -1, -1
    position = 0
    for i, run in enumerate(runs):
        if i % 2 == 1 and run > 0:
            first, last = position, position + run - 1
            x0, y0 = divmod(first, height)
            x1, y1 = divmod(last, height)
            if x1 > x0:  # the run wraps to a further column: it covers whole rows in between
                y0, y1 = 0, height - 1
            xmin, xmax = min(xmin, x0), max(xmax, x1)
            ymin, ymax = min(ymin, y0, y1), max(ymax, y0, y1)
        position += run
    if xmax < 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xmin), float(ymin), float(xmax - xmin + 1), float(ymax - ymin + 1)]


def rle_to_mask(counts: Sequence[int] | str, height: int, width: int) -> npt.NDArray[np.bool_]:
    """The ``(height, width)`` boolean mask."""
    runs = uncompressed_counts(counts)
    _check(runs, height, width)
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape((width, height)).T


def mask_outline(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """The outer boundary of the mask's largest region (see ``mask_outlines``); [] if empty."""
    outlines = mask_outlines(mask)
    return outlines[0] if outlines else []


def mask_outlines(mask: npt.NDArray[np.bool_]) -> list[list[tuple[int, int]]]:
    """The outer boundaries of the mask's regions, largest first, as polygons on pixel corners.

    Pixel ``(x, y)`` covers ``[x, x+1] x [y, y+1]``, so the polygon encloses exactly the
    region's pixels (holes are not represented). Each foreground pixel contributes the edges it
    shares with background, oriented clockwise on screen; the edges chain into closed loops, and
    outer loops have positive shoelace area in these y-down coordinates, holes negative. At a
    corner where two regions touch diagonally the walk turns right, keeping them apart. Returns
    an empty list for an empty mask.
    """
    padded = np.pad(mask.astype(bool), 1)
    fg = padded[1:-1, 1:-1]
    # directed edges keyed by start vertex (x, y); directions: 0 right, 1 down, 2 left, 3 up
    out_edges: dict[tuple[int, int], list[tuple[int, tuple[int, int]]]] = {}

    def add(start: tuple[int, int], end: tuple[int, int], direction: int) -> None:
        out_edges.setdefault(start, []).append((direction, end))

    ys, xs = np.nonzero(fg)
    up = ~padded[:-2, 1:-1]
    down = ~padded[2:, 1:-1]
    left = ~padded[1:-1, :-2]
    right = ~padded[1:-1, 2:]
    for y, x in zip(ys.tolist(), xs.tolist(), strict=True):
        if up[y, x]:
            add((x, y), (x + 1, y), 0)
        if right[y, x]:
            add((x + 1, y), (x + 1, y + 1), 1)
        if down[y, x]:
            add((x + 1, y + 1), (x, y + 1), 2)
        if left[y, x]:
            add((x, y + 1), (x, y), 3)

    outers: list[tuple[float, list[tuple[int, int]]]] = []
    while out_edges:
        start = next(iter(out_edges))
        direction, vertex = out_edges[start].pop()
        if not out_edges[start]:
            del out_edges[start]
        loop = [start]
        # Every vertex has as many edges in as out, so the walk always gets back to start.
        while vertex != start:
            loop.append(vertex)
            choices = out_edges[vertex]
            # prefer a right turn, then straight, then left
            order = {(direction + 1) % 4: 0, direction: 1, (direction + 3) % 4: 2}
            choices.sort(key=lambda e: order.get(e[0], 3))
            direction, nxt = choices.pop(0)
            if not choices:
                del out_edges[vertex]
            vertex = nxt
        polygon = _drop_collinear(loop)
        area = _shoelace(polygon)
        if area > 0:
            outers.append((area, polygon))
    # largest first; ties broken by the vertices, so the order never depends on dict order
    outers.sort(key=lambda entry: (-entry[0], entry[1]))
    return [polygon for _, polygon in outers]


def _drop_collinear(loop: list[tuple[int, int]]) -> list[tuple[int, int]]:
    n = len(loop)
    if n < 3:
        return loop
    kept = []
    for i in range(n):
        (ax, ay), (bx, by), (cx, cy) = loop[i - 1], loop[i], loop[(i + 1) % n]
        if (bx - ax) * (cy - by) - (by - ay) * (cx - bx) != 0:
            kept.append(loop[i])
    return kept


def _shoelace(points: Sequence[tuple[int, int]]) -> float:
    n = len(points)
    return 0.5 * sum(
        points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1]
        for i in range(n)
    )
