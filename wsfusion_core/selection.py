"""Best-pixel selection (``selection="best"``): every output pixel is the pixel of the one input
with the highest weight there, copied unchanged, and the input's number goes to the index.

Why a separate step after blending: the weights that decide are the final per-pixel weights,
the ones the quality output writes, i.e. after the tile cross-fade has accumulated every tile
that covers the pixel (blend.py, device_blend.py). Those are known only when a row is finished,
so the choice is made on finished rows, from the stored values of the strip that covers them:

- rolling buffers (``StripBuffer``, ``DeviceStripBuffer``): a tile-row's finished rows lie inside
  the strip just blended (``WindowPlan.finished_before``), so ``after_take`` picks from it;
- ``DirectStrip`` (composites' disjoint pieces, a raster of one tile): a piece's pixels are final
  as soon as it is blended, so ``after_piece`` picks from the piece (composite strips are read in
  pieces, and the whole strip is never in memory at once).

The argmax runs over the valid inputs only; ties go to the lowest input number (numpy's argmax
takes the first maximum), so the result does not depend on float noise between equal weights
and is the same on every run. The values are copied in the inputs' own dtype: no float round
trip, so uint8/uint16/float32... come back bit for bit.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np

from .blend import CHUNK, DirectStrip, FinishedRows, put_nodata
from .options import index_dtype

Nodata = Union[float, int, None]


class Selector:
    """Turns a blend's finished rows into best-pixel rows (``rows.index`` added). The buffer must
    accumulate the per-input weights (``quality=True``); ``keep_quality``: whether the caller
    also writes them (else they are dropped once used)."""

    def __init__(self, k: int, nodata: Nodata, keep_quality: bool) -> None:
        self.dtype = np.dtype(index_dtype(k))
        self.nodata, self.keep_quality = nodata, keep_quality

    def after_piece(self, buffer: Any, x: int, data: np.ndarray, valid: np.ndarray) -> None:
        """A ``DirectStrip`` piece from column ``x`` (all of its rows) is final: select it in
        place. Other buffers select in ``after_take``."""
        if not isinstance(buffer, DirectStrip):
            return
        rows = buffer.rows
        assert rows is not None and rows.quality is not None, "the buffer keeps the weights"
        if x == 0:  # mark_valid started a new strip
            rows.index = np.empty((1,) + rows.fused.shape[1:], self.dtype)
        assert rows.index is not None
        xs = slice(x, x + data.shape[-1])
        self._select(rows.fused[:, :, xs], rows.index[0, :, xs], rows.quality[:, :, xs],
                     data, valid)

    def after_take(self, rows: Any, buffer: Any, data: np.ndarray, valid: np.ndarray,
                   y0: int) -> Any:
        """The rows a buffer handed back (``FinishedRows``, a device buffer's pending rows, or
        None), selected from the strip ``data``/``valid`` that starts at plan row ``y0``."""
        if rows is None:
            return None
        if isinstance(buffer, DirectStrip):  # selected piece by piece already
            return self._drop_quality(rows)
        if hasattr(rows, "result"):  # device_blend.PendingRows: select once they arrive
            return _PendingSelection(self, rows, data, valid, y0)
        return self.select_rows(rows, data, valid, y0)

    def select_rows(self, rows: FinishedRows, data: np.ndarray, valid: np.ndarray,
                    y0: int) -> FinishedRows:
        """Rows finished by a rolling buffer: they lie inside the strip (full width)."""
        n, width = rows.fused.shape[1:]
        off = rows.y - y0
        if not (0 <= off and off + n <= data.shape[2] and width == data.shape[3]):
            raise AssertionError(f"finished rows {rows.y}..{rows.y + n} are outside the strip "
                                 f"{y0}..{y0 + data.shape[2]}")
        assert rows.quality is not None, "the buffer keeps the weights"
        index = np.empty((1, n, width), self.dtype)
        for x0 in range(0, width, CHUNK):  # column chunks: small temporaries
            xs = slice(x0, x0 + CHUNK)
            self._select(rows.fused[:, :, xs], index[0, :, xs], rows.quality[:, :, xs],
                         data[:, :, off:off + n, xs], valid[:, off:off + n, xs])
        rows.index = index
        return self._drop_quality(rows)

    def _drop_quality(self, rows: FinishedRows) -> FinishedRows:
        if not self.keep_quality:
            rows.quality = None
        return rows

    def _select(self, fused: np.ndarray, index: np.ndarray, quality: np.ndarray,
                data: np.ndarray, valid: np.ndarray) -> None:
        """In place: ``fused`` (C, h, w) ← the stored values of the input with the highest
        ``quality`` (K, h, w) among the ``valid`` (K, h, w) ones; ``index`` (h, w) ← its number
        (1-based), 0 and nodata where no input is valid."""
        if data.dtype != fused.dtype:  # align() admits inputs of one dtype: the output's
            raise AssertionError(f"inputs are {data.dtype}, the output {fused.dtype}")
        # A NaN weight of a valid input (never from a sound model) ranks below every weight but
        # above the invalid inputs: a valid pixel is never turned into nodata.
        score = np.where(valid, np.nan_to_num(quality, nan=-1.0), -np.inf)
        best = score.argmax(axis=0)  # the first maximum: the lowest input number
        any_valid = valid.any(axis=0)
        fused[...] = np.take_along_axis(data, best[None, None], axis=0)[0]
        put_nodata(fused, any_valid, self.nodata)
        index[...] = np.where(any_valid, best + 1, 0)


class _PendingSelection:
    """A device buffer's rows still being copied to the host, selected when they arrive; the
    strip they come from is held until then (the loop writes them after the next strip)."""

    def __init__(self, selector: Selector, pending: Any, data: np.ndarray, valid: np.ndarray,
                 y0: int) -> None:
        self.selector, self.pending = selector, pending
        self.data, self.valid, self.y0 = data, valid, y0

    def result(self) -> FinishedRows:
        rows = self.selector.select_rows(self.pending.result(), self.data, self.valid, self.y0)
        self.data = self.valid = None  # type: ignore[assignment]
        return rows
