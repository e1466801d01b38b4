"""Reference grid, alignment, validity and overlap checks on real GeoTIFFs."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.transform import from_origin
from rasterio.windows import Window

from wsfusion_core.errors import InputError
from wsfusion_core.grid import AlignedReader, align, describe


def test_missing_and_non_raster_inputs_name_the_file(tmp_path):
    with pytest.raises(InputError, match="nope.tif: file not found"):
        describe(tmp_path / "nope.tif")
    txt = tmp_path / "notes.tif"
    txt.write_text("not a raster")
    with pytest.raises(InputError, match="notes.tif"):
        describe(txt)
    with pytest.raises(InputError, match="directory"):
        describe(tmp_path)


def test_alpha_band_is_a_mask_not_an_image_band(tmp_path, make_raster, smooth_image):
    img = smooth_image(40, 50)
    alpha = np.full((40, 50), 255, np.uint8)
    alpha[:10] = 0
    p = make_raster(tmp_path / "rgba.tif", img, alpha=alpha)
    info = describe(p)
    assert info.count == 3 and info.alpha == 4 and info.mask_kind == "alpha"
    with AlignedReader(info, info.grid()) as rd:
        data, valid = rd.read(Window(0, 0, 50, 40))
    assert data.shape == (3, 40, 50)
    np.testing.assert_array_equal(valid, alpha > 0)


def test_band_count_mismatch_names_the_file(tmp_path, make_raster, smooth_image):
    a = make_raster(tmp_path / "a.tif", smooth_image(30, 30, 3))
    b = make_raster(tmp_path / "b.tif", smooth_image(30, 30, 4))
    with pytest.raises(InputError, match="b.tif: has 4 image band"):
        align([a, b])


def test_inputs_without_crs(tmp_path, make_raster, smooth_image):
    a = make_raster(tmp_path / "a.tif", smooth_image(30, 40), crs=None)
    b = make_raster(tmp_path / "b.tif", smooth_image(30, 40, seed=1), crs=None)
    al = align([a, b])
    assert al.grid.crs is None and al.warped == [False, False]
    c = make_raster(tmp_path / "c.tif", smooth_image(30, 41), crs=None)
    with pytest.raises(InputError, match="c.tif: has no CRS and its size"):
        align([a, c])
    d = make_raster(tmp_path / "d.tif", smooth_image(30, 40))
    with pytest.raises(InputError, match="has no CRS while other inputs do"):
        align([d, a])


def test_non_overlapping_input_is_refused(tmp_path, make_raster, smooth_image):
    a = make_raster(tmp_path / "a.tif", smooth_image(30, 30))
    far = from_origin(900000.0, 4000000.0, 10.0, 10.0)
    b = make_raster(tmp_path / "far.tif", smooth_image(30, 30), transform=far)
    with pytest.raises(InputError, match="far.tif: does not overlap"):
        align([a, b])


def test_overlap_fraction_and_reprojected_footprint(tmp_path, make_raster, smooth_image):
    a = make_raster(tmp_path / "a.tif", smooth_image(100, 100))
    half = from_origin(500500.0, 4000000.0, 10.0, 10.0)  # shifted by half its width
    b = make_raster(tmp_path / "b.tif", smooth_image(100, 100), transform=half)
    al = align([a, b])
    assert al.overlaps[0] == pytest.approx(1.0)
    assert al.overlaps[1] == pytest.approx(0.5, abs=1e-6)
    assert al.warped == [False, True]


def test_warped_read_marks_outside_footprint_and_mask_invalid(tmp_path, make_raster, smooth_image):
    img = smooth_image(100, 100)
    mask = np.ones((100, 100), bool)
    mask[40:60, 40:60] = False  # internal mask hole
    a = make_raster(tmp_path / "a.tif", img)
    shifted = from_origin(500255.0, 4000000.0, 10.0, 10.0)  # 25.5 px east, not pixel-aligned
    b = make_raster(tmp_path / "b.tif", img, transform=shifted, mask=mask)
    al = align([a, b])
    info = al.inputs[1]
    assert info.mask_kind == "mask"
    with AlignedReader(info, al.grid) as rd:
        data, valid = rd.read(Window(0, 0, 100, 100))
    assert not valid[:, :25].any()  # west of its footprint
    hole = np.zeros((100, 100), bool)
    hole[38:62, 63:88] = True  # the hole after the 25.5 px shift, with a bilinear margin
    assert valid[:, 27:][~hole[:, 27:]].all()
    assert not valid[45:55, 67:83].any()  # the hole, moved by the shift
    assert valid[5:35, 30:95].all()


def test_nodata_direct_read(tmp_path, make_raster, smooth_image):
    img = smooth_image(50, 60)
    img[:, 10:20, 10:20] = 0
    p = make_raster(tmp_path / "nd.tif", img, nodata=0)
    info = describe(p)
    with AlignedReader(info, info.grid()) as rd:
        _, valid = rd.read(Window(0, 5, 60, 20))
    assert not valid[5:15, 10:20].any() and valid[:, 30:].all()


def test_naip_pair_is_aligned_by_warping(shared_file):
    a = shared_file("data", "geotiff", "naip_multidate", "m_4709963_se_14_1_20090818.tif")
    b = shared_file("data", "geotiff", "naip_multidate", "m_4709963_se_14_1_20200831.tif")
    al = align([a, b])
    assert al.warped == [False, True] and al.count == 4
    assert al.overlaps[1] > 0.99
