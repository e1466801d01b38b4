"""Strips read one ahead in a thread: the same arrays as reading in turn, and no thread left
behind when the caller stops early (an error, a cancel)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from helpers import smooth_image, write_raster
from rasterio.windows import Window

from wsfusion_core.grid import AlignedReader, align
from wsfusion_core.strips import read_strip, strips
from wsfusion_core.windows import plan_windows


def _readers(tmp_path):
    paths = []
    for i in range(3):
        img = smooth_image(90, 70, seed=i)
        valid = np.ones((90, 70), bool)
        valid[10 * i:10 * i + 15, 20:40] = False
        paths.append(write_raster(tmp_path / f"in{i}.tif", np.where(valid, img, 0), nodata=0))
    al = align(paths)
    return al.grid, [AlignedReader(i, al.grid) for i in al.inputs]


def _reader_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("wsfusion-read")]


def test_prefetched_strips_equal_reads_in_turn(tmp_path):
    grid, readers = _readers(tmp_path)
    plan = plan_windows(grid.height, grid.width, 32, 8)
    with strips(readers, plan, grid.width) as ahead:
        got = list(ahead)
    assert [r for r, _, _ in got] == list(range(plan.rows.count))
    for r, data, valid in got:
        y0, y1 = plan.row_span(r)
        want_d, want_v = read_strip(readers, Window(0, y0, grid.width, y1 - y0))
        assert data.shape == (3, 3, y1 - y0, grid.width)
        np.testing.assert_array_equal(data, want_d)
        np.testing.assert_array_equal(valid, want_v)
    assert not all(valid.all() for _, _, valid in got)  # the holes are there
    assert not _reader_threads()
    for rd in readers:
        rd.close()


def test_stopping_early_leaves_no_reader_thread(tmp_path):
    grid, readers = _readers(tmp_path)
    plan = plan_windows(grid.height, grid.width, 32, 8)
    with pytest.raises(RuntimeError, match="stop"):
        with strips(readers, plan, grid.width) as ahead:
            for r, _, _ in ahead:
                if r == 1:
                    raise RuntimeError("stop")
    assert not _reader_threads()
    for rd in readers:
        rd.close()
