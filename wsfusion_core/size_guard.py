"""Refuse, before any work, an output that cannot be meant: far larger than the data, or than
the disk.

A reference that declares a huge grid over little data (a VRT of 10⁶ × 10⁶ px over a 400 px
file) would run for hours and fill the disk with nodata, with no warning. So ``fuse`` and
``info`` compare the plan with

- the inputs' real data extent: a VRT holds data only where its sources land (their
  ``DstRect``), any other raster over its whole footprint. An output grid of more than
  ``LARGE_PX`` pixels whose area is more than ``FAR_BEYOND`` times the part of it where some
  input has data is refused: it would be mostly nodata;
- the free space where the outputs go: refused when even at ``DISK_HEADROOM``:1 compression
  (DEFLATE on imagery usually does better; noise does not) the outputs, with the parts of a
  chunked run and the plain copy of a COG, would not fit.

``allow_large`` (CLI ``--allow-large``) runs it anyway: the user knows the grid is meant, or
that the data compress well. A disk that fills up all the same is still caught while writing
(nothing is published).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import InputError, OutputError
from .georef import apply
from .input_guard import MAX_VRT_BYTES

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from .grid import Grid, RasterInfo

FAR_BEYOND = 10.0  # output area / area with data above this: refused (if also > LARGE_PX)
LARGE_PX = 2**26  # 67 Mpx (8192²): outputs up to this size are never refused for their extent
DISK_HEADROOM = 2.0  # refused when half the uncompressed size does not fit
COG_FACTOR = 2.4  # a COG run holds the plain file and the COG (with overviews) at once
LARGE_HINT = "allow a large output to run it anyway"

_SOURCES = ("SimpleSource", "ComplexSource", "AveragedSource", "KernelFilteredSource")


def data_extent(info: RasterInfo) -> BaseGeometry:
    """Where ``info`` can hold data, in its own CRS: a VRT's source rectangles, else its whole
    footprint (pixel coordinates mapped through its geotransform)."""
    from shapely.geometry import box
    from shapely.ops import unary_union

    from .grid import _pixel_footprint

    whole = _pixel_footprint(info.transform, info.width, info.height)
    rects = _vrt_rects(info.path)
    if rects is None:
        return whole
    polys = []
    for xoff, yoff, w, h in rects:  # clipped to the raster: GDAL reads nothing outside it
        x0, y0 = max(xoff, 0.0), max(yoff, 0.0)
        x1, y1 = min(xoff + w, info.width), min(yoff + h, info.height)
        if x1 > x0 and y1 > y0:
            corners = [apply(info.transform, *p) for p in ((x0, y0), (x1, y0), (x1, y1),
                                                           (x0, y1))]
            polys.append(_poly(corners))
    return unary_union(polys) if polys else box(0, 0, 0, 0)


def _poly(corners: Sequence[tuple[float, float]]) -> BaseGeometry:
    from shapely.geometry import Polygon

    return Polygon(corners)


def _vrt_rects(path: Path) -> list[tuple[float, float, float, float]] | None:
    """The destination rectangles of a plain VRT's sources (pixel units); None when ``path``
    is not one (or a source has no rectangle: it then fills the whole raster)."""
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_VRT_BYTES + 1)
    except OSError:
        return None
    if not text.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<VRTDataset") \
            or len(text) > MAX_VRT_BYTES:
        return None
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None
    if root.get("subClass") or root.find("VRTRasterBand") is None:
        return None  # a warped VRT or no bands: its whole extent
    rects = []
    for band in root.iter("VRTRasterBand"):
        if band.get("subClass") or band.find("PixelFunctionType") is not None:
            return None  # derived bands: assume data everywhere
        for src in band:
            if src.tag not in _SOURCES:
                continue
            dst = src.find("DstRect")
            if dst is None:
                return None
            try:
                rects.append(tuple(float(dst.get(k, "nan")) for k in
                                   ("xOff", "yOff", "xSize", "ySize")))
            except ValueError:
                return None
    if any(not all(math.isfinite(v) for v in r) for r in rects):
        return None
    return rects  # type: ignore[return-value]


def data_share(infos: Sequence[RasterInfo], grid: Grid) -> float:
    """Share (0..1) of the output grid's area where at least one input can hold data."""
    from shapely.ops import unary_union

    from .georef import footprint_on
    from .grid import footprint_in

    ref = grid.footprint()
    if grid.crs is None or ref.area == 0:
        return 1.0
    pieces = []
    for info in infos:
        extent = data_extent(info)
        if info.crs is None or info.crs == grid.crs:
            pieces.append(extent)
            continue
        if _vrt_rects(info.path) is None:  # the whole footprint: as the overlap computes it
            pieces.append(footprint_in(info, grid.crs, grid))
            continue
        for part in getattr(extent, "geoms", [extent]):
            xs, ys = part.exterior.coords.xy
            try:
                on = footprint_on(xs, ys, info.crs, ref.exterior.coords.xy, grid.crs)
            except Exception:  # noqa: BLE001 - cannot place it: count it as covering all
                return 1.0
            if on is None:
                return 1.0
            pieces.append(on)
    covered = unary_union(pieces).intersection(ref).area if pieces else 0.0
    return float(min(1.0, covered / ref.area))


