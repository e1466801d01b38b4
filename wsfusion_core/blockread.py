"""Reads of a resampling dataset (a ``WarpedVRT``) in fixed blocks of the output grid.

GDAL warps each read request on its own: the source window it picks and the coordinates it
interpolates depend on the requested window, so the same output pixel can differ in the last
bits (a grey level after rounding) between a full-width strip and a chunk's window. Reading
only whole blocks of one fixed grid makes every pixel's value independent of who asks, so a
chunked or distributed run equals the local one exactly. The blocks of the last block rows
are kept, since successive strips overlap.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from rasterio.windows import Window

BLOCK = 256


class FixedBlocks:
    """Cut any window out of whole ``size`` x ``size`` blocks read from ``dataset``."""

    def __init__(self, dataset: Any, size: int = BLOCK) -> None:
        self.ds, self.size = dataset, size
        self.cache: dict[tuple[int, int, tuple[int, ...]], np.ndarray] = {}

    def read(self, indexes: Sequence[int], window: Window) -> np.ndarray:
        s = self.size
        y0, x0 = int(window.row_off), int(window.col_off)
        h, w = int(window.height), int(window.width)
        idx = tuple(indexes)
        by0, by1 = y0 // s, (y0 + h - 1) // s
        bx0, bx1 = x0 // s, (x0 + w - 1) // s
        # Strips move down the raster: blocks above this request are not needed again.
        for key in [k for k in self.cache if k[0] < by0 or k[0] > by1]:
            del self.cache[key]
        out: np.ndarray | None = None
        for by in range(by0, by1 + 1):
            for bx in range(bx0, bx1 + 1):
                block = self._block(by, bx, idx)
                if out is None:
                    out = np.empty((len(idx), h, w), block.dtype)
                ya, yb = max(y0, by * s), min(y0 + h, by * s + block.shape[1])
                xa, xb = max(x0, bx * s), min(x0 + w, bx * s + block.shape[2])
                out[:, ya - y0:yb - y0, xa - x0:xb - x0] = \
                    block[:, ya - by * s:yb - by * s, xa - bx * s:xb - bx * s]
        assert out is not None
        return out

    def _block(self, by: int, bx: int, idx: tuple[int, ...]) -> np.ndarray:
        key = (by, bx, idx)
        block = self.cache.get(key)
        if block is None:
            s = self.size
            win = Window(bx * s, by * s, min(s, self.ds.width - bx * s),
                         min(s, self.ds.height - by * s))
            block = self.cache[key] = self.ds.read(list(idx), window=win)
        return block
