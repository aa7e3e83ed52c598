"""Rasterize polygons and trace a binary raster back into polygons, in numpy.

Used by pixel-voting consensus (`quality.geometry_consensus`): each annotator's polygon is
rasterized, the pixels are voted on, and the voted raster is traced back into a polygon.

Conventions: a raster cell ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)`` in grid
coordinates, and is set when its centre ``(col + 0.5, row + 0.5)`` lies inside the polygon
(even-odd rule, so a self-intersecting polygon is filled like shapely's ``make_valid`` reading
of it). Callers map image pixels to the grid with an origin and a scale.

Tracing is marching squares (W. E. Lorensen and H. E. Cline (1987), "Marching cubes: a high
resolution 3D surface construction algorithm", SIGGRAPH) on the cell centres at level 0.5: a
binary raster has every crossing half-way between a set and an unset centre, i.e. on the
shared cell edge, so the traced contour runs along the pixel edges with its staircase corners
cut at 45 degrees. It is written here in a few vectorized numpy passes plus one linear walk to
chain the segments, instead of pulling in OpenCV or scikit-image for one function.
"""

from __future__ import annotations

import numpy as np
import shapely
from numpy.typing import NDArray

__all__ = ["rasterize_polygon", "trace_contours", "vectorize_largest"]


def rasterize_polygon(points: NDArray[np.float64], shape: tuple[int, int]) -> NDArray[np.bool_]:
    """Cells of a ``shape = (rows, cols)`` grid whose centres lie inside a closed polygon.

    ``points`` is ``(k, 2)`` in grid coordinates. Scanline fill, vectorized: every edge yields
    its crossings with the rows' centre lines (half-open in y, so a vertex on a centre line is
    counted once), the crossings are sorted by row and x and paired, and each pair fills the
    cells whose centres lie in ``[x_a, x_b)`` through a cumulative sum over a difference array.
    """
    rows, cols = shape
    out = np.zeros((rows, cols + 1), dtype=np.int32)
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape[0] < 3 or rows == 0 or cols == 0:
        return np.zeros((rows, cols), dtype=np.bool_)
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    first = np.clip(np.ceil(np.minimum(y0, y1) - 0.5), 0, rows).astype(np.int64)
    stop = np.clip(np.ceil(np.maximum(y0, y1) - 0.5), 0, rows).astype(np.int64)
    per_edge = np.maximum(stop - first, 0)  # horizontal edges cross no centre line
    total = int(per_edge.sum())
    if total == 0:
        return np.zeros((rows, cols), dtype=np.bool_)
    edge = np.repeat(np.arange(pts.shape[0]), per_edge)
    offsets = np.cumsum(per_edge) - per_edge
    row = first[edge] + (np.arange(total) - offsets[edge])
    centre_y = row + 0.5
    t = (centre_y - y0[edge]) / (y1[edge] - y0[edge])
    x = x0[edge] + t * (x1[edge] - x0[edge])
    order = np.lexsort((x, row))
    row, x = row[order], x[order]
    # A closed curve crosses every line an even number of times, so crossings pair up in rows.
    fill_row = row[0::2]
    begin = np.clip(np.ceil(x[0::2] - 0.5), 0, cols).astype(np.int64)
    end = np.clip(np.ceil(x[1::2] - 0.5), 0, cols).astype(np.int64)
    np.add.at(out, (fill_row, begin), 1)
    np.add.at(out, (fill_row, end), -1)
    filled: NDArray[np.bool_] = np.cumsum(out, axis=1)[:, :cols] > 0
    return filled


