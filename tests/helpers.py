"""Helpers shared by all tests (core, training, QGIS); fixtures live in the conftest files.

``tests/`` is on ``sys.path`` because ``tests/conftest.py`` is loaded for every test run, so
any test imports these as ``from helpers import ...``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import rasterio
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # qgis_plugin is not an installed package: import it from the repo
    sys.path.insert(0, str(REPO))
SHARED = REPO / ".." / "shared"
DEFAULT_CRS = "EPSG:32618"
PIXEL = 10.0
DEFAULT_TRANSFORM = from_origin(500000.0, 4000000.0, PIXEL, PIXEL)
TINY_WIDTHS = [4, 8, 8, 8, 8]


def write_raster(path, array, crs=DEFAULT_CRS, transform=DEFAULT_TRANSFORM, nodata=None,
                 mask=None, alpha=None, photometric=None, origin=None):
    """Write (bands, H, W) ``array`` as a GeoTIFF. ``mask``: (H, W) bool valid → internal mask;
    ``alpha``: (H, W) uint8 → extra alpha band; ``origin``: (x, y) of the top-left corner with
    10 m pixels (instead of ``transform``). Returns the path."""
    path = Path(path)
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if origin is not None:
        transform = from_origin(*origin, PIXEL, PIXEL)
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


def smooth_image(height, width, bands=3, dtype="uint8", seed=0):
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
    """A randomly initialised FusionModel saved through the real weight format."""
    import torch

    from wsfusion_core.model import FusionModel
    from wsfusion_core.weights import ModelInfo, save_weights

    torch.manual_seed(seed)
    model = FusionModel(num_classes=3, in_channels=3, widths=widths, fusion=fusion)
    model.eval()
    # The test rasters have 10 m pixels (PIXEL): a test model claims 1-100 m, so the
    # segmentation resolution guard (resolution.py) lets its class maps through.
    info = ModelInfo(tile_size=tile_size, widths=list(widths), fusion=fusion, name=name,
                     provenance={"summary": "random init for tests"},
                     training_resolutions_m=[1.0, 100.0])
    return save_weights(path, model, info)


def run_python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter from the repo root: import-time effects (which modules
    load) are only observable in a process of their own."""
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


@contextmanager
def tmpfs(folder: Path, options: str = "size=520k") -> Iterator[Path]:
    """A real tmpfs mounted on ``folder`` (disk-full and read-only cases), always unmounted;
    skips the test with the reason where mounting is impossible (not root; CI runs as root)."""
    import os
    import shutil

    import pytest

    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    folder.mkdir(exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def engine_run(runner, inputs, bands=(1, 2, 3)) -> tuple[np.ndarray, ...]:
    """``inputs`` through the engine loop (read → engine → buffer → rows), as fuse runs it,
    blending where ``runner`` says: (fused, classes, quality) as the writers would get them."""
    from wsfusion_core.blend import blend_device, buffer_for
    from wsfusion_core.engines import make_engine
    from wsfusion_core.grid import AlignedReader, align
    from wsfusion_core.loop import run_plan
    from wsfusion_core.view import parse_scale, view_radiometry
    from wsfusion_core.windows import plan_windows

    al = align(inputs)
    g = al.grid
    plan = plan_windows(g.height, g.width, runner.info.tile_size, 64)
    readers = [AlignedReader(i, g) for i in al.inputs]
    try:
        scales = view_radiometry(readers, bands, parse_scale(None)).scales()
        engine = make_engine("learned", runner, scales, bands, True, True)
        buffer = buffer_for(plan, g.width, al.count, len(inputs), "uint8", 0, 3, True,
                            device=blend_device("learned", runner))
        assert getattr(buffer, "on_device", False) == runner.policy.device_side
        rows: list = []
        run_plan(plan, readers, engine, buffer, rows.append)
    finally:
        for rd in readers:
            rd.close()
    return tuple(np.concatenate([getattr(r, f) for r in rows], axis=1)
                 for f in ("fused", "classes", "quality"))


def qgis_env(**extra: str) -> dict:
    """The environment for a ``qgis_process`` run as a user's shell gives it: no PYTHONPATH,
    PYTHONHOME or VIRTUAL_ENV, and no activated venv's ``bin`` on PATH (QGIS's embedded
    Python finds its interpreter on PATH, and from a venv's ``python3`` it takes that venv's
    packages: then nothing would be missing)."""
    venv = os.environ.get("VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    if venv:
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                      if not p.startswith(venv))
    env.update(QT_QPA_PLATFORM="offscreen", **extra)
    return env
