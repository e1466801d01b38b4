"""STAC items with one single-band asset per band (as Sentinel-2 and Landsat items are published
on public catalogues) become one band stack per date, described by common names, so the sensor
layout, its true colour and its evidence bands are recognised as for a stacked GeoTIFF.

Real parts: single-band GeoTIFF assets at 10 / 20 / 60 m written with rasterio, a STAC
ItemCollection written with pystac, the real CLI, and (for remote assets) a local HTTP server
with Range support on 127.0.0.1; the reference is the same bands stacked into one GeoTIFF by
numpy (coarse bands repeated onto the 10 m grid, i.e. nearest neighbour).
"""

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
from wsfusion_core.evidence import choose
from wsfusion_core.grid import describe
from wsfusion_core.sensors import LAYOUTS, recognise
from wsfusion_core.sources import group_inputs, layout_assets

pystac = pytest.importorskip("pystac")

H, W = 300, 360  # 10 m pixels; 150 x 180 at 20 m, 50 x 60 at 60 m
UTC = dt.timezone.utc
S2 = LAYOUTS["s2-l1c"]
# Sentinel-2 band resolutions (m), in layout order B1..B12 (B8A after B8)
S2_RES = (60, 10, 10, 10, 20, 20, 20, 10, 20, 60, 60, 20, 20)
# Asset keys as Earth Search publishes them
S2_KEYS = ("coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08",
           "nir09", "cirrus", "swir16", "swir22")


