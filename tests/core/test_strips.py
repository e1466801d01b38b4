"""Strips read one ahead in a thread: the same arrays as reading in turn, and no thread left
behind when the caller stops early (an error, a cancel)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import rasterio
from helpers import smooth_image, write_raster
from rasterio.windows import Window

from wsfusion_core.grid import AlignedReader, align
from wsfusion_core.strips import read_strip, strips
from wsfusion_core.windows import plan_strips, plan_windows


@pytest.fixture
def scene(tmp_path):
    """(grid, readers) of three inputs with nodata holes; the readers are closed afterwards."""
    paths = []
    for i in range(3):
        img = smooth_image(90, 70, seed=i)
        valid = np.ones((90, 70), bool)
        valid[10 * i:10 * i + 15, 20:40] = False
        paths.append(write_raster(tmp_path / f"in{i}.tif", np.where(valid, img, 0), nodata=0))
    al = align(paths)
    readers = [AlignedReader(i, al.grid) for i in al.inputs]
    yield al.grid, readers
    for rd in readers:
        rd.close()


def _reader_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("wsfusion-read")]


def test_prefetched_strips_equal_reads_in_turn(scene):
    grid, readers = scene
    plan = plan_windows(grid.height, grid.width, 32, 8)
    with strips(readers, plan, grid.width) as ahead:
        got = list(ahead)
    assert [s.row for s in got] == list(range(plan.rows.count))
    assert all(s.x == 0 and s.last for s in got)
    for s in got:
        y0, y1 = plan.row_span(s.row)
        want_d, want_v = read_strip(readers, Window(0, y0, grid.width, y1 - y0))
        assert s.data.shape == (3, 3, y1 - y0, grid.width)
        np.testing.assert_array_equal(s.data, want_d)
        np.testing.assert_array_equal(s.valid, want_v)
    assert not all(s.valid.all() for s in got)  # the holes are there
    assert not _reader_threads()


def test_stopping_early_leaves_no_reader_thread(scene):
    grid, readers = scene
    plan = plan_windows(grid.height, grid.width, 32, 8)
    with pytest.raises(RuntimeError, match="stop"):
        with strips(readers, plan, grid.width) as ahead:
            for s in ahead:
                if s.row == 1:
                    raise RuntimeError("stop")
    assert not _reader_threads()


def test_composite_pieces_tile_the_strips(scene):
    """Pieces of a disjoint plan: every pixel read once, in order, the last piece flagged."""
    grid, readers = scene
    plan = plan_strips(grid.height, grid.width, 32, 32)
    with strips(readers, plan, grid.width, pieces=True) as ahead:
        got = list(ahead)
    assert [(s.row, s.x, s.last) for s in got] == [
        (r, x, x == plan.cols.starts[-1]) for r in range(3) for x in (0, 32, 64)]
    seen = np.zeros((grid.height, grid.width), int)
    for s in got:
        y0 = plan.rows.starts[s.row]
        h, w = s.valid.shape[-2:]
        seen[y0:y0 + h, s.x:s.x + w] += 1
        want_d, _ = read_strip(readers, Window(s.x, y0, w, h))
        np.testing.assert_array_equal(s.data, want_d)
    assert (seen == 1).all()


@pytest.mark.parametrize("method", ["mean", "median"])
def test_composite_read_in_pieces_equals_the_whole_raster_composite(tmp_path, monkeypatch,
                                                                    method):
    from wsfusion_core import engines
    from wsfusion_core.api import fuse
    from wsfusion_core.composite import composite

    monkeypatch.setattr(engines, "COMPOSITE_COLUMNS", 256)  # 3 pieces across 600 columns
    paths, stack, valid = [], [], []
    for i in range(3):
        img = smooth_image(300, 600, seed=i)
        v = np.ones((300, 600), bool)
        v[40 * i:40 * i + 100, 100 * i:100 * i + 300] = False
        paths.append(write_raster(tmp_path / f"in{i}.tif", np.where(v, img, 0), nodata=0))
        stack.append(np.where(v, img, 0))
        valid.append(v)
    out = tmp_path / "out.tif"
    res = fuse(paths, out, method=method)
    assert res.tiles == 2 * 3  # 2 strips of 256 rows × 3 pieces
    want, any_valid = composite(np.stack(stack), np.stack(valid), method)
    want = np.where(any_valid, np.clip(np.rint(want), 0, 255), 0).astype(np.uint8)
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(), want)
