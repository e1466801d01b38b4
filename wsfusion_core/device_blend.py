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

from typing import Any, NamedTuple, Sequence, Union

import numpy as np
import torch

from .blend import FinishedRows, StripBuffer, put_nodata
from .classes import SEGMENTATION_NODATA
from .runner import upload
from .windows import Tile, WindowPlan, row_passes


class DeviceStripBuffer:
    """``StripBuffer`` on ``device``: ``take`` returns numpy rows. The learned engine blends
    with ``add_tiles`` (the runner's ``learned_on_device`` results); ``add`` with
    ``tile_weight`` keeps the buffer interface tile by tile, the order ``add_tiles`` must
    reproduce (the tests compare the two on the CPU and on CUDA)."""

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
        self.wsum = torch.zeros((h, width), dtype=work, device=dev)  # as StripBuffer's
        self.valid = torch.zeros((h, width), dtype=torch.bool, device=dev)
        self.seg = (torch.zeros((num_classes, h, width), dtype=f32, device=dev)
                    if num_classes else None)
        self.qsum = torch.zeros((k, h, width), dtype=f32, device=dev) if quality else None
        self.dtype, self.nodata = dt, nodata
        self._axis: dict[tuple[int, str, int], torch.Tensor] = {}  # 1-D weights, on the device
        self._pass_cache: dict[tuple[int, int, int], list[Pass]] = {}  # add_tiles' passes

    def _axis_weight(self, plan: WindowPlan, kind: str, i: int) -> torch.Tensor:
        """Row (``r``) or column (``c``) ``i``'s 1-D weights, uploaded once per plan."""
        key = (id(plan), kind, i)
        if key not in self._axis:
            self._axis[key] = upload((plan.rows if kind == "r" else plan.cols).weights[i],
                                     self._name)
        return self._axis[key]

    def tile_weight(self, plan: WindowPlan, tile: Tile) -> torch.Tensor:
        """``plan.weight(tile)`` on the device (the same float32 outer product)."""
        return (self._axis_weight(plan, "r", tile.row)[:, None]
                * self._axis_weight(plan, "c", tile.col)[None, :])

    def _passes(self, plan: WindowPlan, tiles: Sequence[Tile]) -> list[Pass]:
        """``windows.row_passes`` of these columns on the device, computed once per plan."""
        key = (id(plan), tiles[0].col, len(tiles))
        if key not in self._pass_cache:
            dev = self.device
            self._pass_cache[key] = [
                Pass(p.runs, torch.from_numpy(p.columns).to(dev),
                     torch.from_numpy(p.weight).to(dev),
                     slice(int(p.columns[0]), int(p.columns[-1]) + 1) if p.contiguous else None)
                for p in row_passes(plan, [t.col for t in tiles])]
        return self._pass_cache[key]

    def mark_valid(self, y0: int, any_valid: np.ndarray, x0: int = 0) -> None:
        h, w = any_valid.shape
        # upload: a plain copy to the GPU would wait for every queued network first
        self.valid[y0 - self.y:y0 - self.y + h, x0:x0 + w] |= upload(any_valid, self._name)

    # The same arithmetic as the numpy buffer's, written once: it only uses slicing and ``+=``.
    add = StripBuffer.add

    def add_tiles(self, plan: WindowPlan, tiles: Sequence[Tile], fused: torch.Tensor,
                  quality: torch.Tensor | None, seg: torch.Tensor | None) -> None:
        """``add`` for consecutive tiles of one plan row at once: (B, bands, T, T) results of
        ``tiles``, padded. The same sums in the same order as calling ``add`` tile by tile
        (see ``row_passes``), in a few operations per row instead of a few per tile."""
        t0 = tiles[0]
        h = t0.height
        ys = slice(t0.y - self.y, t0.y - self.y + h)
        pairs: list[tuple[torch.Tensor, torch.Tensor | None]] = [(self.wsum[None], None)]
        for acc, res in ((self.fsum, fused), (self.qsum, quality), (self.seg, seg)):
            if acc is not None and res is not None:
                pairs.append((acc, res))
        rw = self._axis_weight(plan, "r", t0.row)
        for p in self._passes(plan, tiles):  # in order: the order of the sums at every pixel
            weight = rw[:, None] * p.weight[None, :]  # plan.weight's float32 products
            for acc, res in pairs:
                # res (B, bands, T, T) → (bands, h, the pass's columns): one copy of slices
                # (measured on the CPU: 20-100x faster than an index gather)
                term = weight[None] if res is None else weight * torch.cat(
                    [res[b, :, :h, a:e] for b, a, e in p.runs], dim=-1)
                if p.span is not None:
                    acc[:, ys, p.span] += term
                else:  # each column once: the same ``+`` as ``+=``
                    acc[:, ys].index_add_(-1, p.columns, term.to(acc.dtype))

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
            parts["quality"] = torch.where(valid, (self.qsum[:, :n] / denom).float(),
                                           torch.full((), float("nan"), device=self.device))
        # Queued before the shifts below, so they copy these rows (same stream); copy=True:
        # on the CPU ``to`` would otherwise return a view the shifts overwrite.
        host = to_host(parts)
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


class Pass(NamedTuple):
    """One step of ``add_tiles`` on the device (``windows.RowPass``): the raster columns
    ``columns`` (``span``: the same as a slice where they are contiguous) get the slices
    ``runs`` of the tiles' results, with the column weights ``weight``."""

    runs: list[tuple[int, int, int]]
    columns: torch.Tensor
    weight: torch.Tensor
    span: slice | None


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
                            h["quality"].numpy() if "quality" in h else None,
                            valid=h["valid"].numpy())


def to_host(parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Queue each tensor's copy to the host (pinned on CUDA, so the copies run while the host
    goes on; ``PendingRows`` waits for them). The one place results leave the device."""
    return {k: v.to("cpu", non_blocking=True, copy=True) for k, v in parts.items()}


def _shift(a: torch.Tensor, n: int) -> None:
    """Drop the first n rows (axis 1) and zero the freed tail, in place."""
    keep = a.shape[1] - n
    if keep > 0:
        a[:, :keep] = a[:, n:].clone()
    a[:, max(keep, 0):] = 0
