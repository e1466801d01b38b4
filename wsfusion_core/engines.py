"""What turns one strip of aligned inputs into blended results: one engine per method.

``loop.run_plan`` owns the single loop over strips (read → engine → hand finished rows to the
writers); an engine only computes and blends. ``process_strip`` is a generator that yields the
work units it finished after each step (a batch of tiles, or a composite piece), so the caller
polls for cancel and reports progress in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Protocol

import numpy as np

from .blend import Buffer
from .composite import composite_chunks
from .windows import WindowPlan, batches, plan_strips, plan_windows

if TYPE_CHECKING:
    from .runner import ModelRunner


class Engine(Protocol):
    def process_strip(self, plan: WindowPlan, r: int, data: np.ndarray, valid: np.ndarray,
                      buffer: Buffer, x0: int = 0) -> Iterator[int]:
        """Blend tile-row ``r`` (all inputs; full width, or the piece from column ``x0`` for
        composites) into ``buffer``; yield units done."""
        ...


class LearnedEngine:
    """The paper's fusion: per-pixel quality weights from the network, applied to the original
    values of every band; optionally the segmentation of the fused view and the weights."""

    def __init__(self, runner: ModelRunner, scales: Any, bands: tuple[int, ...],
                 segmentation: bool, quality: bool) -> None:
        self.runner, self.scales, self.bands = runner, scales, bands
        self.segmentation, self.quality = segmentation, quality

    def process_strip(self, plan: WindowPlan, r: int, data: np.ndarray, valid: np.ndarray,
                      buffer: Buffer, x0: int = 0) -> Iterator[int]:
        assert x0 == 0, "network strips are read full width"
        tiles = plan.tiles_in_row(r)
        if getattr(buffer, "on_device", False):
            # A buffer on the runner's device (device_blend): steps of up to a whole row
            # (``Policy.row_tiles``) on tensors that never leave it; the networks still see
            # ``batch_size`` tiles per call.
            device: Any = buffer
            for group in batches(tiles, self.runner.policy.row_group):
                device.add_tiles(plan, group, *self.runner.learned_on_device(
                    group, plan, data, valid, self.scales, self.bands,
                    want_seg=self.segmentation, want_quality=self.quality))
                yield len(group)
            return
        for batch in batches(tiles, self.runner.batch_size):
            fused, qual, seg = self.runner.learned(
                batch, plan, data, valid, self.scales, self.bands,
                want_seg=self.segmentation, want_quality=self.quality)
            for i, t in enumerate(batch):
                h, w = t.height, t.width
                buffer.add(t.y, t.x, plan.weight(t), fused[i][:, :h, :w],
                           qual[i][:, :h, :w] if qual is not None else None,
                           seg[i][:, :h, :w] if seg is not None else None)
            yield len(batch)


class CompositeEngine:
    """Per-pixel mean or median of the valid inputs (numpy only); with a runner, also the
    segmentation of the composite, tile by tile."""

    def __init__(self, method: str, quality: bool, runner: ModelRunner | None = None,
                 scales: Any = None, bands: tuple[int, ...] = ()) -> None:
        self.method, self.quality = method, quality
        self.runner, self.scales, self.bands = runner, scales, bands

    def process_strip(self, plan: WindowPlan, r: int, data: np.ndarray, valid: np.ndarray,
                      buffer: Buffer, x0: int = 0) -> Iterator[int]:
        y0 = plan.rows.starts[r]
        w = plan.rows.weights[r][:, None]
        for x, comp, q in composite_chunks(data, valid, self.method, self.quality, self.bands):
            buffer.add(y0, x0 + x, w, comp, q, None)
        if self.runner is None:
            yield 1
            return
        for batch in batches(plan.tiles_in_row(r), self.runner.batch_size):
            seg = self.runner.segment(batch, plan, data, valid, self.scales, self.bands,
                                      self.method)
            for i, t in enumerate(batch):
                buffer.add(t.y, t.x, plan.weight(t), None, None,
                           seg[i][:, :t.height, :t.width])
            yield len(batch)


def make_engine(method: str, runner: ModelRunner | None, scales: Any, bands: tuple[int, ...],
                segmentation: bool, quality: bool) -> Engine:
    """The engine for ``method``; ``segmentation`` asks for the class map (needs ``runner``)."""
    if method == "learned" and runner is not None:
        return LearnedEngine(runner, scales, bands, segmentation, quality)
    return CompositeEngine(method, quality, runner if segmentation else None, scales, bands)


COMPOSITE_COLUMNS = 2048  # columns of a composite piece: 8 blocks, the same memory at any width


def plan(height: int, width: int, runner: ModelRunner | None, overlap: int,
         strip_rows: int) -> WindowPlan:
    """Network tiles when a model runs; else strips of ``strip_rows`` rows in pieces of
    ``COMPOSITE_COLUMNS`` columns."""
    if runner is not None:
        return plan_windows(height, width, runner.info.tile_size, overlap)
    return plan_strips(height, width, strip_rows, COMPOSITE_COLUMNS)