def trace_contours(inside: NDArray[np.bool_]) -> list[NDArray[np.float64]]:
    """Closed contours of a binary raster, as ``(k, 2)`` rings of ``(x, y)`` cell-centre indices.

    A point ``(x, y)`` is at column ``x`` and row ``y`` of the cell-centre lattice, so a crossing
    between centres ``(row, col)`` and ``(row, col + 1)`` is at ``(col + 0.5, row)``. The raster
    is padded with unset cells so every contour closes. Rings are consistently oriented (outer
    boundaries one way, holes the other); in a saddle cell (two diagonal set corners) the set
    corners are taken as connected.
    """
    f = np.pad(np.asarray(inside, dtype=np.bool_), 1)
    height, width = f.shape
    a, b = f[:-1, :-1], f[:-1, 1:]  # top-left, top-right corners of each cell
    c, d = f[1:, 1:], f[1:, :-1]  # bottom-right, bottom-left
    # Walk each cell's border top, right, bottom, left (TL -> TR -> BR -> BL -> TL). Where it
    # passes from unset to set a contour enters the cell, where it passes back the contour
    # exits. Each segment runs from an entry to an exit; a shared edge is walked in opposite
    # directions by its two cells, so one cell's exit is its neighbour's entry and the
    # segments chain head to tail with a consistent orientation.
    entries = np.stack((~a & b, ~b & c, ~c & d, ~d & a), axis=-1)
    exits = np.stack((a & ~b, b & ~c, c & ~d, d & ~a), axis=-1)
    n_entries = entries.sum(axis=-1)
    cell_i, cell_j = np.nonzero(n_entries)
    if cell_i.size == 0:
        return []
    cell_entries = entries[cell_i, cell_j]
    cell_exits = exits[cell_i, cell_j]
    single = n_entries[cell_i, cell_j] == 1
    seg_cell: list[NDArray[np.int64]] = []
    seg_from: list[NDArray[np.int64]] = []
    seg_to: list[NDArray[np.int64]] = []
    one = np.flatnonzero(single)
    seg_cell.append(one)
    seg_from.append(np.argmax(cell_entries[one], axis=1))
    seg_to.append(np.argmax(cell_exits[one], axis=1))
    saddle = np.flatnonzero(~single)
    if saddle.size:
        # Binary saddle: the cell centre's value is 0.5, on the level, counted as set; the set
        # corners connect through it and each entry pairs with the crossing before it.
        for k in range(4):
            has = saddle[cell_entries[saddle, k]]
            seg_cell.append(has)
            seg_from.append(np.full(has.size, k, dtype=np.int64))
            seg_to.append(np.full(has.size, (k - 1) % 4, dtype=np.int64))
    cells = np.concatenate(seg_cell)
    side_from = np.concatenate(seg_from)
    side_to = np.concatenate(seg_to)
    i, j = cell_i[cells], cell_j[cells]
    horizontal = height * (width - 1)

    def edge_id(side: NDArray[np.int64]) -> NDArray[np.int64]:
        # Edge ids: horizontal edge (r, q)-(r, q+1) is r*(W-1)+q; vertical (r, q)-(r+1, q)
        # comes after all horizontal ones as H*(W-1) + r*W + q.
        top = i * (width - 1) + j
        right = horizontal + i * width + j + 1
        bottom = (i + 1) * (width - 1) + j
        left = horizontal + i * width + j
        ids: NDArray[np.int64] = np.choose(side, (top, right, bottom, left))
        return ids

    start_id, end_id = edge_id(side_from), edge_id(side_to)
    # Start points: top (j+.5, i), right (j+1, i+.5), bottom (j+.5, i+1), left (j, i+.5).
    dx = np.array([0.5, 1.0, 0.5, 0.0])[side_from]
    dy = np.array([0.0, 0.5, 1.0, 0.5])[side_from]
    px = j + dx - 1.0  # undo the padding
    py = i + dy - 1.0
    order = np.argsort(start_id, kind="stable")
    successor = order[np.searchsorted(start_id[order], end_id)]
    visited = np.zeros(order.size, dtype=np.bool_)
    successor_list = successor.tolist()
    rings: list[NDArray[np.float64]] = []
    for seed in range(order.size):
        if visited[seed]:
            continue
        ring: list[int] = []
        k = seed
        while not visited[k]:
            visited[k] = True
            ring.append(k)
            k = successor_list[k]
        index = np.asarray(ring, dtype=np.int64)
        rings.append(np.column_stack((px[index], py[index])))
    return rings


def signed_area(ring: NDArray[np.float64]) -> float:
    """Shoelace area of a closed ring (its sign gives the orientation)."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def vectorize_largest(
    inside: NDArray[np.bool_], tolerance: float = 0.5
) -> NDArray[np.float64] | None:
    """The largest outer contour of a binary raster as one simplified ring, or None if empty.

    The answer format's polygon is a single ring without holes, so holes are filled and only
    the component with the largest area is kept (pixel voting of overlapping polygons rarely
    yields more). The ring is simplified with Douglas-Peucker at ``tolerance`` cells
    (``shapely.simplify`` with topology preserved), which removes the staircase vertices.
    Coordinates are cell-centre indices ``(x = col, y = row)``.
    """
    rings = trace_contours(inside)
    if not rings:
        return None
    areas = [signed_area(r) for r in rings]
    # The largest ring by absolute area always bounds a component (a hole lies inside one).
    best = int(np.argmax(np.abs(areas)))
    ring = rings[best]
    polygon = shapely.Polygon(ring)
    simplified = shapely.simplify(polygon, tolerance, preserve_topology=True)
    if isinstance(simplified, shapely.Polygon) and not simplified.is_empty:
        coords = np.asarray(simplified.exterior.coords, dtype=np.float64)[:-1]
        if coords.shape[0] >= 3:
            return coords
    return ring
