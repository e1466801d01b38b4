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
from wsfusion_core.strips import BlockRows, block_rows, read_strip, strips
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


def _spy(readers):
    """Record the row ranges each real reader is asked for."""
    asked: list[list[tuple[int, int]]] = [[] for _ in readers]
    for rd, log in zip(readers, asked):
        real = rd.read

        def read(window, *a, _real=real, _log=log, **kw):
            _log.append((int(window.row_off), int(window.row_off + window.height)))
            return _real(window, *a, **kw)

        rd.read = read
    return asked


@pytest.mark.parametrize("block", [1, 7, 16, 24, 256])
def test_block_rows_read_every_row_once_and_give_the_strips(scene, block):
    """Overlapping strips (32 rows every 24) read in block rows: the same arrays as reading
    each strip alone, every input row asked for exactly once, each read ending on a block
    boundary or the raster's end."""
    grid, readers = scene
    plan = plan_windows(grid.height, grid.width, 32, 8)
    spans = [plan.row_span(r) for r in range(plan.rows.count)]
    want = [read_strip(readers, Window(0, y0, grid.width, y1 - y0)) for y0, y1 in spans]
    asked = _spy(readers)
    rows = BlockRows(readers, 0, grid.width, grid.height, block)
    for i, (y0, y1) in enumerate(spans):
        nxt = spans[i + 1][0] if i + 1 < len(spans) else None
        d, v = rows.take(y0, y1, nxt)
        assert d.flags.c_contiguous and v.flags.c_contiguous
        np.testing.assert_array_equal(d, want[i][0])
        np.testing.assert_array_equal(v, want[i][1])
    for log in asked:
        assert [a for a, _ in log] == [0] + [b for _, b in log[:-1]]  # no row twice, no gap
        assert log[-1][1] == grid.height
        assert all(b % block == 0 or b == grid.height for _, b in log)
    assert rows.kept == []


def test_chunk_strips_read_in_block_rows_equal_reads_in_turn(scene):
    """A chunk's sub-plan (origin inside the raster): block rows counted from the raster's
    top, the strips those of the chunk's windows."""
    grid, readers = scene
    oy, ox, h, w = 13, 9, 60, 40
    plan = plan_windows(h, w, 32, 8)
    assert 1 < block_rows(readers) < h  # the test rasters' strips: reads end past a strip
    with strips(readers, plan, w, origin=(oy, ox)) as ahead:
        got = list(ahead)
    assert len(got) == plan.rows.count
    for s in got:
        y0, y1 = plan.row_span(s.row)
        want_d, want_v = read_strip(readers, Window(ox, oy + y0, w, y1 - y0))
        np.testing.assert_array_equal(s.data, want_d)
        np.testing.assert_array_equal(s.valid, want_v)


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
