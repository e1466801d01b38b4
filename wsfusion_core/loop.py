"""The engine loop shared by the local run (api.fuse) and every chunk task (chunked.run_chunk):
strips read one ahead (strips.py) → engine → buffer → finished rows to a sink. One loop, so a
chunked or cluster run computes exactly what the local run computes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from .blend import Buffer, FinishedRows
from .engines import Engine
from .errors import Cancelled
from .grid import AlignedReader
from .strips import strips
from .windows import WindowPlan

if TYPE_CHECKING:
    from .selection import Selector


def poll(cancel: Callable[[], bool] | None) -> None:
    """Raise ``Cancelled`` when the caller asked to stop."""
    if cancel is not None and cancel():
        raise Cancelled("cancelled by the caller; no output was written")


def run_plan(plan: WindowPlan, readers: Sequence[AlignedReader], engine: Engine,
             buffer: Buffer, sink: Callable[[FinishedRows], None], *,
             origin: tuple[int, int] = (0, 0), cancel: Callable[[], bool] | None = None,
             tick: Callable[[int], None] | None = None, pieces: bool = False,
             select: Selector | None = None) -> None:
    """For each strip of ``plan`` (with ``pieces``, each piece of a disjoint composite plan),
    read every input — the next strip in a background thread — let the engine blend it into
    ``buffer`` and hand the finished rows to ``sink``. ``origin`` is where the plan starts in
    the raster: (0, 0) for a whole-raster run, a chunk's corner for its sub-plan. ``select``
    (best-pixel selection) replaces the blended pixels of finished rows by the chosen input's,
    from the strip that holds them."""
    pending: Any = None  # a device buffer's rows, written once the next strip is queued
    with strips(readers, plan, plan.cols.length, pieces=pieces, origin=origin) as ahead:
        for s in ahead:
            poll(cancel)
            buffer.mark_valid(plan.rows.starts[s.row], s.valid.any(axis=0), s.x)
            for units in engine.process_strip(plan, s.row, s.data, s.valid, buffer, s.x):
                if tick is not None:
                    tick(units)
                poll(cancel)
            if select is not None:
                select.after_piece(buffer, s.x, s.data, s.valid)
            if s.last:
                rows: Any = buffer.take(plan.finished_before(s.row))
                if select is not None:
                    rows = select.after_take(rows, buffer, s.data, s.valid,
                                             plan.rows.starts[s.row])
                if pending is not None:
                    sink(pending.result())
                    pending = None
                if hasattr(rows, "result"):  # device_blend.PendingRows: copies in flight
                    pending = rows
                elif rows is not None:
                    sink(rows)
            del s
    if pending is not None:
        sink(pending.result())
