"""The rolling strip of accumulators (blend.StripBuffer) held on the runner's GPU: tile results
never leave the device; only finished rows come back, in the output dtype.

On a GPU the per-pixel CPU work around the networks (float weights and sums per tile, the
normalisation of every finished row) costs more than the networks themselves (docs/benchmark.md,
GPU), so a learned run on CUDA blends here and brings back only what the writers need: the fused
bands in their dtype, the class map as uint8, the quality weights as float32. Same arithmetic as
``StripBuffer`` in the same float types (float32, float64 for wider outputs), so the outputs stay
within a grey level of the CPU path's (a CUDA test checks it; a CPU test runs this module on
the CPU against ``StripBuffer``). Only imported when a network runs.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np
import torch

from .blend import FinishedRows, StripBuffer, put_nodata
from .classes import SEGMENTATION_NODATA
from .runner import upload
from .windows import Tile, WindowPlan


class DeviceStripBuffer:
    """``StripBuffer`` on ``device``: ``add`` takes tensors on that device (the runner's
    ``learned_on_device``), ``take`` returns numpy rows. Same interface otherwise."""

    on_device = True

    def __init__(self, plan: WindowPlan, width: int, count: int, k: int, dtype: str,
                 nodata: Union[float, int, None], num_classes: int, quality: bool,
                 device: str) -> None:
        h = max(plan.rows.tile, max(plan.rows.sizes))
        dt = np.dtype(dtype)
        work = torch.float64 if dt.itemsize > 2 or dt == np.float64 else torch.float32
        self.device, self._name = torch.device(device), device
        self.y = 0
        dev, f32 = self.device, torch.float32
        self.fsum = torch.zeros((count, h, width), dtype=work, device=dev)
        self.wsum = torch.zeros((h, width), dtype=f32, device=dev)
        self.valid = torch.zeros((h, width), dtype=torch.bool, device=dev)
        self.seg = (torch.zeros((num_classes, h, width), dtype=f32, device=dev)
                    if num_classes else None)
        self.qsum = torch.zeros((k, h, width), dtype=f32, device=dev) if quality else None
        self.dtype, self.nodata = dt, nodata
        self._axis: dict[tuple[int, str, int], torch.Tensor] = {}  # 1-D weights, on the device

    def tile_weight(self, plan: WindowPlan, tile: Tile) -> torch.Tensor:
        """``plan.weight(tile)`` on the device (the same float32 outer product), from 1-D
        weights uploaded once per plan row and column."""
        def axis(kind: str, i: int) -> torch.Tensor:
            key = (id(plan), kind, i)
            if key not in self._axis:
                w = (plan.rows if kind == "r" else plan.cols).weights[i]
                self._axis[key] = upload(w, self._name)
            return self._axis[key]

        return axis("r", tile.row)[:, None] * axis("c", tile.col)[None, :]

    def mark_valid(self, y0: int, any_valid: np.ndarray, x0: int = 0) -> None:
        h, w = any_valid.shape
        # upload: a plain copy to the GPU would wait for every queued network first
        self.valid[y0 - self.y:y0 - self.y + h, x0:x0 + w] |= upload(any_valid, self._name)

    # The same arithmetic as the numpy buffer's, written once: it only uses slicing and ``+=``.
    add = StripBuffer.add

    def take(self, upto: int) -> PendingRows | None:
        """``StripBuffer.take`` computed on the device. The rows come back as ``PendingRows``:
        their copies to the host are queued, not waited for, so the loop can queue the next
        strip's networks before it writes these rows (the GPU computes while the host writes)."""
        n = upto - self.y
        if n <= 0:
            return None
        valid = self.valid[:n]
        wsum = self.wsum[:n]
        denom = torch.where(wsum > 0, wsum, torch.ones((), dtype=wsum.dtype,
                                                       device=self.device))
        values = self.fsum[:, :n] / denom
        if self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            values = torch.round(values).clamp_(float(info.min), float(info.max))
            values = values.to(torch.uint8 if self.dtype == np.uint8 else torch.int32)
        else:
            values = values.to(torch.float32 if self.dtype == np.float32 else torch.float64)
        parts: dict[str, torch.Tensor] = {"fused": values, "valid": valid}
        if self.seg is not None:
            c = self.seg[:, :n].argmax(dim=0).to(torch.uint8)
            c.masked_fill_(~valid, SEGMENTATION_NODATA)  # a boolean index would sync
            parts["classes"] = c[None]
        if self.qsum is not None:
            parts["quality"] = torch.where(valid, self.qsum[:, :n] / denom,
                                           torch.full((), float("nan"), device=self.device))
        # Queued before the shifts below, so they copy these rows (same stream); copy=True:
        # on the CPU ``to`` would otherwise return a view the shifts overwrite.
        host = {k: v.to("cpu", non_blocking=True, copy=True) for k, v in parts.items()}
        event = None
        if self.device.type == "cuda":
            event = torch.cuda.Event()
            event.record()
        for a in (self.fsum, self.seg, self.qsum):
            if a is not None:
                _shift(a, n)
        for b in (self.wsum, self.valid):
            _shift(b[None], n)
        rows = PendingRows(self.y, host, event, self.dtype, self.nodata)
        self.y = upto
        return rows


class PendingRows:
    """Finished rows whose copies to the host may still be in flight; ``result`` waits for
    them and returns the ``FinishedRows`` (nodata put in on the host, as ``_to_dtype`` does)."""

    def __init__(self, y: int, host: dict[str, torch.Tensor], event: Any,
                 dtype: np.dtype, nodata: Union[float, int, None]) -> None:
        self.y, self.host, self.event = y, host, event
        self.dtype, self.nodata = dtype, nodata

    def result(self) -> FinishedRows:
        if self.event is not None:
            self.event.synchronize()
        h = self.host
        fused = h["fused"].numpy().astype(self.dtype, copy=False)
        put_nodata(fused, h["valid"].numpy(), self.nodata)
        return FinishedRows(self.y, fused,
                            h["classes"].numpy() if "classes" in h else None,
                            h["quality"].numpy() if "quality" in h else None)


def _shift(a: torch.Tensor, n: int) -> None:
    """Drop the first n rows (axis 1) and zero the freed tail, in place."""
    keep = a.shape[1] - n
    if keep > 0:
        a[:, :keep] = a[:, n:].clone()
    a[:, max(keep, 0):] = 0
