"""The rolling strip of accumulators: tile (or composite) results are blended in with their
window weights, and rows no later tile touches are handed back in the output's dtype.

Holds at most one tile height of weighted sums (fused bands, segmentation probabilities,
quality weights) plus the weight sum, so memory depends on the raster width, never its height.
It neither computes results (engines.py) nor writes them (writers.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union, cast

import numpy as np

from .classes import SEGMENTATION_NODATA
from .windows import WindowPlan

if TYPE_CHECKING:
    from .runner import ModelRunner

CHUNK = 1024  # columns per conversion step (bounds the float temporaries)


@dataclass
class FinishedRows:
    """Rows ``y .. y + h`` ready to write: fused (C, h, W) in the output dtype, the class map
    (1, h, W) uint8 and the quality weights (K, h, W) float32 where asked for; with best-pixel
    selection (select.py) the chosen input's number (1, h, W), 0 where none is valid; and
    where some input is valid (h, W) bool: an output with a mask writes it (the values cannot
    say it)."""

    y: int
    fused: np.ndarray
    classes: np.ndarray | None
    quality: np.ndarray | None
    index: np.ndarray | None = None
    valid: np.ndarray | None = None


class StripBuffer:
    """Rolling accumulators for the rows not yet handed back: weighted sums and the weight sum."""

    def __init__(self, plan: WindowPlan, width: int, count: int, k: int, dtype: str,
                 nodata: Union[float, int, None], num_classes: int, quality: bool) -> None:
        h = max(plan.rows.tile, max(plan.rows.sizes))
        dt = np.dtype(dtype)
        work = np.float64 if dt.itemsize > 2 or dt == np.float64 else np.float32
        self.y = 0  # raster row of buffer row 0
        self.fsum: np.ndarray = np.zeros((count, h, width), work)
        # The weight sum in the sums' precision: a float32 sum of the same float32 weights
        # differs from the float64 one by ~1e-7, which moved float32 and 32-bit outputs of
        # identical inputs where tiles overlap (8/16-bit outputs: float32 as before).
        self.wsum: np.ndarray = np.zeros((h, width), work)
        self.valid = np.zeros((h, width), bool)
        self.seg = np.zeros((num_classes, h, width), np.float32) if num_classes else None
        self.qsum = np.zeros((k, h, width), np.float32) if quality else None
        self.dtype, self.nodata = dt, nodata

    def mark_valid(self, y0: int, any_valid: np.ndarray, x0: int = 0) -> None:
        """Rows from ``y0`` (columns from ``x0``) where some input is valid: everywhere else
        becomes nodata."""
        h, w = any_valid.shape
        self.valid[y0 - self.y:y0 - self.y + h, x0:x0 + w] |= any_valid

    def add(self, y: int, x: int, weight: np.ndarray, fused: np.ndarray | None,
            quality: np.ndarray | None, seg: np.ndarray | None) -> None:
        """Blend one result in at raster (y, x). ``weight`` is (h, w) or broadcasts to it; the
        arrays are (bands, h, w), already cut to the real (unpadded) pixels (numpy here, torch
        tensors on the device in device_blend, which reuses this method)."""
        first = next(a for a in (fused, quality, seg) if a is not None)
        h, w = first.shape[-2:]
        ys = slice(y - self.y, y - self.y + h)
        xs = slice(x, x + w)
        if fused is not None:
            self.fsum[:, ys, xs] += weight * fused
            self.wsum[ys, xs] += weight
        if quality is not None and self.qsum is not None:
            self.qsum[:, ys, xs] += weight * quality
        if seg is not None and self.seg is not None:
            self.seg[:, ys, xs] += weight * seg

    def take(self, upto: int) -> FinishedRows | None:
        """Hand back the rows above raster row ``upto`` (normalised by the weight sum, in the
        output dtype, nodata where no input was valid) and shift the buffers up."""
        n = upto - self.y
        if n <= 0:
            return None
        width = self.fsum.shape[-1]
        fused = np.empty((self.fsum.shape[0], n, width), self.dtype)
        cls = np.empty((1, n, width), np.uint8) if self.seg is not None else None
        q = np.empty((self.qsum.shape[0], n, width), np.float32) if self.qsum is not None \
            else None
        for x0 in range(0, width, CHUNK):  # column chunks: small temporaries
            xs = slice(x0, x0 + CHUNK)
            valid = self.valid[:n, xs]
            wsum = self.wsum[:n, xs]
            denom = np.where(wsum > 0, wsum, 1)
            fused[:, :, xs] = _to_dtype(self.fsum[:, :n, xs] / denom, valid, self.dtype,
                                        self.nodata)
            if cls is not None and self.seg is not None:
                c = self.seg[:, :n, xs].argmax(axis=0).astype(np.uint8)
                c[~valid] = SEGMENTATION_NODATA
                cls[0, :, xs] = c
            if q is not None and self.qsum is not None:
                q[:, :, xs] = np.where(valid, self.qsum[:, :n, xs] / denom, np.nan)
        valid_rows = self.valid[:n].copy()
        for a in (self.fsum, self.seg, self.qsum):
            if a is not None:
                _shift(a, n)
        for b in (self.wsum, self.valid):
            _shift(b[None], n)
        rows = FinishedRows(self.y, fused, cls, q, valid=valid_rows)
        self.y = upto
        return rows


class DirectStrip:
    """For plans whose strips do not overlap (the composites' strips, a raster of one tile): every
    pixel comes from exactly one result, so results are converted to the output dtype as they
    arrive, with no float accumulators. Same interface as ``StripBuffer``."""

    def __init__(self, plan: WindowPlan, width: int, count: int, k: int, dtype: str,
                 nodata: Union[float, int, None], num_classes: int, quality: bool) -> None:
        self.count, self.width, self.k = count, width, k
        self.quality, self.classes = quality, num_classes > 0
        self.dtype, self.nodata = np.dtype(dtype), nodata
        self.rows: FinishedRows | None = None  # the current strip, filled by ``add``
        self.valid = np.zeros((0, width), bool)

    @staticmethod
    def fits(plan: WindowPlan) -> bool:
        """True when no two tiles or strips of ``plan`` share a pixel."""
        return plan.disjoint

    def mark_valid(self, y0: int, any_valid: np.ndarray, x0: int = 0) -> None:
        """``any_valid`` (h, w): where some input is, from raster (y0, x0). Column 0 starts a
        new strip with new arrays (the writers may keep the previous ones)."""
        h, w = any_valid.shape
        if x0 == 0:
            self.valid = np.zeros((h, self.width), bool)
            self.rows = FinishedRows(
                y0, np.empty((self.count, h, self.width), self.dtype),
                np.empty((1, h, self.width), np.uint8) if self.classes else None,
                np.empty((self.k, h, self.width), np.float32) if self.quality else None,
                valid=self.valid)
        self.valid[:, x0:x0 + w] = any_valid

    def add(self, y: int, x: int, weight: np.ndarray, fused: np.ndarray | None,
            quality: np.ndarray | None, seg: np.ndarray | None) -> None:
        """Convert one result (bands, h, w) at raster (y, x); ``weight`` is 1 by construction."""
        rows = self.rows
        assert rows is not None, "mark_valid starts every strip"
        first = next(a for a in (fused, quality, seg) if a is not None)
        h, w = first.shape[-2:]
        ys, xs = slice(y - rows.y, y - rows.y + h), slice(x, x + w)
        valid = self.valid[ys, xs]
        if fused is not None:
            rows.fused[:, ys, xs] = _to_dtype(fused, valid, self.dtype, self.nodata)
        if quality is not None and rows.quality is not None:
            rows.quality[:, ys, xs] = np.where(valid, quality, np.nan)
        if seg is not None and rows.classes is not None:
            rows.classes[0, ys, xs] = np.where(valid, seg.argmax(axis=0), SEGMENTATION_NODATA)

    def take(self, upto: int) -> FinishedRows | None:
        """The current strip's rows (``upto`` is the strip's end: strips do not overlap)."""
        rows, self.rows = self.rows, None
        return rows if rows is not None and upto > rows.y else None


Buffer = Union[StripBuffer, DirectStrip]


def _shift(a: np.ndarray, n: int) -> None:
    """Drop the first n rows (axis 1) and zero the freed tail, in place."""
    keep = a.shape[1] - n
    if keep > 0:
        a[:, :keep] = a[:, n:].copy()
    a[:, max(keep, 0):] = 0


def _to_dtype(values: np.ndarray, valid: np.ndarray, dtype: np.dtype,
              nodata: Union[float, int, None]) -> np.ndarray:
    """Round/clip to the output dtype and put nodata where no input was valid."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        out = np.clip(np.rint(values), info.min, info.max).astype(dtype)
    else:
        out = values.astype(dtype)
    return put_nodata(out, valid, nodata)


