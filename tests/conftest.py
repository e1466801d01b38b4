"""Shared fixtures for the core tests: real GeoTIFFs on disk and small random checkpoints saved
through the real weight format.

- ``make_raster(path, array, crs=..., transform=..., nodata=..., mask=..., alpha=...)``
- ``smooth_image(height, width, bands=3, dtype="uint8", seed=0)``: low-frequency test content
- ``random_weights`` (a path) and ``make_weights(tile_size=..., widths=..., seed=...)``
- ``SHARED``: ``../shared`` beside the repository root (tests skip where files are absent)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
DEFAULT_CRS = "EPSG:32618"
DEFAULT_TRANSFORM = from_origin(500000.0, 4000000.0, 10.0, 10.0)
TINY_WIDTHS = [4, 8, 8, 8, 8]


def write_raster(path, array, crs=DEFAULT_CRS, transform=DEFAULT_TRANSFORM, nodata=None,
                 mask=None, alpha=None, photometric=None):
    """Write (bands, H, W) ``array`` as a GeoTIFF. ``mask``: (H, W) bool valid → internal mask;
    ``alpha``: (H, W) uint8 → extra alpha band. Returns the path."""
    path = Path(path)
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    count = array.shape[0] + (1 if alpha is not None else 0)
    profile = dict(driver="GTiff", width=array.shape[2], height=array.shape[1], count=count,
                   dtype=array.dtype.name, crs=crs, transform=transform, nodata=nodata)
    if alpha is not None:
        profile["photometric"] = "RGB" if array.shape[0] == 3 else "MINISBLACK"
        profile["alpha"] = "YES"
    elif photometric or count > 1:
        profile["photometric"] = photometric or ("RGB" if count == 3 and array.dtype == np.uint8
                                                 else "MINISBLACK")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(array, indexes=list(range(1, array.shape[0] + 1)))
            if alpha is not None:
                dst.write(np.asarray(alpha, dtype=array.dtype), count)
            if mask is not None:
                dst.write_mask(np.where(mask, 255, 0).astype(np.uint8))
    return path


def _smooth_image(height, width, bands=3, dtype="uint8", seed=0):
    """Smooth, textured content (sums of low-frequency waves): resampling barely changes it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    out = []
    for _ in range(bands):
        v = np.zeros((height, width))
        for _ in range(4):
            fy, fx = rng.uniform(0.005, 0.03, 2)
            v += np.sin(fy * yy + rng.uniform(0, 6)) * np.cos(fx * xx + rng.uniform(0, 6))
        out.append((v - v.min()) / (v.max() - v.min() + 1e-9))
    img = np.stack(out)
    if np.dtype(dtype).kind == "f":
        return img.astype(dtype)
    top = 255 if np.dtype(dtype) == np.uint8 else 4000
    return (20 + img * (top - 40)).round().astype(dtype)


def save_random_weights(path, tile_size=300, widths=TINY_WIDTHS, seed=0, fusion="learned",
                        name="random-test"):
    import torch

    from wsfusion_core.model import FusionModel
    from wsfusion_core.weights import ModelInfo, save_weights

    torch.manual_seed(seed)
    model = FusionModel(num_classes=3, in_channels=3, widths=widths, fusion=fusion)
    model.eval()
    info = ModelInfo(tile_size=tile_size, widths=list(widths), fusion=fusion, name=name,
                     provenance={"summary": "random init for tests"})
    return save_weights(path, model, info)


@pytest.fixture
def make_raster():
    return write_raster


@pytest.fixture
def make_weights(tmp_path):
    def make(tile_size=300, widths=TINY_WIDTHS, seed=0, fusion="learned", name="random-test"):
        path = tmp_path / f"weights_{tile_size}_{seed}_{fusion}.safetensors"
        return save_random_weights(path, tile_size, widths, seed, fusion, name)
    return make


@pytest.fixture
def random_weights(make_weights):
    """A small randomly-initialised FusionModel (tile 300) saved through save_weights."""
    return make_weights()


def _shared_file(*parts) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture
def smooth_image():
    """``smooth_image(height, width, bands=3, dtype="uint8", seed=0)`` → (bands, H, W) array."""
    return _smooth_image


@pytest.fixture
def shared_file():
    """``shared_file("data", "geotiff", ...)`` → the path under ../shared, or skip the test."""
    return _shared_file
