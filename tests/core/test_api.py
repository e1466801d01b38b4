"""End-to-end fuse() on real GeoTIFFs: grid and radiometry kept, validity honoured, outputs
well-formed, errors clear, nothing half-written."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject

from wsfusion_core import weights as weights_mod
from wsfusion_core.api import FusionResult, fuse
from wsfusion_core.classes import CLASS_COLOURS, CLASS_NAMES
from wsfusion_core.errors import Cancelled, OutputError, WeightsError, WsfusionError


def read(path):
    with rasterio.open(path) as src:
        return src.read(), src.profile


@pytest.fixture
def small_weights(make_weights):
    """Tile 128: several tiles on small rasters, so blending is exercised quickly."""
    return make_weights(tile_size=128)


def test_identical_inputs_come_back_unchanged_across_tile_borders(tmp_path, make_raster,
                                                                  random_weights):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (4, 650, 700), dtype=np.uint8)  # noise: any seam would show
    a = make_raster(tmp_path / "a.tif", img)
    b = make_raster(tmp_path / "b.tif", img)
    out = tmp_path / "out.tif"
    res = fuse([a, b], out, weights=random_weights, device="cpu")
    assert isinstance(res, FusionResult) and res.tiles == 9 and res.count == 4
    fused, prof = read(out)
    _, ref = read(a)
    assert prof["crs"] == ref["crs"] and prof["transform"] == ref["transform"]
    assert (prof["width"], prof["height"], prof["count"], prof["dtype"]) == (700, 650, 4, "uint8")
    assert np.abs(fused.astype(int) - img).max() <= 1


@pytest.mark.parametrize("method", ["learned", "mean", "median"])
def test_nodata_never_leaks(tmp_path, make_raster, smooth_image, small_weights, method):
    a_img = smooth_image(200, 260, seed=1)
    b_img = smooth_image(200, 260, seed=2)
    c_img = smooth_image(200, 260, seed=3)
    a_img[:, 50:120, 60:200] = 0  # nodata region of input a (0 is its nodata)
    c_img[:, 50:120, 60:200] = 0
    a = make_raster(tmp_path / "a.tif", a_img, nodata=0)
    b = make_raster(tmp_path / "b.tif", b_img)
    c = make_raster(tmp_path / "c.tif", c_img, nodata=0)
    out = tmp_path / "out.tif"
    fuse([a, b, c], out, method=method, weights=small_weights if method == "learned" else None)
    fused, _ = read(out)
    hole = np.s_[:, 50:120, 60:200]
    assert np.abs(fused[hole].astype(int) - b_img[hole]).max() <= 1


def test_all_invalid_pixels_are_nodata_everywhere(tmp_path, make_raster, smooth_image,
                                                  small_weights):
    a_img, b_img = smooth_image(150, 170, seed=1), smooth_image(150, 170, seed=2)
    mask_a = np.ones((150, 170), bool)
    mask_a[20:60, 30:90] = False
    b_img[:, 20:60, 30:90] = 7
    b_img[:, 100:, :] = 7  # b invalid at the bottom; a valid there
    a = make_raster(tmp_path / "a.tif", a_img, mask=mask_a)
    b = make_raster(tmp_path / "b.tif", b_img, nodata=7)
    out, seg, q = tmp_path / "out.tif", tmp_path / "seg.tif", tmp_path / "q.tif"
    fuse([a, b], out, segmentation=seg, quality=q, weights=small_weights)
    fused, prof = read(out)
    # a declares no nodata (a valid pixel of a may be 0): no nodata value, an internal mask
    # marks where no input is valid, and the pixels there hold 0 (issue 19)
    assert prof["nodata"] is None
    assert (fused[:, 20:60, 30:90] == 0).all()
    with rasterio.open(out) as src:
        hole = np.zeros((150, 170), bool)
        hole[20:60, 30:90] = True
        np.testing.assert_array_equal(src.dataset_mask() == 0, hole)
    np.testing.assert_array_equal(fused[:, 100:, :], a_img[:, 100:, :])
    classes, sprof = read(seg)
    assert sprof["dtype"] == "uint8" and sprof["nodata"] == 255
    assert (classes[0, 20:60, 30:90] == 255).all()
    assert set(np.unique(classes[0, 100:])) <= {0, 1, 2}
    weights, qprof = read(q)
    assert qprof["dtype"] == "float32" and qprof["count"] == 2
    assert np.isnan(weights[:, 20:60, 30:90]).all()
    valid = ~np.isnan(weights[0])
    np.testing.assert_allclose(weights[:, valid].sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_allclose(weights[0, 100:], 1.0, atol=1e-6)  # the only valid input


def test_segmentation_and_quality_files(tmp_path, make_raster, smooth_image, small_weights):
    imgs = [smooth_image(140, 150, seed=s) for s in range(3)]
    paths = [make_raster(tmp_path / f"in{i}.tif", im) for i, im in enumerate(imgs)]
    seg, q = tmp_path / "seg.tif", tmp_path / "q.tif"
    res = fuse(paths, tmp_path / "out.tif", segmentation=seg, quality=q, weights=small_weights)
    assert res.segmentation == seg and res.quality == q and res.model.startswith("random-test")
    with rasterio.open(seg) as src:
        assert src.count == 1 and src.dtypes[0] == "uint8" and src.nodata == 255
        cmap = src.colormap(1)
        for i, colour in enumerate(CLASS_COLOURS):
            assert cmap[i][:3] == tuple(colour)
        assert src.tags()["CLASS_NAMES"] == ",".join(CLASS_NAMES)
        assert "road" in src.descriptions[0]
        assert set(np.unique(src.read(1))) <= {0, 1, 2}
    with rasterio.open(q) as src:
        assert src.count == 3 and src.dtypes[0] == "float32"
        assert src.descriptions[1] == "weight of in1.tif"
        w = src.read()
    np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=1e-5)
    assert (w >= 0).all() and w.std() > 0  # random net: weights differ per pixel and input


def test_other_crs_input_is_aligned(tmp_path, make_raster, smooth_image, small_weights):
    img = smooth_image(240, 260, seed=4)
    a = make_raster(tmp_path / "utm.tif", img)
    # the same content in Web Mercator, reprojected with rasterio
    with rasterio.open(a) as src:
        tr, w, h = calculate_default_transform(src.crs, "EPSG:3857", src.width, src.height,
                                               *src.bounds)
        dst = np.zeros((3, h, w), np.uint8)
        reproject(img, dst, src_transform=src.transform, src_crs=src.crs, dst_transform=tr,
                  dst_crs="EPSG:3857", resampling=Resampling.bilinear, dst_nodata=0)
    b = make_raster(tmp_path / "merc.tif", dst, crs="EPSG:3857", transform=tr, nodata=0)
    for method, weights in (("mean", None), ("learned", small_weights)):
        out = tmp_path / f"{method}.tif"
        fuse([a, b], out, method=method, weights=weights)
        fused, prof = read(out)
        assert prof["crs"].to_epsg() == 32618 and fused.shape == img.shape
        inner = np.s_[:, 10:-10, 10:-10]
        diff = np.abs(fused[inner].astype(int) - img[inner])
        assert diff.mean() < 1.0 and diff.max() <= 6


def test_uint16_keeps_values_and_dtype(tmp_path, make_raster, smooth_image, small_weights):
    img = smooth_image(150, 140, bands=4, dtype="uint16", seed=5)
    a = make_raster(tmp_path / "a.tif", img)
    b = make_raster(tmp_path / "b.tif", img)
    out = tmp_path / "out.tif"
    fuse([a, b], out, weights=small_weights, bands=(3, 2, 1))
    fused, prof = read(out)
    assert prof["dtype"] == "uint16" and prof["count"] == 4
    assert np.abs(fused.astype(int) - img).max() <= 1


def test_float_with_nan_nodata(tmp_path, make_raster, smooth_image, small_weights):
    a_img = smooth_image(120, 130, dtype="float32", seed=6)
    b_img = smooth_image(120, 130, dtype="float32", seed=7)
    a_img[:, :30] = np.nan
    a = make_raster(tmp_path / "a.tif", a_img, nodata=float("nan"))
    b = make_raster(tmp_path / "b.tif", b_img)
    out = tmp_path / "out.tif"
    fuse([a, b], out, weights=small_weights)
    fused, prof = read(out)
    assert prof["dtype"] == "float32" and np.isnan(prof["nodata"])
    np.testing.assert_allclose(fused[:, :30], b_img[:, :30], atol=1e-5)
    assert np.isfinite(fused).all()


def test_raster_smaller_than_a_tile(tmp_path, make_raster, smooth_image, random_weights):
    img = smooth_image(90, 110, seed=8)
    a = make_raster(tmp_path / "a.tif", img)
    b = make_raster(tmp_path / "b.tif", img)
    out = tmp_path / "out.tif"
    res = fuse([a, b], out, weights=random_weights, segmentation=tmp_path / "s.tif")
    assert res.tiles == 1
    fused, _ = read(out)
    assert np.abs(fused.astype(int) - img).max() <= 1


def test_cog_outputs_validate(tmp_path, make_raster, smooth_image, small_weights):
    from rio_cogeo.cogeo import cog_validate

    imgs = [smooth_image(600, 520, seed=s) for s in (1, 2)]
    paths = [make_raster(tmp_path / f"in{i}.tif", im) for i, im in enumerate(imgs)]
    out, seg, q = tmp_path / "out.tif", tmp_path / "seg.tif", tmp_path / "q.tif"
    fuse(paths, out, segmentation=seg, quality=q, method="mean", weights=small_weights,
         cog=True)
    for p in (out, seg, q):
        ok, errors, _ = cog_validate(str(p))
        assert ok, (p, errors)
        with rasterio.open(p) as src:
            assert src.overviews(1), p
    with rasterio.open(seg) as src:
        assert src.colormap(1)[1][:3] == tuple(CLASS_COLOURS[1])
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted(
        ["in0.tif", "in1.tif", "out.tif", "seg.tif", "q.tif", small_weights.name,
         small_weights.with_suffix(".json").name])


def test_cancel_leaves_no_file(tmp_path, make_raster, smooth_image, small_weights):
    imgs = [smooth_image(300, 300, seed=s) for s in (1, 2)]
    paths = [make_raster(tmp_path / f"in{i}.tif", im) for i, im in enumerate(imgs)]
    before = set(tmp_path.iterdir())
    calls = []
    with pytest.raises(Cancelled):
        fuse(paths, tmp_path / "out.tif", segmentation=tmp_path / "seg.tif",
             quality=tmp_path / "q.tif", weights=small_weights, batch_size=1, cog=True,
             progress=calls.append, cancel=lambda: len(calls) > 1)
    assert len(calls) >= 2
    assert set(tmp_path.iterdir()) == before


def test_progress_is_monotonic_and_ends_at_one(tmp_path, make_raster, smooth_image,
                                               small_weights):
    imgs = [smooth_image(260, 270, seed=s) for s in (1, 2)]
    paths = [make_raster(tmp_path / f"in{i}.tif", im) for i, im in enumerate(imgs)]
    calls, lines = [], []
    res = fuse(paths, tmp_path / "out.tif", weights=small_weights, batch_size=2,
               progress=calls.append, log=lines.append)
    assert calls[-1] == 1.0 and calls == sorted(calls)
    assert len(calls) >= res.tiles // 2 + 1
    assert any(line.startswith("device: cpu") for line in lines)
    assert any("random-test" in line for line in lines)


def test_output_must_not_be_an_input_or_exist(tmp_path, make_raster, smooth_image):
    img = smooth_image(50, 50)
    a = make_raster(tmp_path / "a.tif", img)
    b = make_raster(tmp_path / "b.tif", img)
    with pytest.raises(OutputError, match="would overwrite input"):
        fuse([a, b], tmp_path / "." / "b.tif", method="mean", overwrite=True)
    with pytest.raises(OutputError, match="would overwrite input"):
        fuse([a, b], tmp_path / "out.tif", quality=a, method="mean", overwrite=True)
    out = tmp_path / "out.tif"
    out.write_bytes(b"old")
    with pytest.raises(OutputError, match="already exists"):
        fuse([a, b], out, method="mean")
    assert out.read_bytes() == b"old"
    fuse([a, b], out, method="mean", overwrite=True)
    np.testing.assert_array_equal(read(out)[0], img)


def test_learned_without_weights_says_what_to_do(tmp_path, make_raster, smooth_image,
                                                 monkeypatch):
    """A build without the shipped model (its file absent): the error names the file, what
    needed a model, and a way out in words (no CLI flags: QGIS users read it too)."""
    missing = tmp_path / "nowhere" / "default.safetensors"
    monkeypatch.setattr(weights_mod, "default_weights_path", lambda: missing)
    img = smooth_image(40, 40)
    paths = [make_raster(tmp_path / f"{n}.tif", img) for n in "ab"]
    with pytest.raises(WeightsError, match="the learned method needs a model") as info:
        fuse(paths, tmp_path / "out.tif")
    assert info.value.path == missing and info.value.hint == weights_mod.NO_MODEL_HINT
    assert "--" not in str(info.value) and "mean or median" in str(info.value)
    with pytest.raises(WeightsError, match="segmentation needs a model"):
        fuse(paths, tmp_path / "out.tif", method="median", segmentation=tmp_path / "s.tif")
    assert not (tmp_path / "out.tif").exists()


def test_bad_arguments(tmp_path, make_raster, smooth_image, small_weights):
    img = smooth_image(40, 40)
    paths = [make_raster(tmp_path / f"{n}.tif", img) for n in "ab"]
    with pytest.raises(WsfusionError, match="unknown method"):
        fuse(paths, tmp_path / "o.tif", method="max")
    with pytest.raises(WsfusionError, match="band 5 does not exist"):
        fuse(paths, tmp_path / "o.tif", weights=small_weights, bands=(1, 2, 5))
    with pytest.raises(WsfusionError, match="unknown device"):
        fuse(paths, tmp_path / "o.tif", weights=small_weights, device="tpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(WsfusionError, match="no CUDA GPU"):
            fuse(paths, tmp_path / "o.tif", weights=small_weights, device="cuda")


def test_weights_round_trip_gives_identical_output(tmp_path, make_raster, smooth_image,
                                                   small_weights):
    from wsfusion_core.weights import load_weights, save_weights

    imgs = [smooth_image(150, 160, seed=s) for s in (1, 2)]
    paths = [make_raster(tmp_path / f"in{i}.tif", im) for i, im in enumerate(imgs)]
    model, info = load_weights(small_weights)
    copy = save_weights(tmp_path / "copy.safetensors", model, info)
    fuse(paths, tmp_path / "o1.tif", weights=small_weights, segmentation=tmp_path / "s1.tif")
    fuse(paths, tmp_path / "o2.tif", weights=copy, segmentation=tmp_path / "s2.tif")
    np.testing.assert_array_equal(read(tmp_path / "o1.tif")[0], read(tmp_path / "o2.tif")[0])
    np.testing.assert_array_equal(read(tmp_path / "s1.tif")[0], read(tmp_path / "s2.tif")[0])


def test_mean_median_values_and_no_torch_needed(tmp_path, make_raster):
    stack = np.array([10, 20, 90], np.uint8)[:, None, None, None] * np.ones((3, 1, 30, 30),
                                                                             np.uint8)
    paths = [make_raster(tmp_path / f"in{i}.tif", s) for i, s in enumerate(stack)]
    res = fuse(paths, tmp_path / "mean.tif", method="mean")
    assert res.model is None and res.device == "cpu"
    assert (read(tmp_path / "mean.tif")[0] == 40).all()
    fuse(paths, tmp_path / "median.tif", method="median")
    assert (read(tmp_path / "median.tif")[0] == 20).all()


def test_alpha_input_with_plain_rgb(tmp_path, make_raster, smooth_image):
    img = smooth_image(60, 70)
    alpha = np.full((60, 70), 255, np.uint8)
    alpha[:, :20] = 0
    a = make_raster(tmp_path / "rgba.tif", img + 5, alpha=alpha)
    b = make_raster(tmp_path / "rgb.tif", img)
    fuse([a, b], tmp_path / "o.tif", method="mean")
    fused, prof = read(tmp_path / "o.tif")
    assert prof["count"] == 3
    np.testing.assert_array_equal(fused[:, :, :20], img[:, :, :20])


def test_naip_multidate_pair_fuses(tmp_path, shared_file, random_weights):
    a = shared_file("data", "geotiff", "naip_multidate", "m_4709963_se_14_1_20090818.tif")
    b = shared_file("data", "geotiff", "naip_multidate", "m_4709963_se_14_1_20200831.tif")
    out = tmp_path / "naip.tif"
    res = fuse([a, b], out, weights=random_weights, quality=tmp_path / "q.tif")
    fused, prof = read(out)
    with rasterio.open(a) as src:
        assert prof["transform"] == src.transform and prof["crs"] == src.crs
        assert (prof["width"], prof["height"], prof["count"]) == (src.width, src.height, 4)
        first = src.read()
    assert res.count == 4
    valid = (first != 0).any(axis=0)
    assert (fused[:, valid] != 0).any(axis=0).mean() > 0.99
    q, _ = read(tmp_path / "q.tif")
    # the 2020 image misses the 1 m sliver at the top/left edge: weight there goes to 2009 only
    np.testing.assert_allclose(np.nansum(q, axis=0)[valid], 1.0, atol=1e-5)


@pytest.mark.parametrize("method", ["mean", "learned"])
def test_memory_does_not_grow_with_height(tmp_path, make_raster, smooth_image, make_weights,
                                          method):
    """Streaming: the numpy memory peak (tracemalloc sees numpy's buffers) of a raster 4× as
    tall stays the same, since only one strip (and the next one, read ahead) is ever held. Both
    smaller rasters already span two 256-row output blocks, so the writers' block-row buffers
    are full in both runs (learned at 300 rows they were not: 3.1 MB against ~3.9 MB from 1200
    rows on, a ratio of 1.21-1.25 that sat on the bound; 600 rows: 3.7 MB, ratio 1.06)."""
    import tracemalloc

    weights = make_weights(tile_size=128) if method == "learned" else None
    peaks = []
    for height in ((600, 2400) if method == "learned" else (1200, 4800)):
        img = smooth_image(height, 160, seed=height)
        paths = [make_raster(tmp_path / f"{height}_{i}.tif", img) for i in range(2)]
        tracemalloc.start()
        fuse(paths, tmp_path / f"{height}_out.tif", method=method, weights=weights,
             quality=tmp_path / f"{height}_q.tif", overlap=16)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.25 * peaks[0], peaks


def test_overlap_beyond_half_a_tile_is_refused(tmp_path, make_raster, smooth_image,
                                               small_weights):
    from wsfusion_core.weights import read_info

    tile = read_info(small_weights).tile_size
    paths = [make_raster(tmp_path / f"in{i}.tif", smooth_image(120, 130, seed=i)) for i in (1, 2)]
    with pytest.raises(WsfusionError, match="overlap"):
        fuse(paths, tmp_path / "out.tif", weights=small_weights, overlap=tile // 2 + 1)
    assert not (tmp_path / "out.tif").exists()
