"""Real headless QGIS for the plugin tests: one QgsApplication per process (pytest-qgis), the
plugin loaded through its own classFactory, and tiny real GeoTIFFs and weights on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import write_raster


@pytest.fixture(scope="session")
def plugin(qgis_processing, qgis_iface):
    """The plugin as QGIS loads it: classFactory → initGui (which registers the provider)."""
    import qgis_plugin

    instance = qgis_plugin.classFactory(qgis_iface)
    instance.initGui()
    yield instance
    instance.unload()


@pytest.fixture
def scene_paths(tmp_path: Path) -> list[Path]:
    """Three 3-band views of one 96×80 scene: one with a bright 'cloud', one with a nodata hole."""
    rng = np.random.default_rng(0)
    base = rng.integers(40, 200, size=(3, 80, 96), dtype=np.uint8)
    cloudy = base.copy()
    cloudy[:, 10:40, 20:60] = 250
    holed = base.copy()
    holed[:, 50:70, 5:45] = 0
    shifted = np.clip(base.astype(int) + 12, 1, 255).astype(np.uint8)
    return [write_raster(tmp_path / "a.tif", cloudy, nodata=0),
            write_raster(tmp_path / "b.tif", holed, nodata=0),
            write_raster(tmp_path / "c.tif", shifted, nodata=0)]


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A random-initialised model in the real weights format (trained weights are not needed)."""
    from helpers import save_random_weights

    return save_random_weights(tmp_path_factory.mktemp("weights") / "tiny.safetensors",
                               tile_size=128, widths=[4, 8], name="tiny-test")
