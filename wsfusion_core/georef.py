"""Is a raster's georeferencing usable, and where does it lie on another grid?

``grid_problem`` refuses what no GIS can place: a geotransform holding NaN or infinity, a zero
pixel size, a geographic grid reaching beyond a pole. ``crs_problem`` refuses two CRSs between
which PROJ knows no conversion (a LOCAL_CS next to UTM), in those words rather than as "does
not overlap". ``footprint_on`` puts one raster's footprint on another grid's CRS also when the
footprint crosses the antimeridian, encircles a pole or reaches far outside the grid CRS's
domain (a whole-world EPSG:4326 raster next to a UTM grid): it goes through longitude/latitude,
clips to the grid's own surroundings there, and only then projects, densely, into the grid CRS.

Every transform uses rasterio's own PROJ (see grid.footprint_in for why not pyproj).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from .errors import InputError

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

def apply(transform: Affine, col: float, row: float) -> tuple[float, float]:
    """(x, y) of a pixel position: ``transform @ (col, row)`` written out, so that it works with
    every affine release (older ones, which QGIS installs may bring, lack ``@`` on tuples)."""
    t = transform
    return t.a * col + t.b * row + t.c, t.d * col + t.e * row + t.f


LONLAT = CRS.from_epsg(4326)  # traditional GIS order in rasterio: x = longitude
# The grid's surroundings kept when clipping in longitude/latitude: this share of its extent on
# every side (at least MIN_MARGIN degrees), so that a curved edge between two densified points
# is never cut; only what lies near the grid can overlap it.
MARGIN, MIN_MARGIN = 0.1, 0.01
SEGMENT_DEG = 0.05  # densify longitude/latitude edges to this before projecting
MAX_POINTS = 20000  # per ring: a huge grid's edges are densified more coarsely


def grid_problem(transform: Affine, width: int, height: int, crs: CRS | None
                 ) -> str | None:
    """Why this geotransform cannot place pixels (None when it can)."""
    values = tuple(transform)[:6]
    if not all(math.isfinite(v) for v in values):
        return ("its geotransform holds NaN or infinite values (GDAL order: "
                f"{', '.join(f'{v:g}' for v in transform.to_gdal())})")
    if transform.determinant == 0:
        return (f"its geotransform has a zero pixel size (pixel {transform.a:g} x "
                f"{transform.e:g}, rotation {transform.b:g}, {transform.d:g})")
    if width < 1 or height < 1:
        return f"it has no pixels ({width} x {height})"
    if crs is not None and crs.is_geographic:
        ys = [apply(transform, c, r)[1] for c in (0, width) for r in (0, height)]
        tol = abs(transform.e) + abs(transform.d)  # one pixel: global grids may overhang
        worst = max(ys, key=abs)
        if abs(worst) > 90 + tol:
            return (f"its grid reaches latitude {worst:g}°, beyond the pole (geographic "
                    "coordinates end at ±90°)")
    return None


def crs_problem(crs: CRS, ref: CRS, x: float, y: float) -> str | None:
    """Why points in ``ref`` cannot be converted to ``crs`` (None when they can); tried on the
    point (x, y) of ``ref`` (the reference grid's centre, inside its own domain)."""
    from rasterio.warp import transform as transform_points

    try:
        transform_points(ref, crs, [x], [y])
    except Exception as exc:  # noqa: BLE001 - PROJ's errors have several types
        if "coordinate operation" not in str(exc).lower():
            return None  # a point outside the domain: not the question asked here
        return (f"its CRS ({_name(crs)}) cannot be converted to the reference grid's "
                f"({_name(ref)}): PROJ knows no conversion between them")
    return None


def _name(crs: CRS) -> str:
    text = crs.to_string()
    if len(text) > 60:
        m = re.match(r'^\s*[A-Z_]+\["([^"]*)"', crs.to_wkt())
        text = m.group(1) if m else text[:60] + "..."
    return text


def transform_xy(src: CRS, dst: CRS, xs: Any, ys: Any) -> tuple[np.ndarray, np.ndarray]:
    """Points from ``src`` to ``dst``; a point PROJ cannot convert becomes NaN (rasterio fails
    the whole batch for one bad point, e.g. ``utm: Invalid latitude``)."""
    from rasterio.warp import transform as transform_points

    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    try:
        px, py = transform_points(src, dst, xs.tolist(), ys.tolist())
        return np.asarray(px, float), np.asarray(py, float)
    except Exception:  # noqa: BLE001 - one by one, keeping those that convert
        px, py = np.full(xs.shape, np.nan), np.full(ys.shape, np.nan)
        for i, (x, y) in enumerate(zip(xs, ys)):
            try:
                (a,), (b,) = transform_points(src, dst, [float(x)], [float(y)])
            except Exception:  # noqa: BLE001
                continue
            px[i], py[i] = a, b
        return px, py


def lonlat_footprint(ring_x: Any, ring_y: Any, crs: CRS) -> BaseGeometry | None:
    """A closed ring in ``crs`` as (Multi)Polygon in longitude/latitude within −180..180: a
    ring that crosses the antimeridian is cut there, one that encircles a pole is closed over
    it. None when the ring cannot be converted."""
    from shapely.geometry import Polygon, box
    from shapely.ops import unary_union

    lon, lat = transform_xy(crs, LONLAT, ring_x, ring_y)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if ok.sum() < 3:
        return None
    lon, lat = np.unwrap(lon[ok], period=360.0), np.clip(lat[ok], -90.0, 90.0)
    pts = list(zip(lon, lat))
    if abs(lon[-1] - lon[0]) > 180:  # went once around: a pole lies inside
        pole = 90.0 if lat.mean() > 0 else -90.0
        pts += [(lon[-1], pole), (lon[0], pole)]
    poly = _valid(Polygon(pts))
    shift = math.floor((poly.bounds[0] + 180) / 360) if not poly.is_empty else 0
    pieces = []
    for k in range(shift - 1, shift + 3):  # bring every 360° slice into −180..180
        part = poly.intersection(box(-180 + 360 * k, -90, 180 + 360 * k, 90))
        if not part.is_empty:
            pieces.append(_translate(part, -360 * k))
    return unary_union(pieces) if pieces else Polygon()


def footprint_on(ring_x: Any, ring_y: Any, crs: CRS, grid_ring: tuple[Any, Any],
                 grid_crs: CRS) -> BaseGeometry | None:
    """The footprint ring (in ``crs``) in ``grid_crs``, clipped to the surroundings of the
    grid whose footprint ring is ``grid_ring``; None when either cannot reach longitude /
    latitude (an engineering CRS): the caller then projects directly."""
    from shapely.geometry import MultiPolygon, Polygon
    from shapely.ops import unary_union

    src = lonlat_footprint(ring_x, ring_y, crs)
    near = lonlat_footprint(*grid_ring, grid_crs)
    if src is None or near is None:
        return None
    x0, y0, x1, y1 = near.bounds if not near.is_empty else (0, 0, 0, 0)
    pad = max(MARGIN * max(x1 - x0, y1 - y0), MIN_MARGIN)
    common = src.intersection(near.buffer(pad, join_style=2))
    if common.is_empty:
        return Polygon()
    polys = list(common.geoms) if hasattr(common, "geoms") else [common]
    out = []
    for p in polys:
        if not isinstance(p, Polygon) or p.area == 0:
            continue
        rings = [_project(r, grid_crs) for r in [p.exterior, *p.interiors]]
        if rings[0] is None:
            continue
        out.append(_valid(Polygon(rings[0], [r for r in rings[1:] if r is not None])))
    if not out:
        return Polygon()
    result = unary_union(out)
    if grid_crs.is_geographic:  # the grid may count longitudes 0..360 or beyond 180
        result = unary_union([_translate(result, 360 * k) for k in (-1, 0, 1)])
    return result if isinstance(result, (Polygon, MultiPolygon)) else _valid(result)


def _project(ring: Any, crs: CRS) -> list[tuple[float, float]] | None:
    import shapely

    n = max(1, int(ring.length / SEGMENT_DEG))
    step = ring.length / min(n, MAX_POINTS)
    dense = shapely.segmentize(ring, step)
    xs, ys = dense.coords.xy
    px, py = transform_xy(LONLAT, crs, list(xs), list(ys))
    ok = np.isfinite(px) & np.isfinite(py)
    return list(zip(px[ok], py[ok])) if ok.sum() >= 3 else None


def _translate(geom: BaseGeometry, dx: float) -> BaseGeometry:
    from shapely import affinity

    return affinity.translate(geom, xoff=dx) if dx else geom


def _valid(geom: BaseGeometry) -> BaseGeometry:
    import shapely

    return geom if geom.is_valid else shapely.make_valid(geom).buffer(0)


def check_georeferencing(path: Any, transform: Affine, width: int, height: int,
                         crs: CRS | None) -> None:
    """Raise the one-line InputError of ``grid_problem`` for the file at ``path``."""
    why = grid_problem(transform, width, height, crs)
    if why is not None:
        raise InputError(why, path=path)


__all__ = ["check_georeferencing", "crs_problem", "footprint_on", "grid_problem",
           "lonlat_footprint", "transform_xy"]
