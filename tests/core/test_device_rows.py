"""Whole-row steps on the device path (issue 9, GPU host overhead): the tiles of a row are cut
from the strip in one gather, weighted in one step and blended in a few passes
(windows.row_passes). Float sums depend on their order, so every step must add exactly what the
tile-by-tile path adds, in the same order: on the CPU the outputs are compared bit for bit with
the tile-by-tile device buffer, the numpy buffer and the numpy engine path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers import engine_run, smooth_image, write_raster

from wsfusion_core import runner as rn
from wsfusion_core.blend import buffer_for
from wsfusion_core.weights import resolve_weights
from wsfusion_core.windows import plan_windows, row_passes

PLANS = [(700, 1250, 300, 64),  # the usual overlap: two passes
         (500, 900, 300, 180),  # overlaps of more than half a tile: three tiles per column
         (200, 1250, 300, 64),  # one padded tile row
         (700, 240, 300, 64)]   # one padded tile column
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.mark.parametrize("height,width,tile,overlap", PLANS)
def test_row_passes_add_every_tile_column_once_in_tile_order(height, width, tile, overlap):
    plan = plan_windows(height, width, tile, overlap)
    n = plan.cols.count
    for cols in (list(range(n)), list(range(n))[1:] or [0], list(range(n))[:2]):
        passes = row_passes(plan, cols)
        seen: dict[int, list[int]] = {}
        got = set()
        for p in passes:
            assert len(set(p.columns.tolist())) == len(p.columns)  # one tile per column
            for t, loc, x, w in zip(p.tile, p.local, p.columns, p.weight):
                c = cols[t]
                assert x == plan.cols.starts[c] + loc and 0 <= loc < plan.cols.sizes[c]
                assert w == plan.cols.weights[c][loc]
                seen.setdefault(int(x), []).append(c)
                got.add((c, int(loc)))
        assert got == {(c, i) for c in cols for i in range(plan.cols.sizes[c])}
        assert all(v == sorted(v) for v in seen.values())  # in tile order at every column
        assert passes[0].contiguous
        for p in passes:  # the runs, concatenated, are the pass
            assert [(cols[t], lo) for t, a, e in p.runs for lo in range(a, e)] == [
                (cols[t], int(lo)) for t, lo in zip(p.tile, p.local)]
            assert len(p.runs) <= len(cols)  # one slice per tile at most
    cover = np.zeros(width, int)
    for x, w in zip(plan.cols.starts, plan.cols.sizes):
        cover[x:x + w] += 1
    assert len(row_passes(plan, list(range(n)))) == cover.max() == (
        1 if n == 1 else 3 if overlap > tile // 2 else 2)
    assert row_passes(plan_windows(200, 240, 300, 64), [0])[0].columns.tolist() == list(
        range(240))  # a padded tile: its real columns only


def _results(plan, r: int, k: int, count: int, work: np.dtype, seed: int):
    """Random padded results for the tiles of row ``r``: (B, bands, T, T) each."""
    rng = np.random.default_rng(seed)
    b, th, tw = plan.cols.count, plan.rows.tile, plan.cols.tile
    f = (rng.random((b, count, th, tw)) * 255).astype(work)
    q = rng.random((b, k, th, tw), np.float32)  # any floats: only the sums are compared
    s = rng.random((b, 3, th, tw), np.float32)
    return f, q, s


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("height,width,tile,overlap", PLANS)
@pytest.mark.parametrize("group", [3, None])  # steps of 3 tiles: rows cut mid-way
def test_add_tiles_equals_adding_tile_by_tile(device, dtype, height, width, tile, overlap,
                                              group):
    plan = plan_windows(height, width, tile, overlap)
    k, count = 4, 3
    work = np.float64 if np.dtype(dtype).itemsize > 2 else np.float32
    rows: dict[str, list] = {"numpy": [], "tiles": [], "rows": []}
    bufs = {"numpy": buffer_for(plan, width, count, k, dtype, 0, 3, True),
            "tiles": buffer_for(plan, width, count, k, dtype, 0, 3, True, device=device),
            "rows": buffer_for(plan, width, count, k, dtype, 0, 3, True, device=device)}
    for r in range(plan.rows.count):
        y0, y1 = plan.row_span(r)
        valid = np.random.default_rng(r).random((y1 - y0, width)) > 0.05
        f, q, s = _results(plan, r, k, count, work, seed=r)
        tiles = plan.tiles_in_row(r)
        for name, buf in bufs.items():
            buf.mark_valid(y0, valid)
            if name == "rows":
                step = group or len(tiles)
                for i in range(0, len(tiles), step):
                    buf.add_tiles(plan, tiles[i:i + step],
                                  *(torch.from_numpy(a[i:i + step]).to(device) for a in (f, q, s)))
            for i, t in enumerate(tiles if name != "rows" else []):
                cut = [a[i][:, :t.height, :t.width] for a in (f, q, s)]
                if name == "numpy":
                    buf.add(t.y, t.x, plan.weight(t), *cut)
                else:
                    buf.add(t.y, t.x, buf.tile_weight(plan, t),
                            *(torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in cut))
            taken = buf.take(plan.finished_before(r))
            rows[name].append(taken.result() if hasattr(taken, "result") else taken)
    for a, b in zip(rows["tiles"], rows["rows"]):  # the same device, the same order: equal
        for field in ("fused", "classes", "quality"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    if device == "cpu":
        for a, b in zip(rows["numpy"], rows["rows"]):
            for field in ("fused", "classes", "quality"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def _stack(tmp_path, k: int, height: int, width: int) -> list:
    """K real GeoTIFFs: smooth content, nodata 0, a different hole in each."""
    paths = []
    for i in range(k):
        img = smooth_image(height, width, seed=i)
        img[:, 40 * i:40 * i + 90, 200 * i:200 * i + 150] = 0
        paths.append(write_raster(tmp_path / f"in_{i}.tif", img, nodata=0))
    return paths


def test_whole_row_device_path_equals_the_numpy_path(tmp_path):
    """The shipped networks on a 3 x 6 tile stack (K = 3, so network calls of 2 tiles hold an
    odd number of images): device steps of one batch (the CPU policy), of whole rows (as on
    CUDA) and of 4 tiles (rows cut mid-way) give the numpy path's outputs bit for bit."""
    inputs = _stack(tmp_path, 3, 700, 1450)
    runner = rn.load_runner(resolve_weights(None), "cpu", None, lambda _m: None, "test")
    assert runner.blend_device is None and runner.policy.row_group == runner.batch_size == 2
    want = engine_run(runner, inputs)
    for row_tiles, group in ((None, 2), (rn.ROW_TILES, 48), (3, 4)):
        policy = dataclasses.replace(runner.policy, device_side=True, row_tiles=row_tiles)
        assert policy.row_group == group
        got = engine_run(rn.ModelRunner(runner.model, runner.info, policy), inputs)
        for a, b in zip(want, got):
            np.testing.assert_array_equal(a, b)


def test_device_steps_are_whole_batches():
    policy = rn.policy_for("cuda")
    assert policy.device_side and policy.row_group == rn.TILES_GPU  # one batch per step
    assert f"{rn.TILES_GPU} tile(s) per step" in policy.describe()
    whole = dataclasses.replace(policy, row_tiles=rn.ROW_TILES)
    assert whole.row_group == 64  # 48 tiles rounded up to whole batches of 32
    assert rn.policy_for("cpu").row_group == rn.TILES_CPU
