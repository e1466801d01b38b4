"""Writers: profiles, atomic publishing, colour tables, nodata choice, COG conversion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from wsfusion_core.classes import CLASS_COLOURS, CLASS_NAMES
from wsfusion_core.errors import OutputError
from wsfusion_core.grid import Grid, describe
from wsfusion_core.writers import (
    BLOCK,
    OutputSet,
    base_profile,
    check_outputs,
    gdal_cache,
    natural_nodata,
    open_fused,
    open_quality,
    open_segmentation,
    output_format,
)

GRID = Grid(rasterio.crs.CRS.from_epsg(32618), from_origin(500000, 4000000, 10, 10), 300, 280)


def test_natural_nodata():
    assert natural_nodata("uint8") == 0 and natural_nodata("uint16") == 0
    assert natural_nodata("int16") == -32768
    assert math.isnan(natural_nodata("float32"))


def test_profile_is_tiled_deflate_with_predictor(tmp_path):
    out = tmp_path / "f.tif"
    with OutputSet() as outs:
        w = outs.add(open_fused(out, GRID, 4, "uint16", 0, cog=False))
        w.write(np.full((4, 280, 300), 7, np.uint16), 0)
        outs.commit()
    with rasterio.open(out) as src:
        assert src.profile["tiled"] and src.block_shapes[0] == (256, 256)
        assert src.compression.name == "deflate" and src.nodata == 0
        assert src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
        assert src.count == 4 and src.colorinterp[3].name != "alpha"  # NIR is not alpha
    assert base_profile(GRID, 1, "float32", None)["predictor"] == 3


def test_failure_removes_every_temp_file_and_keeps_old_target(tmp_path):
    old = tmp_path / "f.tif"
    old.write_bytes(b"previous result")
    with pytest.raises(RuntimeError):
        with OutputSet() as outs:
            w = outs.add(open_fused(old, GRID, 3, "uint8", 0, cog=True))
            outs.add(open_segmentation(tmp_path / "s.tif", GRID, cog=False))
            w.write(np.zeros((3, 100, 300), np.uint8), 0)
            assert len(list(tmp_path.iterdir())) == 3  # target + two hidden temp files
            raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["f.tif"]
    assert old.read_bytes() == b"previous result"


def test_segmentation_colour_table_and_tags(tmp_path):
    out = tmp_path / "s.tif"
    with OutputSet() as outs:
        w = outs.add(open_segmentation(out, GRID, cog=False, tags={"WSFUSION_MODEL": "x"}))
        data = np.tile(np.array([0, 1, 2, 255], np.uint8), (280, 75))[None]
        w.write(data, 0)
        outs.commit()
    with rasterio.open(out) as src:
        cmap = src.colormap(1)
        assert [cmap[i][:3] for i in range(3)] == [tuple(c) for c in CLASS_COLOURS]
        assert cmap[255][3] == 0  # nodata transparent
        assert src.nodata == 255 and src.tags()["CLASS_NAMES"] == ",".join(CLASS_NAMES)
        assert src.tags(1)["CLASS_2"] == "building" and src.tags()["WSFUSION_MODEL"] == "x"
        np.testing.assert_array_equal(src.read(), data)


def test_quality_band_descriptions_and_cog(tmp_path):
    from rio_cogeo.cogeo import cog_validate

    grid = Grid(GRID.crs, GRID.transform, 700, 600)
    out = tmp_path / "q.tif"
    with OutputSet() as outs:
        w = outs.add(open_quality(out, grid, [tmp_path / "a.tif", tmp_path / "b.tif"], cog=True))
        for y in range(0, 600, 200):
            w.write(np.full((2, 200, 700), 0.5, np.float32), y)
        outs.commit()
    ok, errors, _ = cog_validate(str(out))
    assert ok, errors
    with rasterio.open(out) as src:
        assert src.descriptions == ("weight of a.tif", "weight of b.tif")
        assert src.dtypes == ("float32", "float32") and math.isnan(src.nodata)
        assert src.overviews(1)
    assert [p.name for p in tmp_path.iterdir()] == ["q.tif"]


def test_check_outputs(tmp_path):
    a = tmp_path / "a.tif"
    a.write_bytes(b"x")
    with pytest.raises(OutputError, match="would overwrite input"):
        check_outputs([tmp_path / "sub" / ".." / "a.tif"], [a], overwrite=True)
    with pytest.raises(OutputError, match="two outputs"):
        check_outputs([tmp_path / "o.tif", tmp_path / "o.tif"], [a], overwrite=False)
    with pytest.raises(OutputError, match="does not exist"):
        check_outputs([tmp_path / "missing" / "o.tif"], [a], overwrite=False)
    (tmp_path / "o.tif").write_bytes(b"y")
    with pytest.raises(OutputError, match="already exists"):
        check_outputs([tmp_path / "o.tif"], [a], overwrite=False)
    check_outputs([tmp_path / "o.tif"], [a], overwrite=True)


def test_appended_rows_land_in_place_whole_blocks_first(tmp_path):
    """Rows come in uneven pieces; only whole 256-row blocks are written until finish."""
    out = tmp_path / "f.tif"
    rows = np.arange(280 * 300, dtype=np.uint32).reshape(1, 280, 300) % 251
    rows = rows.astype(np.uint8)
    with OutputSet() as outs:
        w = outs.add(open_fused(out, GRID, 1, "uint8", None, cog=False))
        for a, b in ((0, 100), (100, 270), (270, 280)):
            w.append(rows[:, a:b])
            assert w._next_row % BLOCK == 0  # only whole blocks so far
        outs.commit()
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(), rows)


def test_output_format_follows_the_reference_input(tmp_path, make_raster, smooth_image):
    img = smooth_image(20, 20)
    a = describe(make_raster(tmp_path / "a.tif", img, nodata=3))
    b = describe(make_raster(tmp_path / "b.tif", img.astype(np.int16)))
    fa, fb = output_format([a, b], a), output_format([a, b], b)
    assert (fa.source, fa.dtype, fa.fill) == (a, "uint8", 3)
    assert (fb.source, fb.dtype, fb.fill) == (b, "int16", -32768)  # natural nodata for int16
    # b declares no nodata, and 3 lies inside the uint8 range: a mask, not a nodata value
    # (the rule itself: tests/core/test_faults_validity.py)
    assert fa.mask and fa.nodata is None and fb.mask and fb.nodata is None
    other = describe(make_raster(tmp_path / "ref.tif", img.astype(np.float32)))
    assert output_format([a, b], other).source == a  # a reference outside the inputs: the first


def test_gdal_cache_holds_a_block_row_only_of_warped_inputs(tmp_path, make_raster, smooth_image):
    """Network strips read direct inputs in whole block rows (strips.BlockRows), so the cache
    needs only the outputs' block row (bytes per output pixel) and one of each warped input."""
    img = smooth_image(40, 50)
    direct = describe(make_raster(tmp_path / "d.tif", img, origin=(500000, 4000000)))
    warped = describe(make_raster(tmp_path / "w.tif", img, origin=(500003, 4000000)))
    grid = direct.grid()
    size = {n: gdal_cache(50, 4, ins, tiles, g).options["GDAL_CACHEMAX"] - 8 * 2**20
            for n, (ins, tiles, g) in {"outputs": ([direct], False, grid),
                                       "direct": ([direct], True, grid),
                                       "warped": ([direct, warped], True, grid),
                                       "no grid": ([direct, warped], True, None)}.items()}
    assert size["outputs"] == size["direct"] == BLOCK * 50 * 4
    assert size["warped"] == BLOCK * 50 * (4 + 3 + 1)  # its 3 uint8 bands and the mask
    assert size["no grid"] == BLOCK * 50 * (4 + 2 * (3 + 1))
