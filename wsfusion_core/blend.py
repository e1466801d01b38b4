"""Blending tile results into a rolling strip and writing finished rows.

Holds at most one tile height of weighted sums (fused bands, segmentation probabilities,
quality weights) plus the weight sum; rows no later tile touches are converted to the output
dtype and written in whole GeoTIFF blocks. Memory depends on the raster width, never its height.
"""

from __future__ import annotations

import math

import numpy as np

from .classes import SEGMENTATION_NODATA
from .composite import composite, equal_weights
from .windows import WindowPlan
from .writers import BLOCK

CHUNK = 1024  # columns per conversion / composite step (bounds the float temporaries)


def zero_invalid(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Invalid pixels may hold NaN or sentinel values; zero them so 0-weight stays 0.
    data (K, C, h, w), valid (K, h, w)."""
    return np.where(valid[:, None], data, np.zeros((), data.dtype))


def zero_invalid_tiles(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The same for a batch: data (B, K, C, T, T), valid (B, K, T, T)."""
    return np.where(valid[:, :, None], data, np.zeros((), data.dtype))


class StripBuffer:
    """Rolling accumulators for the rows not yet written: weighted sums and the weight sum.

    Holds at most one tile height of rows; ``flush`` writes the rows no later tile touches and
    shifts the rest up."""

    def __init__(self, plan: WindowPlan, width: int, count: int, k: int, dtype: str, nodata,
                 num_classes: int, quality: bool) -> None:
        self.plan = plan
        h = max(plan.rows.tile, max(plan.rows.sizes))
        dt = np.dtype(dtype)
        work = np.float64 if dt.itemsize > 2 or dt == np.float64 else np.float32
        self.y = 0  # raster row of buffer row 0
        self.fsum = np.zeros((count, h, width), work)
        self.wsum = np.zeros((h, width), np.float32)
        self.valid = np.zeros((h, width), bool)
        self.seg = np.zeros((num_classes, h, width), np.float32) if num_classes else None
        self.qsum = np.zeros((k, h, width), np.float32) if quality else None
        self.dtype, self.nodata = dt, nodata
        self.pending: dict[int, tuple] = {}  # writer → converted rows waiting for a full block
        self.written = 0  # raster row where the pending rows start

    def mark_valid(self, y0: int, any_valid: np.ndarray) -> None:
        self.valid[y0 - self.y:y0 - self.y + any_valid.shape[0]] |= any_valid

    def add_tile(self, t, weight: np.ndarray, fused, qual, seg) -> None:
        ys = slice(t.y - self.y, t.y - self.y + t.height)
        xs = slice(t.x, t.x + t.width)
        if fused is not None:
            self.fsum[:, ys, xs] += weight * fused[:, :t.height, :t.width]
            self.wsum[ys, xs] += weight
        if qual is not None:
            self.qsum[:, ys, xs] += weight * qual[:, :t.height, :t.width]
        if seg is not None:
            self.seg[:, ys, xs] += weight * seg[:, :t.height, :t.width]

    def add_composite(self, y0: int, row_weight: np.ndarray, data: np.ndarray,
                      valid: np.ndarray, method: str, quality: bool) -> None:
        """Mean/median of one strip, in column chunks so temporaries stay small."""
        h = data.shape[-2]
        ys = slice(y0 - self.y, y0 - self.y + h)
        w = row_weight[:, None]
        for x0 in range(0, data.shape[-1], CHUNK):
            xs = slice(x0, x0 + CHUNK)
            d, v = data[..., xs], valid[..., xs]
            comp, _ = composite(zero_invalid(d, v), v, method)
            self.fsum[:, ys, xs] += w * comp
            self.wsum[ys, xs] += w
            if quality:
                self.qsum[:, ys, xs] += w * equal_weights(v)

    def flush(self, upto: int, fused_w, seg_w, q_w) -> None:
        """Convert the rows above ``upto`` to output values, queue them for writing (in whole
        256-row blocks), and shift the buffers up."""
        n = upto - self.y
        if n <= 0:
            return
        width = self.fsum.shape[-1]
        fused = np.empty((self.fsum.shape[0], n, width), self.dtype)
        cls = np.empty((1, n, width), np.uint8) if seg_w is not None else None
        q = np.empty((self.qsum.shape[0], n, width), np.float32) if q_w is not None else None
        for x0 in range(0, width, CHUNK):  # column chunks: small temporaries
            xs = slice(x0, x0 + CHUNK)
            valid = self.valid[:n, xs]
            wsum = self.wsum[:n, xs]
            denom = np.where(wsum > 0, wsum, 1)
            fused[:, :, xs] = _to_dtype(self.fsum[:, :n, xs] / denom, valid, self.dtype,
                                        self.nodata)
            if cls is not None:
                c = self.seg[:, :n, xs].argmax(axis=0).astype(np.uint8)
                c[~valid] = SEGMENTATION_NODATA
                cls[0, :, xs] = c
            if q is not None:
                q[:, :, xs] = np.where(valid, self.qsum[:, :n, xs] / denom, np.nan)
        self._queue(fused_w, fused)
        if seg_w is not None:
            self._queue(seg_w, cls)
        if q_w is not None:
            self._queue(q_w, q)
        for a in (self.fsum, self.seg, self.qsum):
            if a is not None:
                _shift(a, n)
        for a in (self.wsum, self.valid):
            _shift(a[None], n)
        self.y = upto
        self._write(final=upto >= self.plan.rows.length)

    def _queue(self, writer, rows: np.ndarray) -> None:
        self.pending.setdefault(id(writer), (writer, []))[1].append(rows)

    def _write(self, final: bool) -> None:
        """Write whole blocks of rows only, so every GeoTIFF block is written once, complete
        (no partial block has to wait in GDAL's cache or be re-read)."""
        for writer, parts in self.pending.values():
            have = sum(p.shape[1] for p in parts)
            take = have if final else (have // BLOCK) * BLOCK
            if take == 0:
                continue
            rows = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
            writer.write(rows[:, :take], self.written)
            parts[:] = [rows[:, take:]] if take < have else []
        self.written = self.y - sum(p.shape[1] for p in next(iter(self.pending.values()))[1])


def _shift(a: np.ndarray, n: int) -> None:
    """Drop the first n rows (axis 1) and zero the freed tail, in place."""
    keep = a.shape[1] - n
    if keep > 0:
        a[:, :keep] = a[:, n:].copy()
    a[:, max(keep, 0):] = 0


def _to_dtype(values: np.ndarray, valid: np.ndarray, dtype: np.dtype, nodata) -> np.ndarray:
    """Round/clip to the output dtype and put nodata where no input was valid."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        out = np.clip(np.rint(values), info.min, info.max).astype(dtype)
    else:
        out = values.astype(dtype)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        out[:, ~valid] = nodata
    else:
        out[:, ~valid] = np.nan
    return out

