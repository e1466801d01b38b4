"""The plan's strips read in order, each as (K, C, h, w) values and (K, h, w) validity, the
next one read in a background thread while the current one is processed.

Reading (decompression, warping) and the networks or composites then overlap instead of taking
turns (measured: 1.6x for a mean composite); at most two strips are in memory (the one being
processed and the one being read). Composites read their strips in pieces of a few blocks'
width, so those two pieces cost the same memory at any raster width. GDAL and numpy release
the GIL, so one reader thread is enough.

Network strips overlap (300 rows every 236) and straddle the inputs' 256-row blocks: read as
they come, a block is decoded again unless GDAL's cache still holds it (measured at 4096², K = 6:
reading 1.6x slower than reading each block row once). So full-width strips are read in whole
block rows, each row once (``BlockRows``): the rows a strip shares with the next one and the
rows read past its end up to the block boundary are kept for the next strip, less than a block
row beyond the strip itself.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator, NamedTuple, Sequence

import numpy as np
from rasterio.windows import Window

from .blockread import BLOCK
from .grid import AlignedReader
from .windows import WindowPlan


class Strip(NamedTuple):
    """Tile-row ``row`` of the plan from column ``x``: (K, C, h, w) values, (K, h, w) validity;
    ``last``: the row's last piece (its rows are then final)."""

    row: int
    x: int
    data: np.ndarray
    valid: np.ndarray
    last: bool


def fallback_ranks(readers: Sequence[AlignedReader]) -> list[int | None] | None:
    """Each input's least-masked fallback rank (masks.with_fallback), or None when off."""
    ranks = [r.info.sensor_mask.fallback_rank if r.info.sensor_mask is not None else None
             for r in readers]
    return ranks if any(r is not None for r in ranks) else None


class _Reads:
    """Reads every input's window; with the least-masked fallback, also keeps each input's
    own validity and mask so that :meth:`rescued` can decide across the inputs."""

    def __init__(self, readers: Sequence[AlignedReader]) -> None:
        self.readers = readers
        self.ranks = fallback_ranks(readers)
        self.own: list[np.ndarray] = []
        self.flagged: list[np.ndarray] = []

    def read(self, reader: AlignedReader, window: Window) -> tuple[np.ndarray, np.ndarray]:
        if self.ranks is None:
            return reader.read(window)
        d, own, flagged = reader.read_parts(window)
        self.own.append(own)
        self.flagged.append(flagged)
        return d, own & ~flagged

    def rescued(self) -> np.ndarray | None:
        """(K, h, w): pixels the fallback makes valid again (None: fallback off)."""
        if self.ranks is None:
            return None
        from .masks import rescue

        out = rescue(np.stack(self.own), np.stack(self.flagged), self.ranks)
        self.own, self.flagged = [], []
        return out


def read_strip(readers: Sequence[AlignedReader], window: Window) -> tuple[np.ndarray, np.ndarray]:
    """All inputs' bands and validity for one window: (K, C, h, W) and (K, h, W). Each input is
    copied into the stack as soon as it is read, so only one extra input is ever held."""
    dtype = np.result_type(*[np.dtype(r.info.dtype) for r in readers])
    data: np.ndarray | None = None
    valid: np.ndarray | None = None
    reads = _Reads(readers)
    for i, reader in enumerate(readers):
        d, v = reads.read(reader, window)
        if data is None or valid is None:
            data = np.empty((len(readers),) + d.shape, dtype)
            valid = np.empty((len(readers),) + v.shape, bool)
        data[i] = d
        valid[i] = v
        del d, v
    assert data is not None and valid is not None
    extra = reads.rescued()
    if extra is not None:
        valid |= extra
    return data, valid


MAX_BLOCK_ROWS = 1024  # taller blocks (a one-strip TIFF) are not worth holding whole


def block_rows(readers: Sequence[AlignedReader]) -> int:
    """The rows strips are read in: the tallest block row among the inputs (256 for warped
    ones), so no block is decoded twice; ``BLOCK`` where that is taller than MAX_BLOCK_ROWS."""
    rows = max(r.block_rows for r in readers)
    return rows if rows <= MAX_BLOCK_ROWS else BLOCK


