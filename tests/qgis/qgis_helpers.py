"""Helpers shared by the QGIS tests (a uniquely named module: ``conftest`` is ambiguous, the
core tests have their own)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # qgis_plugin is not an installed package: import it from the repo
    sys.path.insert(0, str(REPO))
HAS_API = importlib.util.find_spec("wsfusion_core.api") is not None
needs_api = pytest.mark.skipif(not HAS_API, reason="wsfusion_core.api (fuse) is not written yet")

CRS = "EPSG:32618"
ORIGIN = (500000.0, 4100000.0)
PIXEL = 10.0


def write_raster(path: Path, data: np.ndarray, nodata: float | None = None,
                 origin: tuple[float, float] = ORIGIN, crs: str = CRS) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    count, height, width = data.shape
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=data.dtype,
                   crs=crs, transform=from_origin(*origin, PIXEL, PIXEL), nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def run_python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter from the repo root: import-time effects (which modules
    load, which pyproj wins) are only observable in a process of their own."""
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