def put_nodata(out: np.ndarray, valid: np.ndarray, nodata: Union[float, int, None]
               ) -> np.ndarray:
    """``out`` (C, h, w) with nodata (NaN where none is declared) where no input was valid."""
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        out[:, ~valid] = nodata
    else:
        out[:, ~valid] = np.nan
    return out


DEVICE_DTYPES = ("uint8", "int8", "uint16", "int16", "float32", "float64")  # see device_blend


def blend_device(method: str, runner: ModelRunner | None) -> str | None:
    """Where a run blends: the runner's device for learned fusion on CUDA, else None (numpy)."""
    return runner.blend_device if runner is not None and method == "learned" else None


def buffer_for(plan: WindowPlan, width: int, count: int, k: int, dtype: str,
               nodata: Union[float, int, None], num_classes: int, quality: bool,
               device: str | None = None) -> Buffer:
    """``DirectStrip`` where no two tiles of ``plan`` overlap (composites: no float
    accumulators), else the rolling ``StripBuffer``; with ``device`` (a learned run whose
    runner blends on its GPU) the same rolling buffer held there (device_blend.py). The local
    run and every chunk choose here, so both convert the same way."""
    if DirectStrip.fits(plan):
        return DirectStrip(plan, width, count, k, dtype, nodata, num_classes, quality)
    if device is not None and np.dtype(dtype).name in DEVICE_DTYPES:
        from .device_blend import DeviceStripBuffer  # imports torch: only when a net runs

        return cast(Buffer, DeviceStripBuffer(plan, width, count, k, dtype, nodata,
                                              num_classes, quality, device))
    return StripBuffer(plan, width, count, k, dtype, nodata, num_classes, quality)
