"""The runner: its inference form (channels_last, folded BatchNorm, images per call sized for the
device) gives the outputs of the plain model run the way the engine ran it before issue 9, on
the shipped sample and the shipped weights; the CUDA path agrees with the CPU path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from helpers import engine_run, run_python
from rasterio.windows import Window

from wsfusion_core import runner as rn
from wsfusion_core.api import fuse
from wsfusion_core.blend import buffer_for
from wsfusion_core.grid import AlignedReader, align
from wsfusion_core.view import parse_scale, view_radiometry
from wsfusion_core.weights import load_weights, resolve_weights
from wsfusion_core.windows import plan_windows

SAMPLE = Path(rn.__file__).parent / "data" / "sample" / "banepa"
INPUTS = sorted(SAMPLE.glob("input_*.tif"))
BANDS = (1, 2, 3)


def _strip_tiles(weights: Path):
    """Every tile of the sample's plan with its strip: [(tiles, plan, data, valid, scales)]."""
    _, info = load_weights(weights)
    al = align(INPUTS)
    plan = plan_windows(al.grid.height, al.grid.width, info.tile_size, 64)
    readers = [AlignedReader(i, al.grid) for i in al.inputs]
    try:
        scales = view_radiometry(readers, BANDS, parse_scale(None)).scales()
        out = []
        for r in range(plan.rows.count):
            y0, y1 = plan.row_span(r)
            parts = [rd.read(Window(0, y0, al.grid.width, y1 - y0)) for rd in readers]
            data = np.stack([p[0] for p in parts])
            valid = np.stack([p[1] for p in parts])
            out.append((plan.tiles_in_row(r), plan, data, valid, scales))
        return out
    finally:
        for rd in readers:
            rd.close()


def _run(runner: rn.ModelRunner, strips) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fused, qual, seg = [], [], []
    for tiles, plan, data, valid, scales in strips:
        f, q, s = runner.learned(tiles, plan, data, valid, scales, BANDS, want_seg=True,
                                 want_quality=True)
        fused.append(f)
        qual.append(q)
        seg.append(s)
    return np.concatenate(fused), np.concatenate(qual), np.concatenate(seg)


def _previous_runner(weights: Path) -> rn.ModelRunner:
    """The engine's runner before issue 9: the model as trained (BatchNorm unfolded, default
    layout), four tiles × K inputs through each network in one call."""
    model, info = load_weights(weights)
    return rn.ModelRunner(model, info, rn.Policy("cpu", 4, None, None))


def test_runner_matches_the_previous_runner():
    weights = resolve_weights(None)
    strips = _strip_tiles(weights)
    old = _run(_previous_runner(weights), strips)
    new_runner = rn.load_runner(weights, "cpu", None, lambda _m: None, "test")
    new = _run(new_runner, strips)
    grey = np.abs(np.rint(new[0]) - np.rint(old[0]))
    assert grey.max() <= 1, f"fused values differ by up to {grey.max()} grey levels"
    assert np.abs(new[1] - old[1]).max() < 1e-3  # the quality weights
    same = (new[2].argmax(axis=1) == old[2].argmax(axis=1)).mean()
    assert same >= 0.9999, f"only {100 * same:.3f} % of the classes agree"


def test_cpu_networks_see_at_most_two_images_per_call():
    runner = rn.load_runner(resolve_weights(None), "cpu", None, lambda _m: None, "test")
    seen: list[tuple[int, ...]] = []
    nets = [runner.model.quality.net, runner.model.segmentation.net]
    hooks = [n.register_forward_pre_hook(lambda _m, a: seen.append(tuple(a[0].shape)))
             for n in nets]
    first = _strip_tiles(resolve_weights(None))[:1]
    try:
        _run(runner, first)
    finally:
        for h in hooks:
            h.remove()
    assert seen and max(s[0] for s in seen) <= rn.IMAGES_PER_CALL_CPU
    # every tile's K inputs through the quality net and its fused view through segmentation
    assert sum(s[0] for s in seen) == len(first[0][0]) * (len(INPUTS) + 1)


