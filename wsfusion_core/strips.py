"""The plan's strips read in order, each as (K, C, h, W) values and (K, h, W) validity, the
next one read in a background thread while the current one is processed.

Reading (decompression, warping) and the networks or composites then overlap instead of taking
turns; at most two strips are in memory (the one being processed and the one being read).
GDAL and numpy release the GIL, so one reader thread is enough.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
from rasterio.windows import Window

from .grid import AlignedReader
from .windows import WindowPlan

Strip = tuple[int, np.ndarray, np.ndarray]  # (tile-row index, data, valid)


def read_strip(readers: Sequence[AlignedReader], window: Window) -> tuple[np.ndarray, np.ndarray]:
    """All inputs' bands and validity for one window: (K, C, h, W) and (K, h, W). Each input is
    copied into the stack as soon as it is read, so only one extra input is ever held."""
    dtype = np.result_type(*[np.dtype(r.info.dtype) for r in readers])
    data: np.ndarray | None = None
    valid: np.ndarray | None = None
    for i, reader in enumerate(readers):
        d, v = reader.read(window)
        if data is None or valid is None:
            data = np.empty((len(readers),) + d.shape, dtype)
            valid = np.empty((len(readers),) + v.shape, bool)
        data[i] = d
        valid[i] = v
        del d, v
    assert data is not None and valid is not None
    return data, valid


@contextmanager
def strips(readers: Sequence[AlignedReader], plan: WindowPlan, width: int,
           prefetch: bool = True) -> Iterator[Iterator[Strip]]:
    """Iterate the plan's tile-rows as full-width strips; with ``prefetch`` the next strip is
    read while the caller works on the current one. Leaving the block (an error, a cancel)
    waits for a read in flight, so no thread outlives the readers."""
    def window(r: int) -> Window:
        y0, y1 = plan.row_span(r)
        return Window(0, y0, width, y1 - y0)

    if not prefetch:
        yield ((r, *read_strip(readers, window(r))) for r in range(plan.rows.count))
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsfusion-read")

    def ahead() -> Iterator[Strip]:
        nxt: Future | None = pool.submit(read_strip, readers, window(0))
        for r in range(plan.rows.count):
            assert nxt is not None
            data, valid = nxt.result()
            nxt = (pool.submit(read_strip, readers, window(r + 1))
                   if r + 1 < plan.rows.count else None)
            yield r, data, valid
            del data, valid

    try:
        yield ahead()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
