"""Output windows ("chunks") of the global tile plan, for running the engine piece by piece.

The tile plan is global: tiles are spaced over the whole raster, so a chunk cannot plan its own
tiles without moving every seam. A chunk therefore takes the global tiles whose blend weight
reaches into it (at most one extra tile per side: the halo) and runs them, in global order, over
a sub-plan whose coordinates start at the first of those tiles. Along the columns the tile range
is widened to whole global batches, so every network batch holds exactly the tiles it holds in
a single-process run: per-pixel sums are then added in the same order from bit-identical tile
results, and a chunked run equals the local one exactly. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .windows import AxisPlan, WindowPlan


@dataclass(frozen=True)
class Chunk:
    """One output window of the raster: rows y0..y1, columns x0..x1 (global pixels)."""

    row: int
    col: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def name(self) -> str:
        return f"r{self.row:04d}_c{self.col:04d}"

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0


def plan_chunks(height: int, width: int, chunk: int) -> list[Chunk]:
    """Row-major output windows of ``chunk`` x ``chunk`` pixels (the last ones shorter)."""
    if chunk < 1:
        raise ValueError(f"chunk must be positive (got {chunk})")
    return [Chunk(r, c, y, min(y + chunk, height), x, min(x + chunk, width))
            for r, y in enumerate(range(0, height, chunk))
            for c, x in enumerate(range(0, width, chunk))]


@dataclass(frozen=True)
class Region:
    """What one chunk computes: the sub-plan of the global tiles it needs, placed at
    (y, x) in global pixels, and the global tile indexes it covers."""

    chunk: Chunk
    plan: WindowPlan  # coordinates relative to (y, x)
    y: int
    x: int
    rows: range  # global tile-row indexes
    cols: range  # global tile-column indexes

    @property
    def height(self) -> int:
        return self.plan.rows.length

    @property
    def width(self) -> int:
        return self.plan.cols.length

    @property
    def tile_count(self) -> int:
        return len(self.rows) * len(self.cols)


def _reaching(axis: AxisPlan, a: int, b: int) -> range:
    """Indexes of the tiles whose blend weight is non-zero somewhere in [a, b)."""
    hits = [i for i, (s, n, w) in enumerate(zip(axis.starts, axis.sizes, axis.weights))
            if s < b and s + n > a and np.any(w[max(a - s, 0):min(b - s, n)] > 0)]
    if not hits:  # cannot happen for a partition of unity; guard against an empty sub-plan
        raise ValueError(f"no tile reaches [{a}, {b})")
    return range(hits[0], hits[-1] + 1)


def _sub_axis(axis: AxisPlan, idx: range) -> tuple[AxisPlan, int]:
    origin = axis.starts[idx.start]
    end = max(axis.starts[i] + axis.sizes[i] for i in idx)
    return AxisPlan(end - origin, axis.tile, tuple(axis.starts[i] - origin for i in idx),
                    tuple(axis.sizes[i] for i in idx),
                    tuple(axis.weights[i] for i in idx)), origin


def _slice_axis(axis: AxisPlan, a: int, b: int) -> tuple[AxisPlan, range]:
    """The disjoint pieces of a composite axis cut to [a, b) (composites are per pixel, so a
    piece can be cut anywhere), and the indexes of the pieces it keeps."""
    idx = [i for i, (s, n) in enumerate(zip(axis.starts, axis.sizes)) if s < b and s + n > a]
    cut = [(max(axis.starts[i], a), min(axis.starts[i] + axis.sizes[i], b)) for i in idx]
    return (AxisPlan(b - a, max(e - s for s, e in cut), tuple(s - a for s, _ in cut),
                     tuple(e - s for s, e in cut),
                     tuple(axis.weights[i][s - axis.starts[i]:e - axis.starts[i]]
                           for i, (s, e) in zip(idx, cut))),
            range(idx[0], idx[-1] + 1))


def region_for(plan: WindowPlan, chunk: Chunk, batch: int | None) -> Region:
    """The sub-plan that computes ``chunk``; ``batch`` is the network batch size (None when no
    network runs: then the plan's disjoint column pieces are cut to the chunk)."""
    rows = _reaching(plan.rows, chunk.y0, chunk.y1)
    row_axis, y = _sub_axis(plan.rows, rows)
    if batch is None:
        if not plan.disjoint:
            raise ValueError("a plan without a network has disjoint pieces")
        col_axis, pieces = _slice_axis(plan.cols, chunk.x0, chunk.x1)
        return Region(chunk, WindowPlan(row_axis, col_axis), y, chunk.x0, rows, pieces)
    cols = _reaching(plan.cols, chunk.x0, chunk.x1)
    # Whole global batches (batches are cut per tile row, from column 0).
    c0 = cols.start - cols.start % batch
    c1 = min(plan.cols.count, (cols.stop - 1) // batch * batch + batch)
    cols = range(c0, c1)
    col_axis, x = _sub_axis(plan.cols, cols)
    return Region(chunk, WindowPlan(row_axis, col_axis), y, x, rows, cols)
