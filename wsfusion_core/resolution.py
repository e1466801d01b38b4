"""The segmentation resolution guard: a class map is written only at ground resolutions near
those the model was trained on.

The segmentation net learned roads and buildings at a few decimetres to a couple of metres per
pixel; on 10 m Sentinel-2 or 30 m Landsat pixels a road is thinner than a pixel and a building
a few pixels, and the net's output is confident noise. Writing it silently would be a wrong
output that looks right, so the guard leaves the class map out and says why in one line,
unless the caller forces it. The fused image itself is never affected: the quality net judges
clouds and gaps, which look alike at any resolution.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .grid import Grid
    from .weights import ModelInfo

# Models whose metadata does not record their training resolutions (every file written before
# the field existed): the provenance of all of them is the Dubai aerial tiles (about 0.5-1 m,
# downsampled up to 3x in training) and Banepa (0.13 m, 0.26 m after the 2x downsampling, up to
# 8x in training), so about 0.1-2 m.
DEFAULT_TRAINING_RESOLUTIONS_M = (0.1, 2.0)
# "Far outside": more than this factor below the finest or above the coarsest training
# resolution. Within 4x the net still sees roads a few pixels wide and buildings as blobs
# (e.g. 3 m PlanetScope passes, 10 m Sentinel-2 does not).
FAR_FACTOR = 4.0
REFUSAL = "no class map written"  # how the guard's sentence starts (front ends add their hint)


def pixel_size_m(grid: Grid) -> float | None:
    """The ground size of one pixel in metres (the geometric mean of its two sides), from the
    grid's CRS: projected units converted to metres, degrees measured on the ellipsoid at the
    grid's centre. None without a CRS (nothing says what a pixel unit is)."""
    crs = grid.crs
    if crs is None:
        return None
    t = grid.transform
    xres, yres = math.hypot(t.a, t.d), math.hypot(t.b, t.e)
    if crs.is_geographic:
        from pyproj import Geod

        geod = Geod(ellps="WGS84")
        w2, h2 = grid.width / 2, grid.height / 2
        cx, cy = t.c + t.a * w2 + t.b * h2, t.f + t.d * w2 + t.e * h2
        cy = max(-89.0, min(89.0, cy))
        _, _, dx = geod.inv(cx, cy, cx + xres, cy)
        _, _, dy = geod.inv(cx, cy, cx, min(90.0, cy + yres))
        return math.sqrt(abs(dx) * abs(dy))
    try:
        factor = float(crs.linear_units_factor[1])
    except Exception:  # noqa: BLE001 - an engineering / odd CRS: its unit is unknown
        return None
    return math.sqrt(xres * yres) * factor


def training_resolutions(info: ModelInfo) -> tuple[float, float, bool]:
    """(finest, coarsest) training resolution in metres and whether the model records them."""
    rec = info.training_resolutions_m
    if rec:
        return float(rec[0]), float(rec[1]), True
    lo, hi = DEFAULT_TRAINING_RESOLUTIONS_M
    return lo, hi, False


def _m(v: float) -> str:
    return f"{v:.3g} m"


def segmentation_refusal(grid: Grid, info: ModelInfo) -> str | None:
    """The one-line reason not to write a class map on ``grid``, or None when it is fine (or
    the pixel size cannot be known: no CRS)."""
    size = pixel_size_m(grid)
    if size is None:
        return None
    lo, hi, recorded = training_resolutions(info)
    if lo / FAR_FACTOR <= size <= hi * FAR_FACTOR:
        return None
    side = "coarser" if size > hi else "finer"
    where = "" if recorded else " (as its provenance says; the file does not record it)"
    return (f"{REFUSAL}: pixels of {_m(size)} are more than {FAR_FACTOR:g}x {side} "
            f"than the {lo:g}-{hi:g} m the model {info.name!r} was trained on{where}, so its "
            "roads and buildings would not be trustworthy")


def resolution_note(grid: Grid, info: ModelInfo) -> str:
    """For ``info``: the pixel size and the model's range, and whether a class map is written."""
    size = pixel_size_m(grid)
    lo, hi, recorded = training_resolutions(info)
    span = f"{lo:g}-{hi:g} m" + ("" if recorded else " (assumed from its provenance)")
    if size is None:
        return f"pixel size in metres unknown (no CRS); the model was trained on {span}"
    refusal = segmentation_refusal(grid, info)
    if refusal is None:
        return f"pixels of {_m(size)}, within {FAR_FACTOR:g}x of the model's {span}: written"
    return refusal


__all__ = ["DEFAULT_TRAINING_RESOLUTIONS_M", "FAR_FACTOR", "REFUSAL", "pixel_size_m",
           "resolution_note", "segmentation_refusal", "training_resolutions"]
