"""The window plan: which tiles the networks see, and how their outputs are blended back.

Tiles are spaced evenly so the first starts at 0 and the last ends at the raster edge; every
neighbouring pair overlaps by at least ``overlap`` pixels. Blending uses a raised-cosine (Hann)
cross-fade that lives only inside the overlap between two neighbours, never at a raster border,
so along each axis the weights of all tiles sum to exactly 1 (a partition of unity). Seams
vanish and an identity model reproduces its input exactly, tile borders included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence, TypeVar

import numpy as np


@dataclass(frozen=True)
class AxisPlan:
    """Tile positions along one axis and each tile's 1-D blend weights."""

    length: int  # raster length along this axis
    tile: int  # network input size along this axis (>= length when padding)
    starts: tuple[int, ...]
    sizes: tuple[int, ...]  # real (unpadded) pixels each tile covers
    weights: tuple[np.ndarray, ...]  # float32, one per tile, len == size

    @property
    def count(self) -> int:
        return len(self.starts)

    @property
    def pad(self) -> int:
        """Pixels of padding each tile needs (only when the raster is shorter than a tile)."""
        return self.tile - self.sizes[0] if self.count == 1 else 0


def _positions(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = max(1, tile - overlap)
    n = math.ceil((length - tile) / stride) + 1
    span = length - tile
    if overlap == 0:  # plain tiling (block-aligned strips); only the last tile snaps back
        return [min(i * stride, span) for i in range(n)]
    # Even spacing keeps every overlap near the requested one (no sliver of a stride that would
    # squeeze the cross-fade to a few pixels).
    return [round(i * span / (n - 1)) for i in range(n)]


def plan_axis(length: int, tile: int, overlap: int) -> AxisPlan:
    """Evenly spaced tiles along one axis with a Hann cross-fade in each neighbour overlap."""
    if length < 1 or tile < 1:
        raise ValueError(f"length and tile must be positive (got {length}, {tile})")
    overlap = max(0, min(int(overlap), tile - 1))
    starts = _positions(length, tile, overlap)
    sizes = [min(tile, length - s) for s in starts]
    n = len(starts)
    # One cross-fade band per neighbour pair, centred in their overlap. Bands of successive pairs
    # must not touch, so their width is capped by the smallest stride: then at most two tiles
    # have non-zero weight at any pixel and the two weights sum to 1 exactly.
    bands: list[tuple[int, int]] = []
    if n > 1:
        min_stride = min(b - a for a, b in zip(starts, starts[1:]))
        for i in range(n - 1):
            lo, hi = starts[i + 1], starts[i] + sizes[i]
            width = min(hi - lo, min_stride)
            b0 = lo + (hi - lo - width) // 2
            if bands and b0 < bands[-1][1]:
                b0 = bands[-1][1]
            bands.append((b0, b0 + width))
    weights = []
    for i, (s, size) in enumerate(zip(starts, sizes)):
        x = np.arange(s, s + size, dtype=np.float64)
        w = np.ones(size, dtype=np.float64)
        if i > 0:  # fade in across the band shared with the previous tile
            w *= 1.0 - _fade_out(x, *bands[i - 1])
        if i < n - 1:  # fade out across the band shared with the next tile
            w *= _fade_out(x, *bands[i])
        weights.append(w.astype(np.float32))
    return AxisPlan(length, max(tile, sizes[0]) if n == 1 else tile, tuple(starts),
                    tuple(sizes), tuple(weights))


def _fade_out(x: np.ndarray, b0: int, b1: int) -> np.ndarray:
    """1 before the band, 0 after it, a half cosine inside (pixel centres, so never exactly 0/1
    inside the band). Its complement is the neighbour's fade-in, so the pair sums to 1."""
    if b1 <= b0:
        return (x < b0).astype(np.float64)
    t = np.clip((x + 0.5 - b0) / (b1 - b0), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))


@dataclass(frozen=True)
class Tile:
    row: int  # tile-row index
    col: int
    y: int
    x: int
    height: int  # real pixels (unpadded)
    width: int


@dataclass(frozen=True)
class WindowPlan:
    """2-D plan = product of two axis plans; the weight of a tile is the outer product."""

    rows: AxisPlan
    cols: AxisPlan

    @property
    def tile_count(self) -> int:
        return self.rows.count * self.cols.count

    def tiles_in_row(self, r: int) -> list[Tile]:
        y, h = self.rows.starts[r], self.rows.sizes[r]
        return [Tile(r, c, y, x, h, w)
                for c, (x, w) in enumerate(zip(self.cols.starts, self.cols.sizes))]

    def weight(self, tile: Tile) -> np.ndarray:
        return np.outer(self.rows.weights[tile.row], self.cols.weights[tile.col])

    def row_span(self, r: int) -> tuple[int, int]:
        return self.rows.starts[r], self.rows.starts[r] + self.rows.sizes[r]

    @property
    def disjoint(self) -> bool:
        """No two tiles share a pixel (every weight is 1)."""
        return all(bool(np.all(w == 1)) for w in self.rows.weights + self.cols.weights) and all(
            a.starts[i] + a.sizes[i] == a.starts[i + 1] for a in (self.rows, self.cols)
            for i in range(a.count - 1))

    def finished_before(self, r: int) -> int:
        """Rows above this are final once tile-row ``r`` has been blended in."""
        return self.rows.starts[r + 1] if r + 1 < self.rows.count else self.rows.length


