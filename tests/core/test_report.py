"""``inspect`` (``wsfusion-raster info``): the report text, and the same verdict as ``fuse``,
which it reaches through the same checks."""

from __future__ import annotations

import re

import numpy as np
import pytest
import rasterio
from rasterio.enums import MaskFlags
from rasterio.transform import from_origin

from wsfusion_core.api import fuse
from wsfusion_core.errors import WsfusionError
from wsfusion_core.report import inspect


def test_inspect_report_text(tmp_path, make_raster, smooth_image):
    a = make_raster(tmp_path / "a.tif", smooth_image(100, 100), nodata=0)
    half = from_origin(500500.0, 4000000.0, 10.0, 10.0)
    b = make_raster(tmp_path / "b.tif", smooth_image(100, 100), transform=half)
    text = inspect([a, b]).to_text()
    assert str(a) in text and str(b) in text
    assert "50.0%" in text and "warped" in text and "nodata value 0" in text
    assert "--" not in text  # read in QGIS too: no CLI flags
    far = make_raster(tmp_path / "far.tif", smooth_image(10, 10),
                      transform=from_origin(0.0, 0.0, 10.0, 10.0))
    report = inspect([a, far])
    assert report.problems and "refuse" in report.to_text()


def _cases(tmp_path, make_raster, smooth_image):
    img = smooth_image(40, 50)
    a = make_raster(tmp_path / "a.tif", img, nodata=0)
    b = make_raster(tmp_path / "b.tif", img)
    no_crs = make_raster(tmp_path / "nocrs.tif", img, crs=None)
    far = make_raster(tmp_path / "far.tif", img, transform=from_origin(0.0, 0.0, 10.0, 10.0))
    gray = make_raster(tmp_path / "gray.tif", img[:1], nodata=0)
    u16 = make_raster(tmp_path / "u16.tif", img.astype(np.uint16) * 10)
    return {"fine": ([a, b], None, None), "reference without CRS": ([a, b], no_crs, None),
            "input without CRS": ([a, no_crs], None, None), "far": ([a, far], None, None),
            "bands": ([a, b], None, (1, 2, 4)), "band count": ([a, gray], None, None),
            "reference dtype": ([a, u16], u16, None)}


@pytest.mark.parametrize("case", ["fine", "reference without CRS", "input without CRS", "far",
                                  "bands", "band count", "reference dtype"])
def test_info_and_fuse_agree(case, tmp_path, make_raster, smooth_image):
    """``info`` approves exactly what ``fuse`` accepts, and predicts the output dtype/nodata."""
    inputs, reference, bands = _cases(tmp_path, make_raster, smooth_image)[case]
    report = inspect(inputs, reference=reference, bands=bands)
    out = tmp_path / "out.tif"
    try:
        fuse(inputs, out, method="mean", reference=reference, bands=bands)
        refused = None
    except WsfusionError as exc:
        refused = str(exc)
    if refused is not None:
        assert refused in report.problems
        return
    assert report.problems == []
    said = re.search(r"write (\d+) band\(s\) (\w+) on the reference grid, "
                     r"(?:nodata (\S+)|(an internal mask)) where", report.to_text())
    assert said is not None
    with rasterio.open(out) as dst:
        assert (int(said[1]), said[2]) == (dst.count, dst.dtypes[0])
        if said[4]:  # a mask instead of a nodata value (writers.output_format)
            assert dst.nodata is None and dst.mask_flag_enums[0] == [MaskFlags.per_dataset]
        else:
            assert float(said[3]) == dst.nodata
