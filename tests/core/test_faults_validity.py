"""No silent wrong output (issue 19, part A): validity, the output's nodata or mask, palettes,
bit-exactness of identical inputs, and Dask workers against the local run.

Every case writes real GeoTIFFs, runs the real ``fuse`` (or the CLI in a subprocess) and reads
the output back with rasterio, as a GIS would: a pixel is data where GDAL's mask says so.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import REPO, smooth_image, write_raster
from rasterio.enums import MaskFlags
from rasterio.transform import from_origin

from wsfusion_core.api import fuse
from wsfusion_core.grid import describe
from wsfusion_core.publish import is_temp_name
from wsfusion_core.report import inspect
from wsfusion_core.writers import output_format

SAMPLE = REPO / "wsfusion_core" / "data" / "sample"


def cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WSFUSION_DEBUG": ""}
    return subprocess.run([sys.executable, "-m", "wsfusion_core.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=REPO)


def digest(paths) -> dict[str, str]:
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def data_mask(path: Path) -> np.ndarray:
    """Where a GIS reads data in ``path`` (GDAL's mask: the internal mask, or nodata)."""
    with rasterio.open(path) as src:
        return src.dataset_mask() > 0


def black_block_pair(tmp_path: Path, dtype: str = "uint8") -> tuple[Path, Path, np.ndarray]:
    """Two 400² RGB inputs declaring no nodata, each with a 50² block of value 0 (a black roof,
    a shadow) at the same place; returns the paths and the expected mean."""
    a = smooth_image(400, 400, dtype=dtype, seed=1)
    b = smooth_image(400, 400, dtype=dtype, seed=2)
    for img in (a, b):
        img[:, 100:150, 200:250] = 0
    p1, p2 = write_raster(tmp_path / "z1.tif", a), write_raster(tmp_path / "z2.tif", b)
    mean = np.rint((a.astype(np.float64) + b) / 2).astype(dtype)
    return p1, p2, mean


# ------------------------------------------------------------ 1: valid data never nodata


@pytest.mark.parametrize("method", ["mean", "median", "min-blue"])
def test_black_pixels_without_nodata_stay_valid(method, tmp_path):
    """Inputs that declare no nodata: the output carries an internal mask instead of taking 0
    as nodata, so the black block is data, with the composite's values."""
    p1, p2, mean = black_block_pair(tmp_path)
    out = tmp_path / "out.tif"
    res = cli("fuse", p1, p2, "-o", out, "--method", method, "-q")
    assert res.returncode == 0, res.stderr
    with rasterio.open(out) as src:
        assert src.nodata is None
        assert src.mask_flag_enums[0] == [MaskFlags.per_dataset]
        got = src.read()
        masked = src.read(masked=True)
    assert not Path(f"{out}.msk").exists()  # the mask is inside the GeoTIFF
    assert data_mask(out).all()  # every pixel had a valid input
    assert not np.ma.getmaskarray(masked).any()
    assert (got[:, 100:150, 200:250] == 0).all()
    if method == "mean":
        np.testing.assert_array_equal(got, mean)


def test_mask_marks_exactly_where_no_input_is_valid(tmp_path):
    """With alpha bands (no nodata) and a region no input covers: the mask is 0 exactly there
    and 255 elsewhere, black valid pixels included; locally, chunked and as a COG."""
    a = smooth_image(300, 300, seed=3)
    b = smooth_image(300, 300, seed=4)
    a[:, :40, :] = 0  # valid black rows
    alpha_a = np.full((300, 300), 255, np.uint8)
    alpha_b = alpha_a.copy()
    alpha_a[200:, :] = 0
    alpha_b[200:, 150:] = 0  # bottom-right: nobody
    p1 = write_raster(tmp_path / "a.tif", a, alpha=alpha_a)
    p2 = write_raster(tmp_path / "b.tif", b, alpha=alpha_b)
    nobody = np.zeros((300, 300), bool)
    nobody[200:, 150:] = True
    outs = {}
    for name, kw in (("local", {}), ("chunked", {"chunk": 256}), ("cog", {"cog": True})):
        outs[name] = tmp_path / f"{name}.tif"
        fuse([p1, p2], outs[name], method="mean", **kw)
        np.testing.assert_array_equal(data_mask(outs[name]), ~nobody)
        with rasterio.open(outs[name]) as src:
            assert src.nodata is None
            assert (src.read()[:, :40][:, :, :150] == np.rint(b[:, :40, :150] / 2)).all()
    with rasterio.open(outs["local"]) as x, rasterio.open(outs["chunked"]) as y:
        np.testing.assert_array_equal(x.read(), y.read())


def test_uint16_nodata_that_another_input_holds_as_data(tmp_path):
    """The first input says nodata 65535; the second declares none and holds valid 65535
    (saturated pixels): where only the second is valid they stay 65535, and valid."""
    a = smooth_image(200, 200, dtype="uint16", seed=5)
    b = smooth_image(200, 200, dtype="uint16", seed=6)
    a[:, :, 100:] = 65535  # right half: nodata in input 1
    b[:, 50:80, 120:160] = 65535  # saturated, valid
    p1 = write_raster(tmp_path / "a.tif", a, nodata=65535)
    p2 = write_raster(tmp_path / "b.tif", b)
    fmt = output_format([describe(p1), describe(p2)], describe(p1))
    assert fmt.mask and fmt.nodata is None and fmt.fill == 65535
    assert "b.tif declares no nodata value" in fmt.why
    out = tmp_path / "out.tif"
    fuse([p1, p2], out, method="mean")
    assert data_mask(out).all()
    with rasterio.open(out) as src:
        got = src.read()
    assert (got[:, 50:80, 120:160] == 65535).all()
    np.testing.assert_array_equal(got[:, :, 100:], b[:, :, 100:])


def test_shared_extreme_nodata_is_kept(tmp_path):
    """The ordinary case: every input says nodata 0 in uint8 (no valid 0 anywhere, and no
    mean of valid values rounds to 0): the output keeps nodata 0 and writes no mask."""
    a = smooth_image(200, 200, seed=7)
    b = smooth_image(200, 200, seed=8)
    a[:, :60] = 0
    b[:, 150:] = 0
    b[:, :20] = 0  # rows 0-19: nobody
    p1 = write_raster(tmp_path / "a.tif", a, nodata=0)
    p2 = write_raster(tmp_path / "b.tif", b, nodata=0)
    out = tmp_path / "out.tif"
    fuse([p1, p2], out, method="mean")
    with rasterio.open(out) as src:
        assert src.nodata == 0 and src.mask_flag_enums[0] == [MaskFlags.nodata]
        valid = src.dataset_mask() > 0
    assert not valid[:20].any() and valid[20:].all()
    assert "nodata 0 where no input is valid" in inspect([p1, p2]).to_text()


def test_mid_range_nodata_gets_a_mask(tmp_path):
    """int16 inputs that all say nodata -9999: the mean of -9998 and -10000 is -9999, so the
    output cannot declare it; it writes a mask, and that pixel is data."""
    a = np.full((3, 60, 60), -9998, np.int16)
    b = np.full((3, 60, 60), -10000, np.int16)
    a[:, :10] = b[:, :10] = -9999  # nobody
    p1 = write_raster(tmp_path / "a.tif", a, nodata=-9999)
    p2 = write_raster(tmp_path / "b.tif", b, nodata=-9999)
    text = inspect([p1, p2]).to_text()
    assert "an internal mask where no input is valid" in text and "range" in text
    out = tmp_path / "out.tif"
    fuse([p1, p2], out, method="mean")
    with rasterio.open(out) as src:
        assert src.nodata is None
        got = src.read()
        valid = src.dataset_mask() > 0
    assert not valid[:10].any() and valid[10:].all()
    assert (got == -9999).all()  # valid means below, the fill (the inputs' nodata) above


def test_shipped_banepa_black_pixels_are_data(tmp_path):
    """The shipped Banepa sample: input 2 declares no nodata and has 6,612 valid pixels of
    0 in every band. Wherever some input is valid, the output is data."""
    paths = [SAMPLE / "banepa" / f"input_{i}.tif" for i in (1, 2, 3)]
    before = digest(paths)
    with rasterio.open(paths[1]) as src:
        black = (src.read() == 0).all(axis=0)
    assert black.sum() == 6612
    out = tmp_path / "fused.tif"
    fuse(paths, out, method="mean")
    assert data_mask(out).all()  # input 2 covers everything
    with rasterio.open(out) as src:
        assert src.nodata is None
        got = src.read()
    assert (got[:, black].max(axis=0) >= 0).all() and data_mask(out)[black].all()
    assert digest(paths) == before


# ------------------------------------------------------------ 2: the internal mask counts


def _nodata_and_mask(tmp_path: Path, warped: bool = False) -> tuple[Path, Path, np.ndarray]:
    """Input 1: nodata 0 and an internal mask hiding its left half (where its values are a
    bright 180, far from input 2's); input 2 valid everywhere. Returns the paths and input 2."""
    a = smooth_image(200, 200, seed=9)
    a[:, :, :100] = 180
    b = smooth_image(200, 200, seed=10) // 2 + 20
    mask = np.ones((200, 200), bool)
    mask[:, :100] = False
    origin = (500005.0, 4000000.0) if warped else None  # half a pixel off: warped
    p1 = write_raster(tmp_path / "a.tif", a, nodata=0, mask=mask, origin=origin)
    p2 = write_raster(tmp_path / "b.tif", b)
    with rasterio.open(p1) as src:
        assert src.mask_flag_enums[0] == [MaskFlags.per_dataset]  # as gdalinfo shows it
    return p1, p2, b


@pytest.mark.parametrize("method", ["mean", "learned"])
def test_internal_mask_applies_with_nodata(method, tmp_path, random_weights):
    """Where input 1's mask hides it, the output is input 2 alone (exactly, for the mean and
    for learned fusion, whose only valid input there weighs exactly 1)."""
    p1, p2, b = _nodata_and_mask(tmp_path)
    out = tmp_path / "out.tif"
    fuse([p2, p1], out, method=method, weights=random_weights if method == "learned" else None)
    with rasterio.open(out) as src:
        got = src.read()
    np.testing.assert_array_equal(got[:, :, :100], b[:, :, :100])
    assert "nodata value 0 and internal mask" in inspect([p2, p1]).to_text()
    assert describe(p1).has_mask


def test_internal_mask_with_nodata_survives_warping(tmp_path):
    """The same input half a pixel off the reference grid: the warp carries the mask into
    nodata; away from the mask's edge the output is input 2 alone."""
    p1, p2, b = _nodata_and_mask(tmp_path, warped=True)
    out = tmp_path / "out.tif"
    fuse([p2, p1], out, method="mean")
    with rasterio.open(out) as src:
        got = src.read()
    np.testing.assert_array_equal(got[:, :, :98], b[:, :, :98])


# ------------------------------------------------------------ 3: palettes


def test_palette_inputs_are_refused(tmp_path):
    """Two palette images (indices 10 and 30): averaging gives index 20, a colour of neither.
    Refused with one line naming the file and the gdal_translate hint; nothing written; no
    temp files; inputs unchanged; ``info`` lists the same refusal."""
    paths = []
    for i, value in enumerate((10, 30)):
        p = tmp_path / f"pal{i}.tif"
        with rasterio.open(p, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8",
                           crs="EPSG:32618", transform=from_origin(500000, 4000000, 10, 10),
                           photometric="PALETTE") as dst:
            dst.write(np.full((1, 64, 64), value, np.uint8))
            dst.write_colormap(1, {v: (v, 255 - v, 0, 255) for v in range(256)})
        paths.append(p)
    before = digest(paths)
    out = tmp_path / "out.tif"
    res = cli("fuse", *paths, "-o", out, "--method", "mean")
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 1 and len(lines) == 1, res.stderr
    assert str(paths[0]) in lines[0] and "palette" in lines[0]
    assert "gdal_translate -expand rgb" in lines[0]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pal0.tif", "pal1.tif"]
    assert not any(is_temp_name(p.name) for p in tmp_path.iterdir())
    assert digest(paths) == before
    report = inspect(paths)
    assert any("palette" in p for p in report.problems) and "refuse" in report.to_text()


# ------------------------------------------------------------ 5: identical inputs


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "uint32", "int32",
                                   "float32", "float64"])