@dataclass(frozen=True)
class RowPass:
    """One step of blending several tiles of a row at once: raster column ``columns[i]`` takes
    column ``local[i]`` of tile ``tile[i]`` (an index into the tiles given to ``row_passes``)
    with that column's blend weight ``weight[i]``."""

    tile: np.ndarray
    local: np.ndarray
    columns: np.ndarray
    weight: np.ndarray  # float32, the plan's column weights

    @property
    def contiguous(self) -> bool:
        return bool(self.columns[-1] - self.columns[0] + 1 == len(self.columns))

    @property
    def runs(self) -> list[tuple[int, int, int]]:
        """The pass as (tile, first local column, end) runs, in column order: slices of the
        tiles' results that, concatenated, give the pass's columns."""
        cut = np.flatnonzero((np.diff(self.tile) != 0) | (np.diff(self.local) != 1)) + 1
        return [(int(self.tile[i]), int(self.local[i]), int(self.local[j - 1]) + 1)
                for i, j in zip(np.r_[0, cut], np.r_[cut, len(self.tile)])]


def row_passes(plan: WindowPlan, cols: Sequence[int]) -> list[RowPass]:
    """Blending tiles ``cols`` (consecutive columns of the plan, in order) as a few whole-row
    steps that add exactly what adding them one by one adds, in the same order at every
    pixel: pass j holds, for each column, the j-th of these tiles that covers it. Float sums
    depend on their order, so this keeps a batched blend bit-identical to the tile-by-tile one.
    Pass 0 covers every column of the tiles; with the usual overlaps (less than half a tile)
    there is one more pass, over the overlaps only."""
    entries: list[list[tuple[int, int, int]]] = []  # per pass: (column, tile, local)
    depth: dict[int, int] = {}
    for i, c in enumerate(cols):
        x0, w = plan.cols.starts[c], plan.cols.sizes[c]
        for x in range(x0, x0 + w):
            j = depth.get(x, 0)
            depth[x] = j + 1
            if j == len(entries):
                entries.append([])
            entries[j].append((x, i, x - x0))
    passes = []
    for e in entries:
        e.sort()
        a = np.array(e, dtype=np.int64)
        weights = np.array([plan.cols.weights[cols[t]][loc] for _, t, loc in e], np.float32)
        passes.append(RowPass(a[:, 1].copy(), a[:, 2].copy(), a[:, 0].copy(), weights))
    return passes


def plan_windows(height: int, width: int, tile: int = 300, overlap: int = 64) -> WindowPlan:
    """Network tiles of ``tile`` pixels, neighbours sharing at least ``overlap`` pixels."""
    return WindowPlan(plan_axis(height, tile, overlap), plan_axis(width, tile, overlap))


def plan_strips(height: int, width: int, rows: int, cols: int | None = None) -> WindowPlan:
    """Strips of ``rows`` rows cut into pieces of ``cols`` columns (default: full width), the
    last ones shorter: no pixel is in two pieces, so composites are converted straight to the
    output (blend.DirectStrip, no accumulators) and read piece by piece (memory independent of
    the width)."""
    return WindowPlan(_disjoint_axis(height, rows), _disjoint_axis(width, cols or width))


def _disjoint_axis(length: int, size: int) -> AxisPlan:
    starts = tuple(range(0, length, size))
    sizes = tuple(min(size, length - s) for s in starts)
    return AxisPlan(length, max(sizes), starts, sizes,
                    tuple(np.ones(n, np.float32) for n in sizes))


T = TypeVar("T")


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items."""
    for i in range(0, len(items), size):
        yield items[i:i + size]


def pad_to(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad the last two axes up to (height, width) by reflection (edge copy where the array is too
    small to reflect), so a raster smaller than a tile still gives the network a full tile."""
    ph, pw = height - array.shape[-2], width - array.shape[-1]
    if ph <= 0 and pw <= 0:
        return array
    spec = [(0, 0)] * (array.ndim - 2) + [(0, max(ph, 0)), (0, max(pw, 0))]
    # numpy reflects repeatedly when the pad exceeds the array; a single row/column cannot reflect.
    small = array.shape[-2] < 2 or array.shape[-1] < 2
    return np.pad(array, spec, mode="edge" if small else "reflect")
