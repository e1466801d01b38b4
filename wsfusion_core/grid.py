"""Put every input on one pixel grid and say, per pixel, whether each input has data there.

The reference (``reference=`` or the first input) defines the grid. Inputs already on that grid
are read directly; others are warped onto it on the fly with a ``WarpedVRT`` (bilinear), so no
aligned copy is ever written or held in memory.

Validity, the one rule ``fuse`` reads by and ``info`` reports (``validity_text``): a pixel of an
input is valid only where every mask a GIS would honour says so, all together: its alpha band
(> 0), its internal or sidecar per-dataset mask (GDAL gives it priority over nodata, so a file
with both has both applied), its nodata value on any image band, NaN/inf in float data, and its
footprint (outside it after warping → invalid). Palette (colour-table) images are refused: their
values are indices, and averaging indices gives colours nobody chose.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from .blockread import FixedBlocks
from .errors import InputError, first_line, shown
from .georef import apply, check_georeferencing, crs_problem, footprint_on
from .input_guard import GDAL_TYPE_NAMES, dtype_problem, open_input
from .integrity import chained_cause, truncation_problem
from .options import MaskKind

if TYPE_CHECKING:
    from shapely.geometry import Polygon

    from .masks import MaskSource

# Below this share of the reference covered, an input is treated as not overlapping at all.
MIN_OVERLAP = 1e-9


@dataclass(frozen=True)
class RasterInfo:
    """What one raster file says about itself (no pixels read)."""

    path: Path
    width: int
    height: int
    image_bands: tuple[int, ...]  # 1-based indexes of the image bands (alpha excluded)
    alpha: int | None  # 1-based index of an alpha band, if any
    dtype: str
    nodata: float | None
    crs: CRS | None
    transform: Affine
    mask_kind: MaskKind
    descriptions: tuple[str | None, ...] = ()  # per image band, copied to the fused output
    rgb: bool = False  # the first three image bands are tagged red, green, blue
    # The remote patterns it was admitted under (remote.py): every later open (each Dask
    # worker's too) checks it, and its VRT's sources, by the same rule.
    allow_remote: tuple[str, ...] = ()
    # A per-dataset mask (internal or .msk) besides the nodata value or alpha band that
    # ``mask_kind`` names: applied too (valid = every mask together).
    has_mask: bool = False
    palette: bool = False  # the first image band has a colour table (values are indices)
    # A sensor mask (masks.py: SCL, QA_PIXEL, a cloud mask) whose flagged pixels are invalid
    # as nodata is; set by fuse / inspect after describe, never read from the file itself.
    sensor_mask: MaskSource | None = None

    @property
    def count(self) -> int:
        return len(self.image_bands)

    @property
    def label(self) -> str:
        """The path as the user gave it (a URL keeps its ``//``), for messages."""
        return shown(self.path)

    @property
    def res(self) -> tuple[float, float]:
        return (math.hypot(self.transform.a, self.transform.d),
                math.hypot(self.transform.b, self.transform.e))

    def grid(self) -> Grid:
        return Grid(self.crs, self.transform, self.width, self.height)

    @property
    def validity_text(self) -> str:
        """Every test that makes a pixel of this input invalid, as ``AlignedReader.read``
        applies them (``info`` prints this; ``fuse`` logs it)."""
        parts = []
        if self.nodata is not None:
            nd = self.nodata  # rasterio reads it as a float: 0, not 0.0, for integer data
            shown = int(nd) if np.dtype(self.dtype).kind in "iu" and float(nd).is_integer() \
                else nd
            parts.append(f"nodata value {shown}")
        if self.alpha is not None:
            parts.append(f"alpha band {self.alpha}")
        if self.has_mask or self.mask_kind == "mask":
            parts.append("internal mask")
        if np.dtype(self.dtype).kind == "f":
            parts.append("NaN/inf")
        if not parts:
            return "all pixels (no nodata or mask)"
        return " and ".join(parts) + (" (all applied)" if len(parts) > 1 else "")


@dataclass(frozen=True)
class Grid:
    """The output pixel grid."""

    crs: CRS | None
    transform: Affine
    width: int
    height: int

    def footprint(self) -> Polygon:
        return _pixel_footprint(self.transform, self.width, self.height)

    def same_as(self, info: RasterInfo) -> bool:
        """True when ``info`` can be read pixel-for-pixel without resampling."""
        if (info.width, info.height) != (self.width, self.height):
            return False
        if self.crs is None or info.crs is None:
            return self.crs is None and info.crs is None
        if info.crs != self.crs:
            return False
        tol = 1e-6 * max(abs(self.transform.a), abs(self.transform.e), 1e-12)
        return all(abs(a - b) <= tol for a, b in zip(tuple(info.transform)[:6],
                                                      tuple(self.transform)[:6]))


def describe(path: str | os.PathLike, allow_remote: Sequence[str] = ()) -> RasterInfo:
    """Open ``path`` just long enough to read its header; a clear InputError if that fails.
    ``allow_remote``: checked remote patterns (remote.patterns); none: local files only."""
    p = Path(path)
    try:
        # regular files (or allowed remote rasters), allowed formats, safe VRTs only
        with open_input(path, allow_remote) as src:
            alpha = next((i for i, ci in zip(src.indexes, src.colorinterp)
                          if ci == ColorInterp.alpha), None)
            bands = tuple(i for i in src.indexes if i != alpha)
            if not bands:
                raise InputError("has no image bands", path=p)
            flags = src.mask_flag_enums[bands[0] - 1]
            # GDAL reports an explicit mask (internal or .msk) as PER_DATASET alone; an alpha
            # band adds ALPHA, a nodata value NODATA. The explicit mask wins in GDAL's own
            # reads, so it is applied here even when nodata or alpha is declared too.
            explicit_mask = (MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags
                             and MaskFlags.nodata not in flags
                             and MaskFlags.all_valid not in flags)
            kind: MaskKind
            if src.nodata is not None:
                kind = "nodata"
            elif alpha is not None:
                kind = "alpha"
            elif explicit_mask:
                kind = "mask"
            else:
                kind = "none"
            crs = src.crs if src.crs else None
            if crs is None and src.gcps[0]:
                raise InputError("georeferenced by ground control points only", path=p,
                                 hint="warp it to a CRS first (gdalwarp)")
            check_georeferencing(p, src.transform, src.width, src.height, crs)
            cut = truncation_problem(src, p)
            if cut is not None:
                raise InputError(cut, path=p)
            rgb = [src.colorinterp[b - 1] for b in bands[:3]] == [
                ColorInterp.red, ColorInterp.green, ColorInterp.blue]
            palette = src.colorinterp[bands[0] - 1] == ColorInterp.palette
            return RasterInfo(p, src.width, src.height, bands, alpha, src.dtypes[bands[0] - 1],
                              src.nodata, crs, src.transform, kind,
                              tuple(src.descriptions[b - 1] for b in bands), rgb,
                              tuple(allow_remote), explicit_mask and kind != "mask", palette)
    except InputError:
        raise
    except RasterioIOError as exc:
        raise InputError(f"not a readable raster ({first_line(exc)})", path=p) from None
    except Exception as exc:  # corrupt headers raise a variety of types
        raise InputError(f"cannot be read ({first_line(exc)})", path=p) from None




def _pixel_footprint(transform: Affine, width: int, height: int, densify: int = 21
                     ) -> Polygon:
    """Polygon of a raster's extent in its own CRS, densified so it bends right when reprojected."""
    from shapely.geometry import Polygon

    t = np.linspace(0.0, 1.0, densify)
    cols = np.concatenate([t * width, np.full_like(t, width), (1 - t) * width, np.zeros_like(t)])
    rows = np.concatenate([np.zeros_like(t), t * height, np.full_like(t, height), (1 - t) * height])
    a, b, c, d, e, f = tuple(transform)[:6]
    xs, ys = a * cols + b * rows + c, d * cols + e * rows + f
    return Polygon(zip(xs, ys))


def footprint_in(info: RasterInfo, crs: CRS | None, grid: Grid | None = None) -> Polygon:
    """The raster's footprint in ``crs`` (densified edges); with ``grid`` (whose CRS is
    ``crs``) only the part near that grid, found through longitude/latitude so that footprints
    crossing the antimeridian or a pole, or reaching beyond the grid CRS's domain, still land
    right (georef.footprint_on).

    Reprojected with rasterio's own PROJ, the one that also warps the pixels: inside QGIS a
    second PROJ (the distribution's pyproj) may be loaded, and its database need not match the
    PROJ_DATA rasterio points at, which made transforms fail at random there."""
    from rasterio.warp import transform as transform_points
    from shapely.geometry import Polygon

    poly = _pixel_footprint(info.transform, info.width, info.height)
    if crs is None or info.crs is None or info.crs == crs:
        return poly
    xs, ys = poly.exterior.coords.xy
    if grid is not None:
        try:
            near = footprint_on(xs, ys, info.crs, grid.footprint().exterior.coords.xy, crs)
        except Exception:  # noqa: BLE001 - degenerate geometry: the direct way below
            near = None
        if near is not None:
            return near
    try:
        px, py = transform_points(info.crs, crs, list(xs), list(ys))
    except Exception:  # no transformation between the two CRSs
        return Polygon()
    px, py = np.asarray(px, dtype=float), np.asarray(py, dtype=float)
    ok = np.isfinite(px) & np.isfinite(py)
    if ok.sum() < 3:
        return Polygon()
    out = Polygon(zip(px[ok], py[ok]))
    return out if out.is_valid else out.buffer(0)


def overlap_fraction(info: RasterInfo, grid: Grid) -> float:
    """Share of the reference grid's area that ``info`` covers (0..1)."""
    if grid.crs is None or info.crs is None:
        return 1.0 if (info.width, info.height) == (grid.width, grid.height) else 0.0
    ref = grid.footprint()
    if ref.area == 0:
        return 0.0
    # Three tries before an input is called non-overlapping: in qgis_process (QGIS's PROJ and
    # rasterio's in one process) an input in the neighbouring UTM zone was refused so in 2 of
    # about 130 runs (not reproduced with logging on; the cause is unknown). Every step (CRS
    # comparison, transform, intersection) is repeated; it costs time only on the error path.
    for attempt in range(3):
        if attempt:
            time.sleep(0.2 * attempt)
        try:
            fraction = float(footprint_in(info, grid.crs, grid).intersection(ref).area
                             / ref.area)
        except Exception:  # degenerate geometry after reprojection: treat as no overlap
            fraction = 0.0
        if fraction > 0:
            return fraction
    return 0.0


@dataclass
class Alignment:
    """The checked plan: output grid, input headers, and which inputs need warping."""

    grid: Grid
    inputs: list[RasterInfo]
    reference: RasterInfo
    overlaps: list[float] = field(default_factory=list)
    warped: list[bool] = field(default_factory=list)

    @property
    def count(self) -> int:
        return self.inputs[0].count


def alignment_problems(infos: Sequence[RasterInfo], ref: RasterInfo
                       ) -> tuple[list[InputError], list[float], list[bool]]:
    """Every reason the inputs cannot be fused onto ``ref``'s grid, plus each input's overlap
    and whether it needs warping. The one rule set: ``align`` raises the first problem,
    ``report.inspect`` lists them all, so ``info`` never approves what ``fuse`` refuses."""
    first = infos[0]
    problems = [e for e in (dtype_problem(i) for i in infos) if e is not None]
    # Palette values are indices into a colour table: their mean is no colour of either input.
    problems += [InputError("is a palette (colour-table) image: its values are colour indices, "
                            "which cannot be averaged", path=i.path,
                            hint="expand it to RGB first: gdal_translate -expand rgb")
                 for i in infos if i.palette]
    # One data type for all: uint8 next to uint16 has no meaningful common scale (averaging
    # them saturated 86 % of a test output), so the user converts with the scaling they mean.
    problems += [InputError(f"has data type {i.dtype} but {first.label} has {first.dtype}; all "
                            "inputs need one data type", path=i.path,
                            hint="convert them first, e.g. gdal_translate -ot "
                                 f"{GDAL_TYPE_NAMES.get(first.dtype, first.dtype)} -scale")
                 for i in infos[1:] if i.dtype != first.dtype and dtype_problem(i) is None]
    problems += [InputError(f"has {i.count} image band(s) but {first.label} has {first.count}; "
                            "all inputs need the same bands", path=i.path)
                 for i in infos[1:] if i.count != first.count]
    with_crs = [i for i in infos if i.crs is not None]
    if with_crs and len(with_crs) != len(infos):
        bad = next(i for i in infos if i.crs is None)
        problems.append(InputError("has no CRS while other inputs do", path=bad.path,
                                   hint="assign one (gdal_edit.py -a_srs) or give all inputs "
                                        "without one"))
    if not with_crs:
        problems += [InputError(f"has no CRS and its size {i.width}x{i.height} differs from "
                                f"{first.label} ({first.width}x{first.height}); inputs without a "
                                "CRS must share one size", path=i.path)
                     for i in infos[1:] if (i.width, i.height) != (first.width, first.height)]
    if (ref.crs is None) != (first.crs is None):
        problems.append(InputError("reference and inputs must all have a CRS or all lack one",
                                   path=ref.path))
    elif ref.crs is None and (ref.width, ref.height) != (first.width, first.height):
        problems.append(InputError("has no CRS and its size differs from the inputs'",
                                   path=ref.path))
    grid = ref.grid()
    cx, cy = apply(grid.transform, grid.width / 2, grid.height / 2)
    apart = {i.path: why for i in infos if i.crs is not None and ref.crs is not None
             and i.crs != ref.crs
             and (why := crs_problem(i.crs, ref.crs, cx, cy)) is not None}
    problems += [InputError(why, path=p) for p, why in apart.items()]
    overlaps = [overlap_fraction(info, grid) if info.path not in apart else 0.0
                for info in infos]
    problems += [InputError(f"does not overlap the reference grid ({ref.label})", path=i.path)
                 for i, frac in zip(infos, overlaps)
                 if frac <= MIN_OVERLAP and i.path not in apart]
    return problems, overlaps, [not grid.same_as(info) for info in infos]


def align(inputs: Sequence[str | os.PathLike], reference: str | os.PathLike | None = None,
          allow_remote: Sequence[str] = ()) -> Alignment:
    """Read the headers, check the inputs fit together and overlap the reference grid."""
    if not inputs:
        raise InputError("no input rasters given")
    infos = [describe(p, allow_remote) for p in inputs]
    ref = describe(reference, allow_remote) if reference is not None else infos[0]
    problems, overlaps, warped = alignment_problems(infos, ref)
    if problems:
        raise problems[0]
    return Alignment(ref.grid(), infos, ref, overlaps, warped)


class AlignedReader:
    """Reads one input on the output grid: (bands, valid) for any window, warping if needed."""

    def __init__(self, info: RasterInfo, grid: Grid, resampling: Resampling = Resampling.bilinear):
        self.info = info
        self.grid = grid
        try:
            self._src = open_input(info.path, info.allow_remote)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"cannot be opened ({first_line(exc)})", path=info.path) from None
        self._vrt = None
        self._alpha = info.alpha
        if not grid.same_as(info):
            # Without nodata or alpha, a destination alpha carries the source's internal mask and
            # its footprint through the warp; with nodata, the warp marks outside-footprint nodata.
            add_alpha = info.nodata is None and info.alpha is None
            self._vrt = WarpedVRT(self._src, crs=grid.crs, transform=grid.transform,
                                  width=grid.width, height=grid.height, resampling=resampling,
                                  add_alpha=add_alpha)
            if add_alpha:
                self._alpha = self._vrt.count
        self._ds = self._vrt if self._vrt is not None else self._src
        # The explicit mask is read as such only on the input's own grid: a warp carries it
        # into the destination nodata (or the added alpha), which the tests above then read.
        self._mask = self._vrt is None and (info.mask_kind == "mask" or info.has_mask)
        # Warped pixels depend on the requested window unless reads use one fixed block grid
        # (see blockread.py): then a chunk of a distributed run reads what a local run reads.
        self._blocks = FixedBlocks(self._vrt) if self._vrt is not None else None
        self._float = np.dtype(info.dtype).kind == "f"
        self._sensor = None
        if info.sensor_mask is not None:
            from .masks import MaskReader

            try:
                self._sensor = MaskReader(info.sensor_mask, grid)
            except BaseException:
                self.close()
                raise

    @property
    def block_rows(self) -> int:
        """Rows of one block row as this input is decoded: a warped input's fixed blocks, else
        the file's own blocks (a strip TIFF's strips)."""
        if self._blocks is not None:
            return self._blocks.size
        return int(self._src.block_shapes[0][0])

    def read(self, window: Window, out_shape: tuple[int, int] | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """→ (data (C, h, w) in the input's dtype, valid (h, w) bool). Invalid pixels keep
        whatever value the file holds; callers must use ``valid``, never the values."""
        idx = list(self.info.image_bands) + ([self._alpha] if self._alpha else [])
        kw = {"window": window}
        if out_shape is not None:
            kw.update(out_shape=(len(idx),) + tuple(out_shape), resampling=Resampling.nearest)
        try:
            if self._blocks is not None and out_shape is None:
                arr = self._blocks.read(idx, window)
            else:
                arr = self._ds.read(idx, **kw)
            if self._alpha:
                data, valid = arr[:-1], arr[-1] > 0
            else:
                data, valid = arr, None
            nd = self.info.nodata
            if nd is not None:  # invalid where every image band holds nodata (GDAL's rule)
                bad = np.isnan(data) if math.isnan(nd) else data == nd
                valid = ~bad.all(axis=0) if valid is None else valid & ~bad.all(axis=0)
            if self._mask:
                mkw: dict[str, Any] = {"window": window}
                if out_shape is not None:
                    mkw.update(out_shape=tuple(out_shape), resampling=Resampling.nearest)
                m = self._ds.dataset_mask(**mkw) > 0
                valid = m if valid is None else valid & m
            if valid is None:
                valid = np.ones(data.shape[1:], dtype=bool)
        except Exception as exc:
            raise InputError(f"read failed ({chained_cause(exc)})",
                             path=self.info.path) from None
        if self._float:
            valid &= np.isfinite(data).all(axis=0)
        if self._sensor is not None:  # the sensor mask: one more AND into validity
            valid &= ~self._sensor.flagged(window, out_shape)
        return data, valid

    def read_parts(self, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """→ (data, own validity without the sensor mask, flagged by the mask): what the
        least-masked fallback (masks.rescue) decides from across the inputs."""
        sensor, self._sensor = self._sensor, None
        try:
            data, own = self.read(window)
        finally:
            self._sensor = sensor
        flagged = (sensor.flagged(window) if sensor is not None
                   else np.zeros(own.shape, bool))
        return data, own, flagged

    def close(self) -> None:
        sensor = getattr(self, "_sensor", None)
        if sensor is not None:
            sensor.close()
            self._sensor = None
        if self._vrt is not None:
            self._vrt.close()
        self._src.close()

    def __enter__(self) -> AlignedReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
