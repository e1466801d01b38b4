"""StripBuffer: weighted accumulation normalised by the weight sum, rows handed back in order
and in the output dtype, nodata where no input was valid, memory bounded by one tile height."""

from __future__ import annotations

import numpy as np

from wsfusion_core.blend import StripBuffer
from wsfusion_core.classes import SEGMENTATION_NODATA
from wsfusion_core.windows import plan_windows


def _blend_all(plan, values, dtype="uint8", nodata=0, invalid_rows=()):
    """Feed every tile of ``plan`` the matching window of ``values`` (C, H, W); return the
    rows handed back, stacked."""
    c, height, width = values.shape
    buf = StripBuffer(plan, width, c, 2, dtype, nodata, num_classes=3, quality=True)
    out, starts = [], []
    for r in range(plan.rows.count):
        y0, y1 = plan.row_span(r)
        valid = np.ones((y1 - y0, width), bool)
        for y in invalid_rows:
            if y0 <= y < y1:
                valid[y - y0] = False
        buf.mark_valid(y0, valid)
        for t in plan.tiles_in_row(r):
            win = values[:, t.y:t.y + t.height, t.x:t.x + t.width].astype(np.float32)
            seg = np.zeros((3, t.height, t.width), np.float32)
            seg[2] = 1.0
            q = np.stack([np.full((t.height, t.width), 0.25, np.float32),
                          np.full((t.height, t.width), 0.75, np.float32)])
            buf.add(t.y, t.x, plan.weight(t), win, q, seg)
        rows = buf.take(plan.finished_before(r))
        if rows is not None:
            starts.append((rows.y, rows.fused.shape[1]))
            out.append(rows)
        assert buf.fsum.shape[1] == plan.rows.tile  # never more than one tile height
    return out, starts


def test_identity_tiles_reproduce_the_raster_in_row_order():
    rng = np.random.default_rng(1)
    values = rng.integers(1, 255, (2, 70, 90)).astype(np.uint8)
    plan = plan_windows(70, 90, 32, 8)
    out, starts = _blend_all(plan, values)
    # consecutive, gap-free row ranges covering the raster
    assert starts[0][0] == 0 and sum(n for _, n in starts) == 70
    assert all(a + n == b for (a, n), (b, _) in zip(starts, starts[1:]))
    fused = np.concatenate([r.fused for r in out], axis=1)
    assert fused.dtype == np.uint8
    np.testing.assert_array_equal(fused, values)
    classes = np.concatenate([r.classes for r in out], axis=1)
    assert (classes == 2).all()
    quality = np.concatenate([r.quality for r in out], axis=1)
    np.testing.assert_allclose(quality[0], 0.25, rtol=1e-6)
    np.testing.assert_allclose(quality[1], 0.75, rtol=1e-6)


def test_rows_without_valid_input_become_nodata():
    values = np.full((1, 40, 20), 100, np.uint16)
    plan = plan_windows(40, 20, 16, 4)
    out, _ = _blend_all(plan, values, dtype="uint16", nodata=7, invalid_rows=(3, 30))
    fused = np.concatenate([r.fused for r in out], axis=1)[0]
    classes = np.concatenate([r.classes for r in out], axis=1)[0]
    quality = np.concatenate([r.quality for r in out], axis=1)
    assert (fused[[3, 30]] == 7).all() and (fused[[0, 4, 29, 31]] == 100).all()
    assert (classes[[3, 30]] == SEGMENTATION_NODATA).all()
    assert np.isnan(quality[:, [3, 30]]).all() and not np.isnan(quality[:, 4]).any()


def test_integer_output_is_rounded_and_clipped():
    plan = plan_windows(4, 4, 4, 0)
    buf = StripBuffer(plan, 4, 1, 1, "uint8", 0, num_classes=0, quality=False)
    buf.mark_valid(0, np.ones((4, 4), bool))
    values = np.array([[-5.0, 0.4, 0.6, 300.0]] * 4, np.float32)[None]
    buf.add(0, 0, np.ones((4, 4), np.float32), values, None, None)
    rows = buf.take(4)
    assert rows is not None and rows.classes is None and rows.quality is None
    np.testing.assert_array_equal(rows.fused[0, 0], [0, 0, 1, 255])
    assert buf.take(4) is None  # nothing left above row 4


def test_direct_strip_equals_the_accumulating_buffer():
    """Where strips do not overlap (composites), converting each result straight to the output
    dtype gives the rows the float accumulators give, without holding them."""
    from wsfusion_core.blend import DirectStrip
    from wsfusion_core.windows import plan_strips

    rng = np.random.default_rng(3)
    values = rng.uniform(0, 255, (3, 70, 50)).astype(np.float32)
    plan = plan_strips(70, 50, 32)
    assert DirectStrip.fits(plan) and not DirectStrip.fits(plan_windows(70, 50, 32, 8))
    bufs = [StripBuffer(plan, 50, 3, 2, "uint8", 0, num_classes=3, quality=True),
            DirectStrip(plan, 50, 3, 2, "uint8", 0, num_classes=3, quality=True)]
    got: list[list] = [[], []]
    for r in range(plan.rows.count):
        y0, y1 = plan.row_span(r)
        valid = rng.random((y1 - y0, 50)) > 0.1
        seg = rng.random((3, y1 - y0, 50)).astype(np.float32)
        q = rng.random((2, y1 - y0, 50)).astype(np.float32)
        for buf, out in zip(bufs, got):
            buf.mark_valid(y0, valid)
            buf.add(y0, 0, plan.rows.weights[r][:, None], values[:, y0:y1], q, seg)
            out.append(buf.take(plan.finished_before(r)))
    for a, b in zip(*got):
        assert a.y == b.y
        np.testing.assert_array_equal(a.fused, b.fused)
        np.testing.assert_array_equal(a.classes, b.classes)
        np.testing.assert_array_equal(a.quality, b.quality)