def read(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def s2_bands(seed: int, height: int = H, width: int = W) -> list[np.ndarray]:
    """13 uint16 bands at their native resolution (reflectance x 10000 like values)."""
    out = []
    for i, res in enumerate(S2_RES):
        f = res // int(PIXEL)
        out.append(smooth_image(height // f, width // f, bands=1, dtype="uint16",
                                seed=seed * 100 + i)[0])
    return out


def on_10m(bands: list[np.ndarray]) -> np.ndarray:
    """The bands stacked on the 10 m grid, coarse ones repeated (nearest neighbour)."""
    return np.stack([np.repeat(np.repeat(b, res // int(PIXEL), 0), res // int(PIXEL), 1)
                     for b, res in zip(bands, S2_RES)])


def band_item(folder: Path, name: str, bands: list[np.ndarray], when: dt.datetime,
              x0: int = 0, nodata=None, keys=S2_KEYS, names=S2.bands, ids=S2.ids,
              res=S2_RES) -> pystac.Item:
    """A STAC item with one single-band GeoTIFF asset per band (relative hrefs), each with
    ``eo:bands`` [{name, common_name}], like a Sentinel-2 item of a public catalogue."""
    it = pystac.Item(id=name, geometry=None, bbox=[-75.1, 36.0, -75.0, 36.1], datetime=when,
                     properties={})
    for arr, key, common, bid, r in zip(bands, keys, names, ids, res):
        t = from_origin(DEFAULT_TRANSFORM.c + x0 * PIXEL, DEFAULT_TRANSFORM.f, r, r)
        write_raster(folder / f"{name}_{key}.tif", arr, transform=t, nodata=nodata)
        it.add_asset(key, pystac.Asset(
            href=f"{name}_{key}.tif", media_type=pystac.MediaType.COG,
            extra_fields={"eo:bands": [{"name": bid, "common_name": common}]}))
    return it


def save(folder: Path, items: list, name: str = "items.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(pystac.ItemCollection(items).to_dict(transform_hrefs=False)))
    return path


def run_cli(*args) -> tuple[int, str]:
    res = CliRunner().invoke(cli.main, ["fuse", *[str(a) for a in args], "-q"])
    return res.exit_code, res.output


def error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("Error:")]


@pytest.fixture
def s2_dates(tmp_path):
    """Date 1: one S2 L1C-like item; date 2: two items (left and right halves) with a nodata
    gap in every band of the right one. Also the same dates as 13-band stacked GeoTIFFs."""
    a = s2_bands(1)
    b = s2_bands(2)
    half = W // 2
    left = [x[:, :x.shape[1] // 2] for x in b]
    right = [x[:, x.shape[1] // 2:].copy() for x in b]
    for x, r in zip(right, S2_RES):  # a gap of 60 x 60 m blocks: nodata in every band
        f = r // int(PIXEL)
        x[60 // f:180 // f, 60 // f:120 // f] = 0
    d1 = dt.datetime(2024, 6, 1, 15, 50, tzinfo=UTC)
    d2 = dt.datetime(2024, 7, 2, 16, 0, tzinfo=UTC)
    items = [band_item(tmp_path, "d1", a, d1),
             band_item(tmp_path, "d2_left", left, d2, nodata=0),
             band_item(tmp_path, "d2_right", right, d2 + dt.timedelta(seconds=20), x0=half,
                       nodata=0)]
    stacked_b = np.concatenate([on_10m(left), on_10m(right)], axis=2)
    whole = [write_raster(tmp_path / "stack_a.tif", on_10m(a)),
             write_raster(tmp_path / "stack_b.tif", stacked_b, nodata=0)]
    for w in whole:
        with rasterio.open(w, "r+") as dst:
            dst.descriptions = S2.bands
    return save(tmp_path, items), whole


def test_s2_band_assets_become_a_13_band_stack_recognised_as_l1c(tmp_path, s2_dates):
    stac, whole = s2_dates
    folder = tmp_path / "vrts"
    folder.mkdir()
    paths = group_inputs(stac, "bands", "solar_day", folder)
    assert len(paths) == 2 and all(p.endswith(".vrt") for p in paths)
    for path, ref in zip(paths, whole):
        with rasterio.open(path) as src, rasterio.open(ref) as r:
            assert src.count == 14 and src.colorinterp[-1].name == "alpha"
            assert src.descriptions[:13] == S2.bands
            assert src.res == (PIXEL, PIXEL) and (src.width, src.height) == (W, H)
            assert src.transform == r.transform and src.crs == r.crs
            data = src.read(list(range(1, 14)))
            alpha = src.read(14)
            ref_data = r.read()
        valid = (ref_data != 0).any(axis=0) if r.nodata == 0 else np.ones((H, W), bool)
        assert np.array_equal(alpha > 0, valid)
        assert np.array_equal(data[:, valid], ref_data[:, valid])
    assert not valid.all()  # date 2's gap is nodata
    rec = recognise(13, "uint16", describe(paths[0]).descriptions)
    assert rec.layout is not None and rec.layout.key == "s2-l1c"
    net = choose([describe(p) for p in paths], "auto", needs_model=False)
    assert net.layout is S2 and net.bands == (4, 3, 2)


@pytest.mark.parametrize("method", ["mean", "learned"])
def test_fused_band_assets_equal_fused_stacked_geotiffs(tmp_path, s2_dates, random_weights,
                                                         method):
    stac, whole = s2_dates
    ref, out = tmp_path / "ref.tif", tmp_path / "out.tif"
    kw = {"weights": random_weights, "device": "cpu"} if method == "learned" else {}
    fuse(whole, ref, method=method, **kw)
    extra = ["--weights", random_weights, "--device", "cpu"] if method == "learned" else []
    code, text = run_cli("--stac", stac, "--asset", "bands", "--method", method, *extra,
                         "-o", out)
    assert code == 0, text
    assert np.array_equal(read(out), read(ref))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # VRTs removed


def test_unknown_set_of_band_assets_is_refused_in_one_line(tmp_path):
    d = dt.datetime(2024, 6, 1, 16, 0, tzinfo=UTC)
    bands = [smooth_image(60, 60, bands=1, dtype="uint16", seed=s)[0] for s in range(4)]
    it = band_item(tmp_path, "odd", bands, d, keys=("red", "green", "blue", "nir"),
                   names=("red", "green", "blue", "nir"), ids=("B4", "B3", "B2", "B8"),
                   res=(10, 10, 10, 10))
    stac = save(tmp_path, [it])
    out = tmp_path / "o.tif"
    code, text = run_cli("--stac", stac, "--asset", "bands", "--method", "mean", "-o", out)
    lines = error_lines(text)
    assert code == 1 and len(lines) == 1 and "Traceback" not in text, text
    assert str(stac) in lines[0] and "(blue, green, nir, red)" in lines[0]
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    it.assets.clear()
    code, text = run_cli("--stac", save(tmp_path, [it]), "--asset", "bands", "-o", out)
    lines = error_lines(text)
    assert code == 1 and len(lines) == 1 and "no single-band assets" in lines[0]


def test_asset_list_stacks_bands_in_the_given_order(tmp_path, s2_dates):
    stac, whole = s2_dates
    folder = tmp_path / "vrts"
    folder.mkdir()
    paths = group_inputs(stac, "red,green,blue", "solar_day", folder)
    with rasterio.open(paths[0]) as src:
        assert src.count == 4 and src.descriptions[:3] == ("red", "green", "blue")
        data = src.read([1, 2, 3])
    assert np.array_equal(data, read(whole[0])[[3, 2, 1]])
    ref, out = tmp_path / "ref.tif", tmp_path / "out.tif"
    rgb = []
    for i, w in enumerate(whole):
        with rasterio.open(w) as src:
            rgb.append(write_raster(tmp_path / f"rgb{i}.tif", src.read([4, 3, 2]),
                                    nodata=src.nodata))
    fuse(rgb, ref, method="median")
    code, text = run_cli("--stac", stac, "--asset", "red, green,blue", "--method", "median",
                         "-o", out)
    assert code == 0, text
    assert np.array_equal(read(out), read(ref))
    code, text = run_cli("--stac", stac, "--asset", "red,swir99", "-o", out)
    assert code == 1 and "no asset 'swir99'" in text and len(error_lines(text)) == 1


def test_asset_visual_is_read_as_before(tmp_path):
    """One asset: the file itself is the input (no VRT), even beside band assets."""
    d = dt.datetime(2024, 6, 1, 16, 0, tzinfo=UTC)
    it = band_item(tmp_path, "d", s2_bands(3), d)
    write_raster(tmp_path / "tci.tif", smooth_image(H, W, seed=4))
    it.add_asset("visual", pystac.Asset(href="tci.tif", media_type=pystac.MediaType.COG,
                                        extra_fields={"eo:bands": [
                                            {"name": "B04", "common_name": "red"},
                                            {"name": "B03", "common_name": "green"},
                                            {"name": "B02", "common_name": "blue"}]}))
    stac = save(tmp_path, [it])
    folder = tmp_path / "vrts"
    folder.mkdir()
    assert group_inputs(stac, "visual", "solar_day", folder) == [str(tmp_path / "tci.tif")]
    assert not list(folder.iterdir())
    # the three-band visual asset is no band asset: "bands" still finds the 13 bands
    assert layout_assets(it, stac)[0] == S2_KEYS


def test_catalogue_naming_variants_pick_the_right_assets(tmp_path):
    """Earth Search / Planetary Computer style: ``rededge`` for B05..B07 (STAC EO 1.0), a JPEG
    2000 copy of every band, B01..B12 keys, and extra non-layout assets."""
    it = pystac.Item(id="x", geometry=None, bbox=[0, 0, 1, 1],
                     datetime=dt.datetime(2024, 6, 1, tzinfo=UTC), properties={})
    generic = {"rededge1": "rededge", "rededge2": "rededge", "rededge3": "rededge"}
    for key, name, bid in zip(S2_KEYS, S2.bands, S2.ids):
        eo = {"eo:bands": [{"name": f"B{bid[1:].zfill(2)}",
                            "common_name": generic.get(name, name)}]}
        it.add_asset(f"{key}-jp2", pystac.Asset(href=f"{key}.jp2", media_type="image/jp2",
                                                extra_fields=eo))
        it.add_asset(key, pystac.Asset(href=f"{key}.tif", media_type=pystac.MediaType.COG,
                                       extra_fields=eo))
    it.add_asset("scl", pystac.Asset(href="scl.tif"))
    keys, names = layout_assets(it, tmp_path / "items.json")
    assert keys == S2_KEYS and names == S2.bands
    # Sentinel-2 L2A: no cirrus → the 12-band layout, in its order
    del it.assets["cirrus"], it.assets["cirrus-jp2"]
    keys, names = layout_assets(it, tmp_path / "items.json")
    assert names == LAYOUTS["s2-l2a"].bands and "cirrus" not in keys
    # Landsat 8/9 Level-2 with its surface-temperature band left out
    ls = pystac.Item(id="l", geometry=None, bbox=[0, 0, 1, 1],
                     datetime=dt.datetime(2024, 6, 1, tzinfo=UTC), properties={})
    for name in ("lwir11",) + LAYOUTS["landsat89-l2"].bands[::-1]:
        ls.add_asset(name, pystac.Asset(href=f"{name}.tif", extra_fields={
            "eo:bands": [{"name": name.upper(), "common_name": name}]}))
    keys, names = layout_assets(ls, tmp_path / "items.json")
    assert names == LAYOUTS["landsat89-l2"].bands and keys == names


def test_incomplete_or_ambiguous_items_never_pass_for_another_sensor(tmp_path):
    """A Sentinel-2 item missing a band holds Landsat 8/9 Level-2's seven names: refused, not
    read as Landsat (whose reflectance rule differs); so is one whose platform says Sentinel-2,
    and one whose three ``rededge`` assets carry no band id to tell them apart."""
    where = tmp_path / "items.json"

    def s2_item(skip=(), ids=True, platform=None):
        it = pystac.Item(id="s", geometry=None, bbox=[0, 0, 1, 1],
                         datetime=dt.datetime(2024, 6, 1, tzinfo=UTC),
                         properties={"platform": platform} if platform else {})
        for key, name, bid in zip(S2_KEYS, S2.bands, S2.ids):
            if key not in skip:
                common = "rededge" if name.startswith("rededge") else name
                band = {"name": bid, "common_name": common} if ids else {"common_name": common}
                it.add_asset(key, pystac.Asset(href=f"{key}.tif",
                                               extra_fields={"eo:bands": [band]}))
        return it

    with pytest.raises(InputError, match="form no known sensor layout"):
        layout_assets(s2_item(skip=("rededge2",)), where)
    with pytest.raises(InputError, match=r"assets rededge1, rededge2, rededge3 are all band "
                                         "rededge1"):
        layout_assets(s2_item(ids=False), where)
    landsat_like = s2_item(skip=("rededge1", "rededge2", "rededge3", "nir", "nir09", "cirrus"),
                           platform="sentinel-2b")
    with pytest.raises(InputError, match=r"\(blue, coastal, green, nir08, red, swir16, swir22\)"):
        layout_assets(landsat_like, where)
    landsat_like.properties["platform"] = "landsat-9"
    assert layout_assets(landsat_like, where)[1] == LAYOUTS["landsat89-l2"].bands


def test_remote_band_assets_fuse_like_local_ones(tmp_path, s2_dates):
    stac, _whole = s2_dates
    items = json.loads(stac.read_text())
    with RangeServer(tmp_path) as srv:
        for f in items["features"]:
            for a in f["assets"].values():
                a["href"] = srv.url(a["href"])
        remote = tmp_path / "remote.json"
        remote.write_text(json.dumps(items))
        local, out = tmp_path / "local.tif", tmp_path / "out.tif"
        assert run_cli("--stac", stac, "--asset", "bands", "--method", "mean",
                       "-o", local)[0] == 0
        code, text = run_cli("--stac", remote, "--asset", "bands", "--method", "mean",
                             "-o", out)
        lines = error_lines(text)
        assert code == 1 and len(lines) == 1 and "is remote" in lines[0], text
        assert "asset 'coastal'" in lines[0] and not out.exists()
        code, text = run_cli("--stac", remote, "--asset", "bands", "--method", "mean",
                             "--allow-remote", "127.0.0.1", "-o", out)
        assert code == 0, text
    assert np.array_equal(read(out), read(local))


def test_declared_scale_travels_and_mixed_assets_are_refused(tmp_path):
    d = dt.datetime(2024, 6, 1, 16, 0, tzinfo=UTC)
    it = band_item(tmp_path, "d", s2_bands(5), d)
    with rasterio.open(tmp_path / "d_swir16.tif", "r+") as dst:  # L2A baseline 04.00 style
        dst.scales, dst.offsets = (1e-4,), (-0.1,)
    folder = tmp_path / "vrts"
    folder.mkdir()
    paths = group_inputs(save(tmp_path, [it]), "bands", "item", folder)
    with rasterio.open(paths[0]) as src:
        assert src.scales[11] == pytest.approx(1e-4) and src.offsets[11] == pytest.approx(-0.1)
        assert src.scales[3] == 1.0 and src.offsets[3] == 0.0

    write_raster(tmp_path / "d_cirrus.tif", s2_bands(5)[10].astype("float32"),
                 transform=from_origin(DEFAULT_TRANSFORM.c, DEFAULT_TRANSFORM.f, 60, 60))
    out = tmp_path / "o.tif"
    code, text = run_cli("--stac", save(tmp_path, [it]), "--asset", "bands", "-o", out)
    lines = error_lines(text)
    assert code == 1 and len(lines) == 1 and "asset 'cirrus'" in lines[0], text
    assert "float32" in lines[0] and not out.exists()

    write_raster(tmp_path / "three.tif", smooth_image(H, W, dtype="uint16"))
    it.add_asset("three", pystac.Asset(href="three.tif"))
    code, text = run_cli("--stac", save(tmp_path, [it]), "--asset", "red,three", "-o", out)
    lines = error_lines(text)
    assert code == 1 and len(lines) == 1 and "has 3 bands" in lines[0], text
