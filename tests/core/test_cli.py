"""``wsfusion-raster``: success paths write real GeoTIFFs; every failure is one ``Error:`` line
and exit 1; Ctrl-C exits 130 and leaves nothing behind. Mostly in-process (CliRunner), plus
real subprocesses of the installed console script for what a user sees in a shell."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

from wsfusion_core import cli

EXE = Path(sys.executable).parent / "wsfusion-raster"


def _run(*args: str):
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def _error_line(stderr: str) -> str:
    """The single user-facing line; fails if there is a traceback or more than one."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def pair(tmp_path, make_raster, smooth_image):
    """Two co-registered 3-band uint8 rasters with clouds-like bright patches and a nodata gap."""
    a = smooth_image(160, 200, seed=1)
    b = smooth_image(160, 200, seed=2)
    a[:, 20:60, 30:90] = 250
    b[:, 100:150, 120:190] = 0
    return (make_raster(tmp_path / "a.tif", a, nodata=0),
            make_raster(tmp_path / "b.tif", b, nodata=0))


# ------------------------------------------------------------------------- success paths


def test_fuse_learned_writes_all_outputs(pair, tmp_path, random_weights):
    out, seg, q = tmp_path / "fused.tif", tmp_path / "seg.tif", tmp_path / "q.tif"
    res = _run("fuse", *pair, "-o", out, "--segmentation", seg, "--quality", q,
               "--weights", random_weights, "--device", "cpu", "--overlap", "16")
    assert res.exit_code == 0, res.output
    assert str(out) in res.stdout and "learned" in res.stdout and "cpu" in res.stdout
    with rasterio.open(pair[0]) as src, rasterio.open(out) as dst:
        assert (dst.width, dst.height, dst.count, dst.dtypes[0]) == (200, 160, 3, "uint8")
        assert dst.crs == src.crs and dst.transform == src.transform
        fused = dst.read()
    # inside b's nodata gap only a is valid (a is never 0): weight 1, so the output is a exactly
    with rasterio.open(pair[0]) as src:
        a = src.read()
    gap = (slice(None), slice(100, 150), slice(120, 190))
    assert fused.std() > 0
    np.testing.assert_array_equal(fused[gap], a[gap])
    with rasterio.open(seg) as s:
        classes = s.read(1)
        assert s.nodata == 255 and set(np.unique(classes)) <= {0, 1, 2}
    with rasterio.open(q) as s:
        w = s.read()
        assert s.count == 2 and s.dtypes[0] == "float32"
    assert np.allclose(w.sum(axis=0), 1, atol=1e-3)


def test_fuse_single_input_mean_and_bands(tmp_path, make_raster, smooth_image):
    src = make_raster(tmp_path / "one.tif", smooth_image(64, 80, bands=4, seed=3), nodata=0)
    out = tmp_path / "o.tif"
    res = _run("fuse", src, "-o", out, "--method", "mean", "--bands", "3,2,1", "-q")
    assert res.exit_code == 0, res.output
    assert res.stderr == ""  # --quiet: no bar, no info lines
    with rasterio.open(src) as s, rasterio.open(out) as d:
        assert d.count == 4 and np.array_equal(s.read(), d.read())


def test_info_prints_grids_and_overlap(pair, tmp_path, make_raster, smooth_image):
    shifted = make_raster(tmp_path / "shifted.tif", smooth_image(160, 200, seed=4),
                          transform=from_origin(501000.0, 4000000.0, 10.0, 10.0))
    res = _run("info", *pair, shifted)
    assert res.exit_code == 0, res.output
    text = res.stdout
    assert "200 x 160 px" in text and "EPSG:32618" in text
    assert text.count("covers 100.0%") == 2 and "covers 50.0%" in text
    assert str(shifted) in text


def test_demo_with_weights_writes_fused_segmentation_png(tmp_path, random_weights):
    res = _run("demo", "-o", tmp_path / "demo", "--weights", random_weights, "--device", "cpu")
    assert res.exit_code == 0, res.output
    d = tmp_path / "demo"
    for name in ("banepa_fused.tif", "banepa_segmentation.tif", "banepa_quality.tif",
                 "banepa_quicklook.png", "s2_fused.tif", "s2_quality.tif", "s2_quicklook.png"):
        assert (d / f"demo_{name}").is_file()
    for name in ("banepa_fused.tif", "banepa_quicklook.png", "s2_quicklook.png"):
        assert str(d / f"demo_{name}") in res.stdout
    assert (d / "demo_s2_median.tif").is_file()  # the real-cloud case beside its median
    banepa = cli.sample_inputs()
    with rasterio.open(d / "demo_banepa_fused.tif") as f, rasterio.open(banepa[0]) as s:
        assert (f.width, f.height, f.count, f.crs) == (s.width, s.height, 3, s.crs)
    with rasterio.open(d / "demo_s2_fused.tif") as f:
        assert f.dtypes[0] == "uint16" and f.tags()["WSFUSION_SCALE"].startswith("--scale s2")
    from PIL import Image

    with Image.open(d / "demo_banepa_quicklook.png") as im:
        # inputs + fused above, weights + segmentation below
        assert im.format == "PNG" and 1.5 * im.height < im.width < 3 * im.height