def extent_problem(infos: Sequence[RasterInfo], reference: RasterInfo, grid: Grid
                   ) -> InputError | None:
    """The refusal of an output grid far beyond the inputs' data (None when it is fine)."""
    px = grid.width * grid.height
    if px <= LARGE_PX:
        return None
    share = data_share(infos, grid)
    if share * FAR_BEYOND >= 1.0:
        return None
    ratio = f"{1 / share:,.0f} times" if share > 0 else "infinitely"
    return InputError(f"its grid ({grid.width:,} x {grid.height:,} px) is {ratio} larger than "
                      "the area where the inputs hold data; the output would be almost all "
                      f"nodata (refused beyond {FAR_BEYOND:g} times for outputs over "
                      f"{LARGE_PX / 1e6:.0f} Mpx)", path=reference.path, hint=LARGE_HINT)


def output_bytes(grid: Grid, count: int, dtype: str, inputs: int, segmentation: bool,
                 quality: bool) -> dict[str, int]:
    """Uncompressed bytes of each output kind on ``grid``."""
    px = grid.width * grid.height
    out = {"fused": px * count * np.dtype(dtype).itemsize}
    if segmentation:
        out["segmentation"] = px
    if quality:
        out["quality"] = px * 4 * inputs
    return out


def disk_problem(targets: dict[str, Path], sizes: dict[str, int], cog: bool, chunked: bool
                 ) -> OutputError | None:
    """The refusal of outputs that cannot fit their file systems (None when they may)."""
    from .publish import free_mb

    need: dict[int, list[tuple[Path, float]]] = {}
    for kind, target in targets.items():
        folder = target.parent
        try:
            dev = os.stat(folder).st_dev
        except OSError:
            continue
        n = sizes[kind] * (COG_FACTOR if cog else 1.0)
        need.setdefault(dev, []).append((target, n))
        if chunked:  # the parts, in the folder beside the fused output, until assembled
            need.setdefault(os.stat(targets["fused"].parent).st_dev, []).append(
                (targets["fused"], sizes[kind]))
    for items in need.values():
        total = sum(n for _t, n in items)
        target = items[0][0]
        free = free_mb(target.parent)
        if free is None or total / DISK_HEADROOM <= free * 2**20:
            continue
        return OutputError(f"no space left on device for these outputs (about "
                           f"{_size(total)} needed uncompressed, {_size(free * 2**20)} free in "
                           f"{target.parent}: too little even at {DISK_HEADROOM:g}:1 "
                           "compression); nothing was written", path=target, hint=LARGE_HINT)
    return None


def _size(n: float) -> str:
    for unit, f in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20)):
        if n >= f:
            return f"{n / f:,.1f} {unit}"
    return f"{n / 2**10:.0f} KB"


__all__ = ["DISK_HEADROOM", "FAR_BEYOND", "LARGE_HINT", "LARGE_PX", "data_extent",
           "data_share", "disk_problem", "extent_problem", "output_bytes"]
