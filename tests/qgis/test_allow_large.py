"""Issue 19 item 7 in real QGIS: a huge declared grid is refused before any work, naming the
file, and the dialog offers the opt-in as an advanced parameter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import write_raster
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingParameterDefinition


def test_allow_large_is_an_advanced_parameter_off_by_default(plugin):
    alg = QgsApplication.processingRegistry().createAlgorithmById("wsfusion:fuse")
    p = {d.name(): d for d in alg.parameterDefinitions()}["ALLOW_LARGE"]
    assert p.flags() & QgsProcessingParameterDefinition.FlagAdvanced
    assert p.defaultValue() is False


def test_huge_declared_grid_is_refused_in_qgis(plugin, tmp_path):
    import processing

    src = write_raster(tmp_path / "small.tif", np.full((3, 64, 64), 9, np.uint8))
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource><SourceFilename '
        f'relativeToVRT="0">{src}</SourceFilename><SourceBand>{b}</SourceBand>'
        '<SrcRect xOff="0" yOff="0" xSize="64" ySize="64"/>'
        '<DstRect xOff="0" yOff="0" xSize="64" ySize="64"/></SimpleSource></VRTRasterBand>'
        for b in (1, 2, 3))
    huge = tmp_path / "huge.vrt"
    huge.write_text('<VRTDataset rasterXSize="1000000" rasterYSize="1000000"><SRS>EPSG:32618'
                    '</SRS><GeoTransform>500000, 10, 0, 4000000, 0, -10</GeoTransform>'
                    f"{bands}</VRTDataset>\n")
    out = tmp_path / "fused.tif"
    with pytest.raises(QgsProcessingException) as err:
        processing.run("wsfusion:fuse", {"INPUTS": [str(huge), str(src)], "OUTPUT": str(out),
                                         "METHOD": 1})
    text = str(err.value)
    assert str(huge) in text and "nodata" in text and "allow a large output" in text
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["huge.vrt", "small.tif"]