def test_composites_never_import_torch(tmp_path):
    out = tmp_path / "mean.tif"
    proc = run_python("import sys\nfrom wsfusion_core.api import fuse\n"
                      f"fuse({[str(p) for p in INPUTS]!r}, {str(out)!r}, method='median')\n"
                      "print('torch' in sys.modules)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False" and out.exists()


def test_folded_batchnorm_gives_the_same_outputs():
    model, _ = load_weights(resolve_weights(None))
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        before = model.segmentation(x)
        folded = rn.fold_batchnorm(model.segmentation)
        after = folded(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def test_bf16_is_opt_in_and_close(tmp_path):
    out32, out16 = tmp_path / "f32.tif", tmp_path / "bf16.tif"
    fuse(INPUTS, out32, device="cpu")
    res = fuse(INPUTS, out16, device="cpu", bf16=True)
    assert res.device == "cpu"
    with rasterio.open(out32) as a, rasterio.open(out16) as b:
        diff = np.abs(a.read().astype(int) - b.read().astype(int))
    assert diff.max() <= 16 and diff.mean() < 1.0


@pytest.mark.cuda
def test_cuda_matches_cpu(tmp_path):
    outs = {}
    for dev in ("cpu", "cuda"):
        fused, seg = tmp_path / f"{dev}.tif", tmp_path / f"{dev}_seg.tif"
        res = fuse(INPUTS, fused, segmentation=seg, device=dev)
        assert res.device.startswith(dev)
        with rasterio.open(fused) as f, rasterio.open(seg) as s:
            outs[dev] = (f.read().astype(int), s.read(1))
    grey = np.abs(outs["cuda"][0] - outs["cpu"][0])
    assert grey.max() <= 1, f"CUDA and CPU differ by up to {grey.max()} grey levels"
    same = (outs["cuda"][1] == outs["cpu"][1]).mean()
    assert same >= 0.9999, f"only {100 * same:.3f} % of the classes agree"


@pytest.mark.cuda
def test_cuda_runs_big_batches_in_float32():
    runner = rn.load_runner(resolve_weights(None), "cuda", None, lambda _m: None, "test")
    assert runner.policy.images_per_call is None
    assert runner.policy.amp is None and runner.policy.seg_amp is None
    assert runner._warming is not None  # the warm-up thread started with the runner
    f, q, s = _run(runner, _strip_tiles(resolve_weights(None)))
    assert runner._warming is None  # the first call waited for it
    assert np.isfinite(f).all() and np.isfinite(s).all()
    np.testing.assert_allclose(q.sum(axis=1)[q.sum(axis=1) > 0], 1.0, atol=1e-3)


# ---- the device path (issue 9): view, weighting and blending on the runner's device. On a
# CPU it runs the same float32/float64 steps as the numpy path, so there it must agree exactly;
# on CUDA (float32 networks, TF32 off) within the tolerances above.


def _device_side(runner: rn.ModelRunner) -> rn.ModelRunner:
    return rn.ModelRunner(runner.model, runner.info,
                          dataclasses.replace(runner.policy, device_side=True))


def test_device_path_on_cpu_equals_the_numpy_path():
    runner = rn.load_runner(resolve_weights(None), "cpu", None, lambda _m: None, "test")
    assert runner.blend_device is None  # the CPU keeps the numpy path
    old = engine_run(runner, INPUTS, BANDS)
    new = engine_run(_device_side(runner), INPUTS, BANDS)
    for a, b in zip(old, new):
        np.testing.assert_array_equal(a, b)


def _random_blend(buffer, plan, k: int, count: int, dtype: str, device: str) -> list:
    """Random tile results (values, quality, class probabilities) blended into ``buffer`` tile
    row by tile row, as the learned engine does; the finished rows."""
    rng = np.random.default_rng(7)
    top = {"uint8": 255, "uint16": 60000, "int16": 3000}.get(dtype, 1.0)
    rows = []
    for r in range(plan.rows.count):
        y0, y1 = plan.row_span(r)
        buffer.mark_valid(y0, rng.random((y1 - y0, plan.cols.length)) > 0.05)
        for t in plan.tiles_in_row(r):
            f = rng.random((count, t.height, t.width)) * top
            q = rng.dirichlet(np.ones(k), (t.height, t.width)).transpose(2, 0, 1)
            s = rng.dirichlet(np.ones(3), (t.height, t.width)).transpose(2, 0, 1)
            f = f.astype(np.float64 if np.dtype(dtype).itemsize > 2 else np.float32)
            q, s = q.astype(np.float32), s.astype(np.float32)
            if getattr(buffer, "on_device", False):
                buffer.add(t.y, t.x, buffer.tile_weight(plan, t),
                           *(torch.from_numpy(a).to(device) for a in (f, q, s)))
            else:
                buffer.add(t.y, t.x, plan.weight(t), f, q, s)
        taken = buffer.take(plan.finished_before(r))
        if taken is not None:  # the device buffer's rows arrive as PendingRows
            rows.append(taken.result() if hasattr(taken, "result") else taken)
    return rows


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("dtype,nodata", [("uint8", 0), ("uint16", 65535), ("int16", None),
                                          ("float32", None), ("float32", -9999.0)])
def test_device_buffer_matches_the_strip_buffer(device, dtype, nodata):
    if dtype == "int16" and nodata is None:
        nodata = -32768
    plan = plan_windows(700, 650, 300, 64)
    k, count = 4, 3
    rows = {}
    for name, dev in (("numpy", None), ("device", device)):
        buf = buffer_for(plan, 650, count, k, dtype, nodata, 3, True, device=dev)
        assert getattr(buf, "on_device", False) == (dev is not None)
        rows[name] = _random_blend(buf, plan, k, count, dtype, device)
    assert [r.y for r in rows["numpy"]] == [r.y for r in rows["device"]]
    for a, b in zip(rows["numpy"], rows["device"]):
        assert a.fused.dtype == b.fused.dtype == np.dtype(dtype)
        if device == "cpu":  # the same float operations in the same order
            np.testing.assert_array_equal(a.fused, b.fused)
            np.testing.assert_array_equal(a.classes, b.classes)
        else:
            grey = np.abs(a.fused.astype(float) - b.fused)
            assert np.nanmax(grey) <= (1 if np.dtype(dtype).kind in "iu" else 1e-3)
            assert (a.classes == b.classes).mean() >= 0.9999
        np.testing.assert_allclose(a.quality, b.quality, rtol=1e-6, atol=1e-6)
        assert np.array_equal(np.isnan(a.fused), np.isnan(b.fused))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_upload_keeps_every_stored_value(device):
    for dtype in ("uint8", "uint16", "int16", "uint32", "float32", "bool"):
        a = (np.arange(70000) % (2 if dtype == "bool" else 65536)).astype(dtype)
        if dtype == "int16":
            a = (np.arange(70000) - 35000).astype(dtype)
        back = rn.upload(a.reshape(7, 10000), device).cpu().numpy().ravel()
        np.testing.assert_array_equal(back, a.astype(back.dtype))
        assert back.dtype.kind == a.dtype.kind or dtype in ("uint16", "uint32")


@pytest.mark.cuda
def test_cuda_device_path_matches_the_cpu_numpy_path():
    weights = resolve_weights(None)
    cpu = engine_run(rn.load_runner(weights, "cpu", None, lambda _m: None, "test"), INPUTS, BANDS)
    gpu_runner = rn.load_runner(weights, "cuda", None, lambda _m: None, "test")
    assert gpu_runner.blend_device is not None and gpu_runner.blend_device.startswith("cuda")
    gpu = engine_run(gpu_runner, INPUTS, BANDS)
    grey = np.abs(gpu[0].astype(int) - cpu[0])
    assert grey.max() <= 1, f"CUDA and CPU differ by up to {grey.max()} grey levels"
    same = (gpu[1] == cpu[1]).mean()
    assert same >= 0.9999, f"only {100 * same:.3f} % of the classes agree"
    assert np.array_equal(np.isnan(gpu[2]), np.isnan(cpu[2]))
    assert np.nanmean(np.abs(gpu[2] - cpu[2])) < 5e-3  # another device's float32: close on average
