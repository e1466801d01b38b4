"""QGIS honours the fused output's internal mask (issue 19): where the inputs declare no nodata,
the output marks "no input valid" with a GDAL per-dataset mask, which QGIS's GDAL provider
shows as an alpha band: transparent exactly there, while valid black pixels stay opaque data."""

from __future__ import annotations

import numpy as np
from helpers import smooth_image, write_raster

from wsfusion_core.api import fuse


def test_qgis_reads_the_output_mask(qgis_app, tmp_path):
    from qgis.core import QgsRasterLayer

    a, b = smooth_image(120, 100, seed=1), smooth_image(120, 100, seed=2)
    a[:, :20] = b[:, :20] = 0  # valid black rows
    alpha_a = np.full((120, 100), 255, np.uint8)
    alpha_b = alpha_a.copy()
    alpha_a[80:] = alpha_b[80:, 50:] = 0  # bottom right: no input valid
    p1 = write_raster(tmp_path / "a.tif", a, alpha=alpha_a)
    p2 = write_raster(tmp_path / "b.tif", b, alpha=alpha_b)
    out = tmp_path / "fused.tif"
    fuse([p1, p2], out, method="mean")

    layer = QgsRasterLayer(str(out), "fused")
    assert layer.isValid()
    prov = layer.dataProvider()
    assert prov.bandCount() == 4 and prov.colorInterpretationName(4) == "Alpha"
    alpha = prov.block(4, layer.extent(), 100, 120)
    red = prov.block(1, layer.extent(), 100, 120)
    got_alpha = np.array([[alpha.value(r, c) for c in range(100)] for r in range(120)])
    expected = np.full((120, 100), 255.0)
    expected[80:, 50:] = 0
    np.testing.assert_array_equal(got_alpha, expected)
    assert not red.isNoData(5, 5) and red.value(5, 5) == 0  # black, and data
