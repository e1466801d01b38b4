"""Inputs as a STAC ItemCollection on disk, a file list, or VRTs: the same fusion as the files.

STAC items are written with pystac and point at local GeoTIFFs (nothing downloads)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from helpers import DEFAULT_TRANSFORM, PIXEL, smooth_image, write_raster
from rasterio.transform import from_origin

from wsfusion_core import cli
from wsfusion_core.api import fuse
from wsfusion_core.sources import StacAsset, group_key, mosaic_vrt, read_input_list

pystac = pytest.importorskip("pystac")

H, W = 300, 400
UTC = dt.timezone.utc


def read(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def item(folder: Path, name: str, array: np.ndarray, when: dt.datetime, x0: int = 0,
         crs: str = "EPSG:32618", **kw) -> pystac.Item:
    """A STAC item whose ``visual`` asset is a GeoTIFF written beside the JSON (relative href)."""
    transform = from_origin(DEFAULT_TRANSFORM.c + x0 * PIXEL, DEFAULT_TRANSFORM.f, PIXEL, PIXEL)
    write_raster(folder / f"{name}.tif", array, crs=crs, transform=transform, **kw)
    it = pystac.Item(id=name, geometry=None, bbox=[-75.1, 36.0, -75.0, 36.1], datetime=when,
                     properties={})
    it.add_asset("visual", pystac.Asset(href=f"{name}.tif", media_type=pystac.MediaType.COG))
    return it


def save(folder: Path, items: list) -> Path:
    path = folder / "items.json"
    path.write_text(json.dumps(pystac.ItemCollection(items).to_dict(transform_hrefs=False)))
    return path


def run_cli(*args) -> tuple[int, str]:
    res = CliRunner().invoke(cli.main, ["fuse", *[str(a) for a in args], "-q"])
    return res.exit_code, res.output


@pytest.fixture
def dates(tmp_path):
    """Date 1 as two items (left and right halves), date 2 as one item; and the same two
    dates as whole files for the reference run."""
    a = smooth_image(H, W, seed=1)
    b = smooth_image(H, W, seed=2)
    b[:, 50:120, 100:250] = 0
    d1 = dt.datetime(2024, 6, 1, 15, 50, tzinfo=UTC)
    items = [item(tmp_path, "d1_left", a[:, :, :W // 2], d1),
             item(tmp_path, "d1_right", a[:, :, W // 2:], d1 + dt.timedelta(seconds=20),
                  x0=W // 2),
             item(tmp_path, "d2", b, dt.datetime(2024, 7, 2, 16, 0, tzinfo=UTC), nodata=0)]
    whole = [write_raster(tmp_path / "whole_a.tif", a), tmp_path / "d2.tif"]
    return save(tmp_path, items), whole


def test_stac_items_of_one_date_are_mosaicked_into_one_input(tmp_path, dates):
    stac, whole = dates
    ref = tmp_path / "ref.tif"
    fuse(whole, ref, method="mean")
    out = tmp_path / "out.tif"
    code, text = run_cli("--stac", stac, "--asset", "visual", "--group", "solar_day",
                         "--method", "mean", "-o", out)
    assert code == 0, text
    assert np.array_equal(read(out), read(ref))
    with rasterio.open(out) as o, rasterio.open(ref) as r:
        assert o.profile == r.profile and o.colorinterp == r.colorinterp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # mosaics removed


def test_stac_run_on_chunks(tmp_path, dates):
    stac, whole = dates
    ref = tmp_path / "ref.tif"
    fuse(whole, ref, method="median")
    out = tmp_path / "out.tif"
    code, text = run_cli("--stac", stac, "--method", "median", "--chunk", "256", "-o", out)
    assert code == 0, text
    assert np.array_equal(read(out), read(ref))


def test_solar_day_keeps_a_pass_over_midnight_utc_together():
    lon = -75.0  # UTC-5 h of solar time
    late = StacAsset("a", "a.tif", dt.datetime(2024, 6, 1, 23, 50, tzinfo=UTC), lon)
    early = StacAsset("b", "b.tif", dt.datetime(2024, 6, 2, 0, 10, tzinfo=UTC), lon)
    assert group_key(late, "solar_day") == group_key(early, "solar_day") == "2024-06-01"
    assert group_key(late, "day") != group_key(early, "day")
    assert group_key(late, "item") == "a"


def test_stac_errors_are_one_line(tmp_path):
    d = dt.datetime(2024, 6, 1, 16, 0, tzinfo=UTC)
    img = smooth_image(100, 100, seed=3)
    items = [item(tmp_path, "utm18", img, d),
             item(tmp_path, "utm17", img, d, crs="EPSG:32617")]
    code, text = run_cli("--stac", save(tmp_path, items), "--method", "mean", "-o",
                         tmp_path / "o.tif")
    lines = [ln for ln in text.splitlines() if ln.startswith("Error:")]
    assert code == 1 and len(lines) == 1 and "utm17" in lines[0] and "Traceback" not in text

    code, text = run_cli("--stac", save(tmp_path, items[:1]), "--asset", "nir", "-o",
                         tmp_path / "o.tif")
    assert code == 1 and "no asset 'nir'" in text and "visual" in text

    items[0].assets["visual"].href = "https://example.com/scene.tif"  # never fetched
    code, text = run_cli("--stac", save(tmp_path, items[:1]), "-o", tmp_path / "o.tif")
    lines = [ln for ln in text.splitlines() if ln.startswith("Error:")]
    assert code == 1 and len(lines) == 1 and "is remote" in lines[0]


def test_input_list_equals_the_same_files_as_arguments(tmp_path, dates):
    _stac, whole = dates
    listing = tmp_path / "sub" / "dates.txt"
    listing.parent.mkdir()
    listing.write_text(f"# two dates\n../{whole[0].name}\n\n{whole[1]}  # absolute\n")
    assert read_input_list(listing) == [str(listing.parent / f"../{whole[0].name}"),
                                        str(whole[1])]
    ref, out = tmp_path / "ref.tif", tmp_path / "out.tif"
    assert run_cli(*whole, "--method", "mean", "-o", ref)[0] == 0
    code, text = run_cli("--input-list", listing, "--method", "mean", "-o", out)
    assert code == 0, text
    assert np.array_equal(read(out), read(ref))
    code, text = run_cli(*whole, "--input-list", listing, "-o", tmp_path / "x.tif")
    assert code != 0 and "one way" in text


def test_vrt_input_fuses_like_its_source(tmp_path, dates, random_weights):
    _stac, whole = dates
    vrt = mosaic_vrt([StacAsset("a", str(whole[0]), dt.datetime.now(UTC), 0.0)],
                     tmp_path / "a.vrt")
    ref, out, chunked = tmp_path / "ref.tif", tmp_path / "out.tif", tmp_path / "chunked.tif"
    fuse(whole, ref, weights=random_weights, device="cpu")
    fuse([vrt, whole[1]], out, weights=random_weights, device="cpu")
    fuse([vrt, whole[1]], chunked, weights=random_weights, device="cpu", chunk=256)
    assert np.array_equal(read(out), read(ref))
    assert np.array_equal(read(chunked), read(ref))
