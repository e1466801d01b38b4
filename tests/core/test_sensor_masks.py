"""Issue 21 item 2: sensor masks (Sentinel-2 SCL, Landsat QA_PIXEL, any mask raster).

Real GeoTIFFs, a real HTTP range server for the STAC items (as tests/core/test_remote.py), a
real Dask LocalCluster. The reference for "removes exactly the flagged pixels" is the same
fusion of copies of the inputs in which those pixels are declared nodata: a mask must act
exactly as nodata does (weight exactly 0; nodata where every input is masked)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from helpers import DEFAULT_TRANSFORM, PIXEL, smooth_image, write_raster
from rangeserver import RangeServer
from rasterio.transform import from_origin

from wsfusion_core import cli
from wsfusion_core.api import fuse
from wsfusion_core.errors import InputError
from wsfusion_core.masks import PRESETS, MaskRule, mask_rule
from wsfusion_core.report import inspect

H, W = 120, 160
SCL_FLAGGED = (0, 1, 3, 8, 9, 10)
LOCALHOST = ("127.0.0.1",)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def _invalid(path: Path) -> np.ndarray:
    """Where an output says "no data" (its nodata value or its internal mask)."""
    with rasterio.open(path) as ds:
        return ds.dataset_mask() == 0


def _nodata_copies(folder: Path, images: list[np.ndarray], flagged: list[np.ndarray],
                   **kw) -> list[Path]:
    """The inputs with their flagged pixels set to nodata 0 (the reference behaviour)."""
    out = []
    for i, (img, f) in enumerate(zip(images, flagged)):
        a = img.copy()
        a[:, f] = 0
        out.append(write_raster(folder / f"ref{i}.tif", a, nodata=0, **kw))
    return out


def _scl(seed: int, h: int, w: int) -> np.ndarray:
    """Scene classes 0..11, in blocks (clouds come in patches), every class present."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 12, (h // 4 + 1, w // 4 + 1), dtype=np.uint8)
    scl = np.kron(coarse, np.ones((4, 4), np.uint8))[:h, :w]
    scl.flat[:12] = np.arange(12, dtype=np.uint8)
    return scl


# ----------------------------------------------------------------------------- the rules


def test_presets_are_the_documented_choices():
    asset, rule = PRESETS["s2-scl"]
    assert asset == "scl" and rule.values == SCL_FLAGGED
    asset, rule = PRESETS["landsat-qa"]
    assert asset == "qa_pixel" and rule.bits == (0, 1, 2, 3, 4)  # bit 5 (snow) kept


def test_landsat_qa_bits_decoded_exactly():
    """Hand-made QA_PIXEL words: each flag bit alone, snow and water alone, and real Collection
    2 values (21824 clear land, 21952 clear water, 22280 high-confidence cloud, 23888 cloud
    shadow, 30048 snow, 1 fill, 55052 cirrus + cloud, 54596 cirrus alone)."""
    rule = PRESETS["landsat-qa"][1]
    words = {0: False, 1 << 0: True, 1 << 1: True, 1 << 2: True, 1 << 3: True, 1 << 4: True,
             1 << 5: False, 1 << 6: False, 1 << 7: False, 1 << 15: False,
             21824: False, 21952: False, 22280: True, 23888: True, 30048: False, 1: True,
             55052: True, 54596: True, (1 << 5) | (1 << 6): False, 0xFFFF: True}
    values = np.array(list(words), np.uint16).reshape(1, -1)
    assert rule.flagged(values)[0].tolist() == list(words.values())
    # the same words through a real fuse: weights 0 exactly where a flag bit is set
    for every in range(16):
        word = 1 << every
        assert bool(rule.flagged(np.array([[word]], np.uint16))[0, 0]) == (every <= 4)


def test_rule_errors_are_one_line():
    with pytest.raises(InputError, match="one way"):
        mask_rule("s2-scl", values=[3])
    with pytest.raises(InputError, match="unknown mask preset"):
        mask_rule("sentinel")
    with pytest.raises(InputError, match="bit 64"):
        MaskRule(bits=(64,))
    assert mask_rule(values=[3, 8]).values == (3, 8) and mask_rule() is None