def test_learned_fusion_of_identical_inputs(dtype, tmp_path, random_weights):
    """``fuse X X`` gives X back bit for bit for every integer type and float32 (a 400² raster:
    four tiles with cross-faded overlaps). float64 comes back within 4 units in the last place
    (docs/engine.md)."""
    rng = np.random.default_rng(11)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        x = (rng.random((3, 400, 400)) * 1000 + 1).astype(dtype)
    else:
        info = np.iinfo(dt)
        x = rng.integers(max(info.min, -2**31) + 1, info.max, (3, 400, 400), dtype=dtype,
                         endpoint=True)
    p = write_raster(tmp_path / "x.tif", x, photometric="MINISBLACK")
    out = tmp_path / "out.tif"
    fuse([p, p], out, weights=random_weights)
    with rasterio.open(out) as src:
        got = src.read()
    if dtype == "float64":
        ulps = np.abs(got - x) / np.spacing(np.abs(x))
        assert ulps.max() <= 4, ulps.max()
    else:
        np.testing.assert_array_equal(got, x)


# ------------------------------------------------------------ 6: Dask workers = local run


def test_network_outputs_do_not_depend_on_the_thread_count():
    """The shipped model in its inference form gives the same bits with 1, 2 and 3 torch
    threads (a Dask worker runs 1, a local run all cores): the 1×1 heads were not."""
    import torch

    from wsfusion_core.runner import Pointwise, load_runner

    runner = load_runner(None, "cpu", None, lambda _m: None, "test")
    model = runner.model
    assert sum(isinstance(m, Pointwise) for m in model.modules()) == 2
    x = torch.rand(2, 3, 300, 300, generator=torch.Generator().manual_seed(0))
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                results.append((model.quality_logits(x[:, None]), model.segmentation(x)))
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_workers_give_the_local_result(tmp_path):
    """Learned fusion with the shipped model on a real local Dask cluster (one worker, one
    torch thread) is byte-identical to the local run (all cores), class map included."""
    pytest.importorskip("distributed")
    rng = np.random.default_rng(12)
    paths = []
    for i in range(3):
        img = smooth_image(420, 420, seed=20 + i).astype(np.int16)
        img += rng.integers(-15, 16, img.shape).astype(np.int16)
        paths.append(write_raster(tmp_path / f"in{i}.tif",
                                  np.clip(img, 1, 255).astype(np.uint8), nodata=0))
    local, seg_local = tmp_path / "local.tif", tmp_path / "local_seg.tif"
    dask_out, seg_dask = tmp_path / "dask.tif", tmp_path / "dask_seg.tif"
    # the shipped model (0.1-2 m) on 10 m test pixels: the class map is forced past the guard
    fuse(paths, local, segmentation=seg_local, force_segmentation=True)
    fuse(paths, dask_out, segmentation=seg_dask, cluster=1, force_segmentation=True)
    for a, b in ((local, dask_out), (seg_local, seg_dask)):
        with rasterio.open(a) as x, rasterio.open(b) as y:
            np.testing.assert_array_equal(x.read(), y.read())
