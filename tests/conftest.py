"""Fixtures for all tests (helpers.py holds the plain functions): real GeoTIFFs on disk and
small random checkpoints saved through the real weight format.

- ``make_raster(path, array, crs=..., transform=..., nodata=..., mask=..., alpha=...)``
- ``smooth_image(height, width, bands=3, dtype="uint8", seed=0)``: low-frequency test content
- ``random_weights`` (a path) and ``make_weights(tile_size=..., widths=..., seed=...)``
- ``SHARED``: ``../shared`` beside the repository root (tests skip where files are absent)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import SHARED, TINY_WIDTHS, save_random_weights, write_raster
from helpers import smooth_image as _smooth_image


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


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.cuda`` tests need a CUDA GPU: skipped with the reason where torch sees none
    (torch is imported only when such a test was collected)."""
    marked = [i for i in items if i.get_closest_marker("cuda")]
    if not marked:
        return
    try:
        import torch

        reason = None if torch.cuda.is_available() else "no CUDA GPU visible to torch"
    except ImportError:
        reason = "torch is not installed"
    if reason:
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def one_thread(monkeypatch):
    """The local reference at one torch thread, like every Dask worker (the distributed,
    selection and vectors tests compare a local run with workers)."""
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