# ----------------------------------------------------------------------------- STAC, S2 SCL


@pytest.fixture
def s2_items(tmp_path):
    """Three Sentinel-2 L2A dates served over HTTP: a 10 m TCI ('visual', uint8, nodata 0) and
    a 20 m SCL ('scl'), date 1 as two items side by side (mosaicked), dates 2 and 3 one item
    each. Yields (ItemCollection path, server, images, per-date flagged masks on the 10 m
    grid)."""
    pystac = pytest.importorskip("pystac")
    folder = tmp_path / "srv"
    folder.mkdir()
    images = [smooth_image(H, W, seed=s) for s in (1, 2, 3)]
    scls = [_scl(s, H // 2, W // 2) for s in (11, 12, 13)]
    scls[1][:, :] = np.where(scls[0] == 9, 9, scls[1])  # some places cloudy on two dates
    scls[2][:, :] = np.where((scls[0] == 9) & (scls[1] == 9), 8, scls[2])  # and on all three
    t, t20 = DEFAULT_TRANSFORM, from_origin(DEFAULT_TRANSFORM.c, DEFAULT_TRANSFORM.f,
                                            2 * PIXEL, 2 * PIXEL)
    d1 = dt.datetime(2024, 6, 1, 15, 50, tzinfo=dt.timezone.utc)
    items = []

    def item(name, when, img, scl, x0=0):
        write_raster(folder / f"{name}_tci.tif", img, nodata=0, transform=from_origin(
            t.c + x0 * PIXEL, t.f, PIXEL, PIXEL))
        write_raster(folder / f"{name}_scl.tif", scl, nodata=0, transform=from_origin(
            t20.c + x0 * PIXEL, t20.f, 2 * PIXEL, 2 * PIXEL))
        it = pystac.Item(id=name, geometry=None, bbox=[-75.1, 36.0, -75.0, 36.1],
                         datetime=when, properties={})
        it.add_asset("visual", pystac.Asset(href=srv.url(f"{name}_tci.tif")))
        it.add_asset("scl", pystac.Asset(href=srv.url(f"{name}_scl.tif")))
        items.append(it)

    with RangeServer(folder) as srv:
        half = W // 2
        item("d1_left", d1, images[0][:, :, :half], scls[0][:, :half // 2])
        item("d1_right", d1, images[0][:, :, half:], scls[0][:, half // 2:], x0=half)
        item("d2", d1 + dt.timedelta(days=10), images[1], scls[1])
        item("d3", d1 + dt.timedelta(days=20), images[2], scls[2])
        stac = tmp_path / "items.json"
        stac.write_text(json.dumps(pystac.ItemCollection(items).to_dict(
            transform_hrefs=False)))
        up = [np.isin(np.kron(s, np.ones((2, 2), np.uint8)), SCL_FLAGGED) for s in scls]
        yield stac, srv, images, up


@pytest.mark.parametrize("method", ["mean", "learned"])
def test_s2_scl_on_stac_removes_exactly_the_flagged_pixels(tmp_path, s2_items, method,
                                                          random_weights):
    stac, srv, images, flagged = s2_items
    everywhere = flagged[0] & flagged[1] & flagged[2]
    assert everywhere.any() and not everywhere.all()
    out, q = tmp_path / "fused.tif", tmp_path / "q.tif"
    res = CliRunner().invoke(cli.main, [
        "fuse", "--stac", str(stac), "-o", str(out), "--quality", str(q), "--method", method,
        "--weights", str(random_weights), "--device", "cpu",
        "--mask", "s2-scl", "--allow-remote", "127.0.0.1", "-q"])
    assert res.exit_code == 0, res.output
    assert any("scl" in r for r in srv.requests)  # the masks were read over HTTP
    weights = _read(q)
    assert np.isnan(weights[:, everywhere]).all()  # no valid input: the weights' nodata
    for k in range(3):
        assert (weights[k][flagged[k] & ~everywhere] == 0).all()  # flagged: weight exactly 0
        assert (weights[k][~flagged[k]] > 0).all()  # never more than the flagged pixels
    fused = _read(out)
    assert np.array_equal(_invalid(out), everywhere)  # all masked: nodata there, only there
    # the same fusion with the flagged pixels declared nodata instead: identical
    refs = _nodata_copies(tmp_path, images, flagged)
    fuse(refs, tmp_path / "ref.tif", quality=tmp_path / "ref_q.tif", method=method,
         weights=random_weights, device="cpu")
    assert np.array_equal(_read(tmp_path / "ref.tif"), fused)
    assert np.array_equal(_read(tmp_path / "ref_q.tif"), weights, equal_nan=True)
    assert not (tmp_path / ".fused.tif.inputs").exists()  # the mosaics are cleaned up


def test_stac_mask_asset_missing_is_one_line(tmp_path, s2_items):
    stac, *_ = s2_items
    res = CliRunner().invoke(cli.main, [
        "fuse", "--stac", str(stac), "-o", str(tmp_path / "f.tif"), "--method", "mean",
        "--mask", "landsat-qa", "--allow-remote", "127.0.0.1", "-q"])
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert res.exit_code == 1 and len(lines) == 1 and "no asset 'qa_pixel'" in lines[0]
    assert not (tmp_path / "f.tif").exists() and not (tmp_path / ".f.tif.inputs").exists()


# ----------------------------------------------------------------------------- mask files


def _qa_pair(tmp_path, h=H, w=W):
    """Two dates and their QA_PIXEL rasters (uint16) on the same 10 m grid."""
    rng = np.random.default_rng(5)
    words = np.array([21824, 21952, 30048, 22280, 23888, 1, 54596, 1 << 1], np.uint16)
    images = [smooth_image(h, w, seed=s) for s in (21, 22)]
    qas = [np.kron(words[rng.integers(0, len(words), (h // 4 + 1, w // 4 + 1))],
                   np.ones((4, 4), np.uint16))[:h, :w] for _ in images]
    paths = [write_raster(tmp_path / f"l{i}.tif", img, nodata=0) for i, img in enumerate(images)]
    masks = [write_raster(tmp_path / f"l{i}_qa.tif", qa, nodata=1) for i, qa in enumerate(qas)]
    flagged = [(qa.astype(np.uint32) & 0b11111) != 0 for qa in qas]
    return paths, masks, images, flagged


@pytest.fixture
def qa_pair(tmp_path):
    return _qa_pair(tmp_path)


def test_landsat_qa_mask_files_equal_nodata(tmp_path, qa_pair):
    paths, masks, images, flagged = qa_pair
    res = fuse(paths, tmp_path / "f.tif", quality=tmp_path / "q.tif", method="mean",
               masks=masks, mask_rule="landsat-qa")
    assert res.output.is_file()
    refs = _nodata_copies(tmp_path, images, flagged)
    fuse(refs, tmp_path / "r.tif", quality=tmp_path / "rq.tif", method="mean")
    assert np.array_equal(_read(tmp_path / "f.tif"), _read(tmp_path / "r.tif"))
    assert np.array_equal(_read(tmp_path / "q.tif"), _read(tmp_path / "rq.tif"),
                          equal_nan=True)
    both = flagged[0] & flagged[1]
    assert both.any() and np.array_equal(_invalid(tmp_path / "f.tif"), both)


def test_mask_file_on_another_grid_nearest_and_footprint(tmp_path):
    """A 30 m mask covering only the left part of a 10 m input: flagged where its 30 m cell
    says so (nearest), nothing masked outside its footprint."""
    img = smooth_image(H, W, seed=7)
    other = smooth_image(H, W, seed=8)
    a = write_raster(tmp_path / "a.tif", img, nodata=0)
    b = write_raster(tmp_path / "b.tif", other, nodata=0)
    cells = np.random.default_rng(3).integers(0, 2, (H // 3, W // 6), np.uint8)
    cells[0, 0] = 1
    t = DEFAULT_TRANSFORM
    m = write_raster(tmp_path / "m.tif", cells, transform=from_origin(t.c, t.f, 30, 30))
    fuse([a, b], tmp_path / "f.tif", quality=tmp_path / "q.tif", method="mean",
         masks=[m, None], mask_rule=MaskRule(values=(1,)))
    covered = 3 * cells.shape[1]  # 78 of 160 columns
    expect = np.zeros((H, W), bool)
    expect[:, :covered] = np.kron(cells, np.ones((3, 3), np.uint8)).astype(bool)
    q = _read(tmp_path / "q.tif")
    assert np.array_equal(q[0] == 0, expect)  # input 1: exactly its flagged 30 m cells
    assert (q[0][:, covered:] == 0.5).all()  # outside the mask's footprint: not masked
    assert (q[1] > 0).all()  # input 2 has no mask ("none")


def test_distributed_run_with_masks_equals_the_local_run(tmp_path):
    """600 x 540 px in 256 px chunks: 3 x 3 windows on two worker processes."""
    pytest.importorskip("distributed")
    paths, masks, _, _ = _qa_pair(tmp_path, 600, 540)
    # a mask on another grid too (warped in fixed blocks): chunk borders must not show
    coarse = write_raster(tmp_path / "coarse.tif",
                          np.random.default_rng(9).integers(0, 2, (600 // 7 + 1, 540 // 7 + 1),
                                                            np.uint16),
                          transform=from_origin(DEFAULT_TRANSFORM.c - 3, DEFAULT_TRANSFORM.f + 4,
                                                70, 70))
    kw = dict(method="mean", quality=None, masks=[masks[0], coarse], mask_rule="landsat-qa")
    fuse(paths, tmp_path / "local.tif", **kw)
    res = CliRunner().invoke(cli.main, [
        "fuse", *map(str, paths), "-o", str(tmp_path / "dist.tif"), "--method", "mean",
        "--mask", "landsat-qa", "--mask-file", str(masks[0]), "--mask-file", str(coarse),
        "--workers", "2", "--chunk", "256", "-q"])
    assert res.exit_code == 0, res.output
    assert "9 (0 reused) on 2 worker(s)" in res.output
    assert (tmp_path / "local.tif").read_bytes() == (tmp_path / "dist.tif").read_bytes()


def test_info_reports_the_mask_and_its_share(tmp_path, qa_pair):
    paths, masks, _, flagged = qa_pair
    report = inspect(paths, masks=masks, mask_rule="landsat-qa")
    assert report.mask_shares == pytest.approx([f.mean() for f in flagged])
    text = report.to_text()
    assert text.count("sensor mask:") == 2
    assert "(landsat-qa = bits 0,1,2,3,4 (any set) invalid" in text
    assert f"removes {100 * flagged[0].mean():.1f}% of its valid pixels" in text
    res = CliRunner().invoke(cli.main, ["info", *map(str, paths), "--mask", "landsat-qa",
                                        "--mask-file", str(masks[0]), "--mask-file", "none"])
    assert res.exit_code == 0, res.output
    assert res.output.count("sensor mask:") == 1


@pytest.mark.parametrize("args, words", [
    (["--mask-values", "3,8"], "needs the masks"),
    (["--mask-file", "M0"], "need a rule"),
    (["--mask", "s2-scl", "--mask-bits", "1"], "one way"),
    (["--mask-asset", "scl", "--mask", "s2-scl"], "for --stac inputs"),
    (["--mask", "s2-scl", "--mask-file", "M0"], "1 mask raster(s) for 2 input(s)"),
    (["--mask", "s2-scl", "--mask-file", "M0", "--mask-file", "missing.tif"], "missing.tif"),
    (["--mask-bits", "1,x", "--mask-file", "M0", "--mask-file", "M0"], "bit numbers"),
    (["--mask-fallback", "least-masked"], "needs sensor masks"),
])
def test_mask_usage_errors_are_one_line_and_write_nothing(tmp_path, qa_pair, args, words):
    paths, masks, _, _ = qa_pair
    args = [str(masks[0]) if a == "M0" else str(tmp_path / a) if a == "missing.tif" else a
            for a in args]
    before = sorted(p.name for p in tmp_path.iterdir())
    res = CliRunner().invoke(cli.main, ["fuse", *map(str, paths), "-o",
                                        str(tmp_path / "out.tif"), "--method", "mean", *args])
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert res.exit_code == 1 and len(lines) == 1 and words in lines[0], res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# ----------------------------------------------------------------------------- fallback


def _overcast(tmp_path, h=H, w=W):
    """Three dates with cloud masks (1 = cloud): date 2 is the least cloudy overall, date 3
    the most; a block is cloudy on all three, and in part of it date 2 has a nodata hole."""
    imgs = [smooth_image(h, w, seed=s) for s in (31, 32, 33)]
    imgs[1][:, 10:30, 10:30] = 0  # date 2's own nodata inside the all-cloudy block
    clouds = [np.zeros((h, w), np.uint8) for _ in imgs]
    clouds[0][:h // 2, :] = 1
    clouds[1][:30, :40] = 1
    clouds[2][:3 * h // 4, :] = 1
    paths = [write_raster(tmp_path / f"o{i}.tif", a, nodata=0) for i, a in enumerate(imgs)]
    masks = [write_raster(tmp_path / f"o{i}_m.tif", c) for i, c in enumerate(clouds)]
    return paths, masks, imgs, clouds


@pytest.fixture
def overcast(tmp_path):
    return _overcast(tmp_path)


@pytest.mark.parametrize("method", ["mean", "median", "learned"])
def test_least_masked_fallback(tmp_path, overcast, method, random_weights):
    paths, masks, imgs, clouds = overcast
    kw = dict(method=method, masks=masks, mask_rule=MaskRule(values=(1,)),
              weights=random_weights, device="cpu")
    fuse(paths, tmp_path / "plain.tif", **kw)
    fuse(paths, tmp_path / "fb.tif", quality=tmp_path / "q.tif" if method != "median" else None,
         mask_fallback="least-masked", **kw)
    plain, fb = _read(tmp_path / "plain.tif"), _read(tmp_path / "fb.tif")
    all_cloudy = np.zeros((H, W), bool)
    all_cloudy[:30, :40] = True
    hole = np.zeros((H, W), bool)
    hole[10:30, 10:30] = True
    assert np.array_equal(_invalid(tmp_path / "plain.tif"), all_cloudy)  # no fallback: nodata
    assert not _invalid(tmp_path / "fb.tif").any()  # with it: every pixel has a value
    # with it: date 2 (least cloudy) where it has data, else date 1 (next least cloudy)
    use2, use1 = all_cloudy & ~hole, all_cloudy & hole
    assert np.array_equal(fb[:, use2], imgs[1][:, use2])
    assert np.array_equal(fb[:, use1], imgs[0][:, use1])
    assert np.array_equal(fb[:, ~all_cloudy], plain[:, ~all_cloudy])  # nothing else changes
    if method != "median":
        q = _read(tmp_path / "q.tif")
        assert (q[1][use2] == 1).all() and (q[0][use1] == 1).all()


def test_fallback_is_the_same_on_two_workers(tmp_path):
    pytest.importorskip("distributed")
    paths, masks, _, _ = _overcast(tmp_path, 600, 540)
    args = ["fuse", *map(str, paths), "--method", "mean", "--mask-values", "1",
            "--mask-fallback", "least-masked", "-q"]
    for m in masks:
        args += ["--mask-file", str(m)]
    local = CliRunner().invoke(cli.main, args + ["-o", str(tmp_path / "local.tif")])
    assert local.exit_code == 0, local.output
    dist = CliRunner().invoke(cli.main, args + ["-o", str(tmp_path / "dist.tif"),
                                                "--workers", "2", "--chunk", "256"])
    assert dist.exit_code == 0, dist.output
    assert "9 (0 reused) on 2 worker(s)" in dist.output
    assert (tmp_path / "local.tif").read_bytes() == (tmp_path / "dist.tif").read_bytes()
    assert not _invalid(tmp_path / "local.tif")[:30, :40].any()  # the fallback filled them
