"""Issue 8 through the QGIS algorithm: a hostile input or a full disk gives a
QgsProcessingException with the very sentence ``fuse()`` raises, and nothing on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import tmpfs, write_raster
from qgis.core import QgsProcessingException

from wsfusion_core import fuse
from wsfusion_core.errors import WsfusionError


def _run(params: dict) -> dict:
    import processing

    return processing.run("wsfusion:fuse", params)


def _same_sentence(inputs: list[Path], out: Path, **options) -> None:
    with pytest.raises(WsfusionError) as core:
        fuse(inputs, out, method="mean", overwrite=True, **options)
    with pytest.raises(QgsProcessingException) as qgis:
        _run({"INPUTS": [str(p) for p in inputs], "OUTPUT": str(out), "METHOD": 1})
    assert str(qgis.value) == str(core.value)


def test_complex_input_same_sentence(plugin, scene_paths, tmp_path):
    bad = tmp_path / "complex.tif"
    with rasterio.open(scene_paths[1]) as src:
        profile, data = src.profile, src.read()
    profile.update(dtype="complex64", nodata=None)
    with rasterio.open(bad, "w", **profile) as dst:
        dst.write(data.astype("complex64"))
    out = tmp_path / "o.tif"
    _same_sentence([scene_paths[0], bad], out)
    assert not out.exists()


def test_vrt_raw_band_same_sentence(plugin, scene_paths, tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(256)) * 100)
    vrt = tmp_path / "innocent.tif"
    vrt.write_text(f"""<VRTDataset rasterXSize="96" rasterYSize="80">
  <VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">
    <SourceFilename relativeToVRT="0">{secret}</SourceFilename><ImageOffset>0</ImageOffset>
    <PixelOffset>1</PixelOffset><LineOffset>96</LineOffset></VRTRasterBand>
</VRTDataset>""")
    out = tmp_path / "o.tif"
    _same_sentence([scene_paths[0], vrt], out)
    assert not out.exists()


def test_disk_full_same_sentence_and_nothing_left(plugin, tmp_path):
    big = [write_raster(tmp_path / f"in{i}.tif",
                        np.random.default_rng(i).integers(1, 255, (3, 600, 600), np.uint8))
           for i in range(2)]
    with tmpfs(tmp_path / "disk") as disk:
        out = disk / "o.tif"
        with pytest.raises(QgsProcessingException, match="no space left on device") as err:
            _run({"INPUTS": [str(p) for p in big], "OUTPUT": str(out), "METHOD": 1})
        assert str(out) in str(err.value) and "\n" not in str(err.value)
        assert list(disk.iterdir()) == []
