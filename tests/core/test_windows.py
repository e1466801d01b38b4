"""The window plan: tiles cover the raster, end at its edge, and blend weights sum to 1."""

from __future__ import annotations

import numpy as np
import pytest

from wsfusion_core.windows import batches, pad_to, plan_axis, plan_strips, plan_windows


@pytest.mark.parametrize("length", [1, 100, 299, 300, 301, 537, 650, 700, 1000, 4099])
def test_axis_partition_of_unity(length):
    plan = plan_axis(length, 300, 64)
    acc = np.zeros(length)
    for s, w in zip(plan.starts, plan.weights):
        acc[s:s + len(w)] += w
    np.testing.assert_allclose(acc, 1.0, atol=1e-6)
    assert plan.starts[0] == 0
    assert plan.starts[-1] + plan.sizes[-1] == length  # last tile snaps to the edge
    # never a taper at the raster border
    assert plan.weights[0][0] == 1.0 and plan.weights[-1][-1] == 1.0


@pytest.mark.parametrize("length", [301, 650, 700, 4099])
def test_neighbours_overlap_at_least_requested(length):
    plan = plan_axis(length, 300, 64)
    ends = [s + z for s, z in zip(plan.starts, plan.sizes)]
    overlaps = [e - s for e, s in zip(ends, plan.starts[1:])]
    assert min(overlaps) >= 64
    assert all(z == 300 for z in plan.sizes)


def test_2d_weights_sum_to_one_and_tiles_cover():
    plan = plan_windows(650, 700, 300, 64)
    acc = np.zeros((650, 700))
    for r in range(plan.rows.count):
        for t in plan.tiles_in_row(r):
            acc[t.y:t.y + t.height, t.x:t.x + t.width] += plan.weight(t)
    np.testing.assert_allclose(acc, 1.0, atol=1e-6)
    assert plan.tile_count == plan.rows.count * plan.cols.count == 9
    # rows above the next tile-row's start are final
    assert plan.finished_before(0) == plan.rows.starts[1]
    assert plan.finished_before(plan.rows.count - 1) == 650


def test_zero_overlap_is_plain_tiling():
    plan = plan_axis(1000, 256, 0)
    assert plan.starts == (0, 256, 512, 744)  # block-aligned, last snapped to the edge
    assert all(float(w.min()) == 1.0 for w in plan.weights[:2])


def test_small_raster_is_padded_to_a_tile():
    plan = plan_axis(120, 300, 64)
    assert plan.count == 1 and plan.pad == 180 and plan.tile == 300
    a = np.arange(2 * 120 * 100, dtype=np.float32).reshape(2, 100, 120)
    p = pad_to(a, 300, 300)
    assert p.shape == (2, 300, 300)
    np.testing.assert_array_equal(p[:, :100, :120], a)
    np.testing.assert_array_equal(p[:, 100, :120], a[:, 98, :])  # reflection
    line = np.arange(5, dtype=np.float32).reshape(1, 1, 5)
    padded = pad_to(line, 300, 300)  # one row cannot reflect → edge padding
    assert padded.shape == (1, 300, 300)
    np.testing.assert_array_equal(padded[0, 299, :5], line[0, 0])


def test_strip_plan_is_full_width_blocks():
    plan = plan_strips(600, 333, 256)
    assert plan.rows.starts == (0, 256, 512) and plan.rows.sizes == (256, 256, 88)
    assert plan.cols.starts == (0,) and plan.cols.sizes == (333,)
    acc = np.zeros(600)
    for start, w in zip(plan.rows.starts, plan.rows.weights):
        acc[start:start + len(w)] += w
    np.testing.assert_array_equal(acc, 1.0)  # every row in exactly one strip, weight 1
    assert [plan.finished_before(r) for r in range(3)] == [256, 512, 600]


def test_batches_cover_items_in_order():
    items = list(range(10))
    assert [list(b) for b in batches(items, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert list(batches([], 4)) == []