def test_demo_falls_back_to_median_without_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_default_weights_available", lambda: False)
    res = _run("demo", "-o", tmp_path / "d")
    assert res.exit_code == 0, res.output
    assert "median" in res.stderr and "median" in res.stdout
    assert (tmp_path / "d" / "demo_banepa_fused.tif").is_file()
    assert (tmp_path / "d" / "demo_banepa_quicklook.png").is_file()
    assert not (tmp_path / "d" / "demo_banepa_segmentation.tif").exists()
    # the declared gap of the first input is filled from the other inputs
    with rasterio.open(cli.sample_inputs()[0]) as i, \
            rasterio.open(tmp_path / "d" / "demo_banepa_fused.tif") as f:
        gap = i.dataset_mask() == 0
        filled = f.dataset_mask()[gap] > 0
    assert gap.mean() > 0.02 and filled.mean() > 0.99


# ------------------------------------------------------------------------- error paths


def _nonraster(tmp_path):
    p = tmp_path / "notes.tif"
    p.write_text("this is not a raster\n")
    return p


ERROR_CASES = {
    "missing input": (lambda t, a, b: [a, t / "nope.tif", "-o", t / "o.tif", "--method", "mean"],
                      "nope.tif", "not found"),
    "non-raster input": (lambda t, a, b: [a, _nonraster(t), "-o", t / "o.tif", "--method",
                                          "mean"], "notes.tif", "raster"),
    "output equals input": (lambda t, a, b: [a, b, "-o", a, "--method", "mean"], "a.tif",
                            "input"),
    "output exists": (lambda t, a, b: [a, b, "-o", Path(shutil.copy(a, t / "x.tif")),
                                       "--method", "mean"], "x.tif", "--overwrite"),
    "missing weights": (lambda t, a, b: [a, b, "-o", t / "o.tif", "--weights",
                                         t / "none.safetensors"], "none.safetensors",
                        "--method"),
    "bad bands": (lambda t, a, b: [a, b, "-o", t / "o.tif", "--bands", "1,x"], "--bands",
                  "band"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_fuse_errors_are_one_line(case, pair, tmp_path):
    make_args, name, words = ERROR_CASES[case]
    before = sorted(os.listdir(tmp_path))
    res = _run("fuse", *make_args(tmp_path, *pair))
    assert res.exit_code == 1, res.output
    line = _error_line(res.stderr)
    assert name in line and words in line, line
    assert sorted(os.listdir(tmp_path)) == before + (["notes.tif"] * (case == "non-raster input")
                                                     + ["x.tif"] * (case == "output exists"))


def test_non_overlapping_inputs(tmp_path, make_raster, smooth_image, pair):
    far = make_raster(tmp_path / "far.tif", smooth_image(160, 200, seed=5),
                      transform=from_origin(900000.0, 4000000.0, 10.0, 10.0))
    res = _run("fuse", pair[0], far, "-o", tmp_path / "o.tif", "--method", "mean")
    assert res.exit_code == 1
    line = _error_line(res.stderr)
    assert "far.tif" in line and "overlap" in line
    assert not (tmp_path / "o.tif").exists()


def test_no_shipped_weights_names_the_options(pair, tmp_path, monkeypatch):
    """A build without default weights: the shipped file is absent; the core's hint comes out
    in this command's flags."""
    from wsfusion_core import weights

    monkeypatch.setattr(weights, "default_weights_path",
                        lambda: tmp_path / "absent" / "default.safetensors")
    res = _run("fuse", *pair, "-o", tmp_path / "o.tif")
    assert res.exit_code == 1
    line = _error_line(res.stderr)
    assert "--weights" in line and "--method" in line


# ------------------------------------------------------------------------- real processes


def _exe() -> list[str]:
    if not EXE.exists():
        pytest.skip(f"console script not installed: {EXE}")
    return [str(EXE)]


def test_installed_script_exit_codes(pair, tmp_path):
    out = tmp_path / "fused.tif"
    ok = subprocess.run(_exe() + ["fuse", *map(str, pair), "-o", str(out), "--method",
                                  "median"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    with rasterio.open(out) as d:
        assert d.count == 3 and d.read().any()
    again = subprocess.run(_exe() + ["fuse", *map(str, pair), "-o", str(out), "--method",
                                     "median"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 1
    assert "already exists" in _error_line(again.stderr)
    usage = subprocess.run(_exe() + ["fuse", str(pair[0])], capture_output=True, text=True,
                           timeout=120)
    assert usage.returncode == 1 and "-o" in _error_line(usage.stderr)


def test_ctrl_c_exits_130_and_leaves_nothing(tmp_path, make_raster, make_weights):
    rng = np.random.default_rng(0)
    big = [make_raster(tmp_path / f"big{i}.tif", rng.integers(1, 255, (3, 1800, 1800), np.uint8),
                       nodata=0) for i in range(2)]
    w = make_weights(widths=[8, 16, 16, 16, 16])
    before = sorted(os.listdir(tmp_path))
    out = tmp_path / "fused.tif"
    proc = subprocess.Popen(_exe() + ["fuse", *map(str, big), "-o", str(out), "--segmentation",
                                      str(tmp_path / "seg.tif"), "--weights", str(w),
                                      "--device", "cpu", "--batch-size", "1"],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    seen = b""
    deadline = time.time() + 60
    while b"%|" not in seen and time.time() < deadline:  # the progress bar is drawn
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
    assert b"%|" in seen, seen
    proc.send_signal(signal.SIGINT)
    stdout, rest = proc.communicate(timeout=60)
    err = (seen + rest).decode()
    assert proc.returncode == 130, err
    assert "Cancelled" in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == before  # no output, no temp file