class BlockRows:
    """Full-width rows ``[y0, y1)`` of every input, moving down the raster, read from the files
    up to a block boundary and each row once; what the next request needs is kept."""

    def __init__(self, readers: Sequence[AlignedReader], x: int, width: int, end: int,
                 block: int = BLOCK) -> None:
        self.readers, self.x, self.width, self.end, self.block = readers, x, width, end, block
        self.dtype = np.result_type(*[np.dtype(r.info.dtype) for r in readers])
        self.kept: list[tuple[int, np.ndarray, np.ndarray]] = []  # (first row, data, valid)

    def take(self, y0: int, y1: int, next_y0: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(K, C, h, W) values and (K, h, W) validity of rows [y0, y1), contiguous; the next
        request starts at ``next_y0`` (None: there is none, nothing is kept)."""
        k, h = len(self.readers), y1 - y0
        data: np.ndarray | None = None
        valid: np.ndarray | None = None
        have = y0  # rows [y0, have) are in data

        def alloc(bands: int) -> tuple[np.ndarray, np.ndarray]:
            return (np.empty((k, bands, h, self.width), self.dtype),
                    np.empty((k, h, self.width), bool))

        for ys, d, v in self.kept:
            a, b = max(ys, have), min(ys + v.shape[-2], y1)
            if a != have or b <= a:
                continue
            if data is None or valid is None:
                data, valid = alloc(d.shape[1])
            data[:, :, a - y0:b - y0] = d[:, :, a - ys:b - ys]
            valid[:, a - y0:b - y0] = v[:, a - ys:b - ys]
            have = b
        later = [p for p in self.kept if p[0] + p[2].shape[-2] > y1]
        self.kept = []  # copied: the last tail is freed before the next one is read
        tail: tuple[np.ndarray, np.ndarray] | None = None
        if have < y1:
            stop = max(y1, min(-(-y1 // self.block) * self.block, self.end))
            win = Window(self.x, have, self.width, stop - have)
            reads = _Reads(self.readers)
            for i, reader in enumerate(self.readers):
                d, v = reads.read(reader, win)
                if data is None or valid is None:
                    data, valid = alloc(d.shape[0])
                if tail is None and stop > y1:
                    tail = (np.empty((k, d.shape[0], stop - y1, self.width), self.dtype),
                            np.empty((k, stop - y1, self.width), bool))
                data[i, :, have - y0:] = d[:, :y1 - have]
                valid[i, have - y0:] = v[:y1 - have]
                if tail is not None:
                    tail[0][i] = d[:, y1 - have:]
                    tail[1][i] = v[y1 - have:]
                del d, v
            extra = reads.rescued()
            if extra is not None and valid is not None:
                valid[:, have - y0:] |= extra[:, :y1 - have]
                if tail is not None:
                    tail[1] |= extra[:, y1 - have:]
        assert data is not None and valid is not None
        pieces = [(y0, data, valid)] + later
        if tail is not None:
            pieces.append((y1, *tail))
        self.kept = [] if next_y0 is None else [
            (max(ys, next_y0), d[:, :, max(next_y0 - ys, 0):], v[:, max(next_y0 - ys, 0):])
            for ys, d, v in pieces if ys + v.shape[-2] > next_y0]
        return data, valid


@contextmanager
def strips(readers: Sequence[AlignedReader], plan: WindowPlan, width: int,
           pieces: bool = False, prefetch: bool = True, origin: tuple[int, int] = (0, 0)
           ) -> Iterator[Iterator[Strip]]:
    """Iterate the plan's tile-rows as full-width strips, or with ``pieces`` (a disjoint plan,
    composites) tile by tile; with ``prefetch`` the next one is read while the caller works on
    the current one. ``origin`` is the plan's corner in the raster (a chunk's sub-plan); the
    strips' ``x`` stay relative to it. Leaving the block (an error, a cancel) waits for a read
    in flight, so no thread outlives the readers."""
    oy, ox = origin
    units = []
    for r in range(plan.rows.count):
        y0, y1 = plan.row_span(r)
        cols = (list(zip(plan.cols.starts, plan.cols.sizes)) if pieces else [(0, width)])
        units += [(r, x, Window(ox + x, oy + y0, w, y1 - y0), i == len(cols) - 1)
                  for i, (x, w) in enumerate(cols)]

    def strip(i: int, data: np.ndarray, valid: np.ndarray) -> Strip:
        r, x, _win, last = units[i]
        return Strip(r, x, data, valid, last)

    rows = None if pieces or not units else BlockRows(
        readers, ox, width, oy + plan.row_span(plan.rows.count - 1)[1], block_rows(readers))

    def read(i: int) -> tuple[np.ndarray, np.ndarray]:
        win = units[i][2]
        if rows is None:
            return read_strip(readers, win)
        nxt = int(units[i + 1][2].row_off) if i + 1 < len(units) else None
        return rows.take(int(win.row_off), int(win.row_off + win.height), nxt)

    if not prefetch:
        yield (strip(i, *read(i)) for i in range(len(units)))
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsfusion-read")

    def ahead() -> Iterator[Strip]:
        nxt: Future | None = pool.submit(read, 0)
        for i in range(len(units)):
            assert nxt is not None
            data, valid = nxt.result()
            nxt = pool.submit(read, i + 1) if i + 1 < len(units) else None
            yield strip(i, data, valid)
            del data, valid

    try:
        yield ahead()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
