"""A PNG at a glance: inputs | fused | segmentation side by side.

Every raster is read decimated (``out_shape``), so a quicklook of a 50k² mosaic costs a few
megabytes; Pillow only, so the core does not need matplotlib.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .classes import CLASS_COLOURS, SEGMENTATION_NODATA
from .errors import InputError, OutputError
from .publish import describe_oserror, fsync_file, publish_all, temp_path

NODATA_RGB = (40, 40, 40)  # shown where a raster has no valid data
GAP = 6
LABEL_H = 18


def _decimated_shape(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _stretch(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """uint8 shows as stored; other types get a 2-98 % stretch over the valid pixels."""
    if data.dtype == np.uint8:
        return data
    vals = data[:, valid].astype(np.float64)
    if vals.size == 0:
        return np.zeros(data.shape, np.uint8)
    lo, hi = np.percentile(vals, 2), np.percentile(vals, 98)
    scaled = (data.astype(np.float64) - lo) / max(hi - lo, 1e-12)
    return np.clip(scaled * 255, 0, 255).round().astype(np.uint8)


def read_rgb(path: str | os.PathLike, max_side: int = 512,
             bands: Sequence[int] = (1, 2, 3)) -> np.ndarray:
    """(H, W, 3) uint8 view of ``path``, decimated so its longest side is ≤ ``max_side``."""
    import rasterio
    from rasterio.enums import Resampling

    try:
        with rasterio.open(path) as src:
            shape = _decimated_shape(src.width, src.height, max_side)
            idx = [b if b <= src.count else src.count for b in bands]
            data = src.read(idx, out_shape=(len(idx), *shape), resampling=Resampling.nearest)
            mask = src.dataset_mask(out_shape=shape, resampling=Resampling.nearest)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{path}: cannot be read as a raster ({exc})") from None
    valid = mask > 0
    rgb = np.moveaxis(_stretch(data, valid), 0, -1).copy()
    rgb[~valid] = NODATA_RGB
    return rgb


def read_classes(path: str | os.PathLike, max_side: int = 512) -> np.ndarray:
    """(H, W, 3) uint8 colouring of a class map with the project colours."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path) as src:
        shape = _decimated_shape(src.width, src.height, max_side)
        classes = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    lut = np.tile(np.array(NODATA_RGB, np.uint8), (256, 1))
    lut[: len(CLASS_COLOURS)] = CLASS_COLOURS
    lut[SEGMENTATION_NODATA] = NODATA_RGB
    return lut[classes]


def quicklook(inputs: Sequence[str | os.PathLike], fused: str | os.PathLike,
              output: str | os.PathLike, *, segmentation: str | os.PathLike | None = None,
              max_side: int = 384, bands: Sequence[int] = (1, 2, 3)) -> Path:
    """Write a labelled PNG strip ``input 1 … input K | fused | segmentation``; returns its path."""
    from PIL import Image, ImageDraw

    panels = [(f"input {i}", read_rgb(p, max_side, bands)) for i, p in enumerate(inputs, 1)]
    panels.append(("fused", read_rgb(fused, max_side, bands)))
    if segmentation is not None:
        panels.append(("segmentation", read_classes(segmentation, max_side)))
    height = max(a.shape[0] for _, a in panels)
    width = sum(a.shape[1] for _, a in panels) + GAP * (len(panels) - 1)
    canvas = Image.new("RGB", (width, height + LABEL_H), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for label, arr in panels:
        canvas.paste(Image.fromarray(arr), (x, LABEL_H))
        draw.text((x + 3, 3), label, fill=(0, 0, 0))
        x += arr.shape[1] + GAP

    out = Path(output)
    if not out.parent.is_dir():
        raise OutputError(f"folder {out.parent} does not exist", path=out)
    tmp = temp_path(out, "tmp", ".png")
    try:
        canvas.save(tmp, format="PNG", optimize=True)
        fsync_file(tmp)
        publish_all([(tmp, out)], overwrite=True)
    except OSError as exc:
        raise OutputError(f"cannot write the quicklook ({describe_oserror(exc)})",
                          path=out) from None
    finally:
        tmp.unlink(missing_ok=True)
    return out
