"""Class-map rows → vector features: one GeoPackage layer of polygons per mapped class.

The engine hands the finished rows of the class map to the writers in order (api._write for a
local run, parts.copy_into for a chunked or Dask run, which streams the mosaicked class map at
publish time). :class:`Vectoriser` regroups them into fixed bands of :data:`BAND` rows, so the
features depend on the class map only, never on how its rows arrived: a local run and a
``--workers`` run of the same class map give the same features by construction.

Streaming merge. Each band is polygonised (``rasterio.features.shapes``, 4-connectivity, in
pixel coordinates, so every vertex is an exact integer). A polygon with pixels in the band's
last row is kept *open*; in the next band, every run of equal class across the seam (the
previous band's last row against this band's first row) links the open feature above it with
the new polygon below it. A feature's pieces are kept until no piece reaches the open edge;
then the feature is *finished*: its pieces are unioned once (exact: integer coordinates,
shared edges), its holes smaller than the minimum mapping unit are filled, it is dropped if it
is smaller than that unit, simplified, measured and written. Road networks join up across a
whole raster, so road features are cut at every ``ROAD_SHEET``-th row (exactly: the two pieces
share the cut edge); buildings are never cut. Memory therefore follows the raster width (one
band, the open features of at most one sheet), not the height.

Simplification: GEOS coverage simplification (Visvalingam-Whyatt, ``SIMPLIFY_PX`` ≈ 1 px) of
all features finished in the same band together, so an edge two of them share stays one edge
(no gaps, no overlaps). A feature finished in another band (a road still open beside a
building) is simplified on its own; its side of the shared edge may then differ by up to the
tolerance. Everything is valid polygons; squares stay squares.

Roads are written as polygons, not centre lines: skeletonising needs scikit-image (not a
dependency) and a skeleton of a blocky class map spurs at every corner; the polygon is exact.
Each road feature carries ``length_m`` and ``width_m`` from its area A and perimeter P as a
ribbon (L + w = P/2, L·w = A). The class map holds the winning class only (the blend keeps
no probabilities), so no mean class probability is written.

The GeoPackage is written with Python's sqlite3 (GeoPackage 1.2 tables, standard geometry
blobs), not osgeo.ogr: the Debian GDAL bindings and rasterio's own GDAL crash when loaded into
one process, and fiona/pyogrio are not dependencies. It goes to a temporary file beside the
target and is published with the other outputs (writers.OutputSet): all or none.
"""

from __future__ import annotations

import math
import os
import sqlite3
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS

from .classes import SEGMENTATION_NODATA
from .errors import OutputError
from .options import DEFAULT_MIN_AREA
from .publish import fsync_file, temp_path

BAND = 256  # rows polygonised at once: the seams are fixed, whatever the rows' arrival
SIMPLIFY_PX = 1.0  # coverage-simplification tolerance, in pixels
SKIP_CLASSES = ("background",)  # classes that are not mapped as features
# Road networks join up across a whole raster: a road feature is cut where it crosses a row
# that is a multiple of ROAD_SHEET (exactly: the pieces share the edge), so no open feature
# holds more than one sheet of rows and memory stays bounded by the width. Buildings are whole.
ROAD_SHEET = 1024
AHEAD = 2  # row hand-overs queued for the vectorising thread (each one strip of rows)


@dataclass(frozen=True)
class MappedClass:
    """One class written as a layer: its code in the class map, name (the layer name), colour."""

    index: int
    name: str
    colour: tuple[int, int, int]

    @property
    def is_road(self) -> bool:
        return self.name == "road"


def mapped_classes(names: Sequence[str], colours: Sequence[Sequence[int]]
                   ) -> tuple[MappedClass, ...]:
    """The model's classes that become layers (all but background), in class-code order."""
    return tuple(MappedClass(i, n, tuple(int(v) for v in c[:3]))  # type: ignore[arg-type]
                 for i, (n, c) in enumerate(zip(names, colours)) if n not in SKIP_CLASSES)


@dataclass
class Feature:
    cls: MappedClass
    geometry: Any  # shapely Polygon in map coordinates
    area_m2: float  # of the classified pixels (holes below the minimum unit filled)
    length_m: float | None = None
    width_m: float | None = None


# ------------------------------------------------------------------------------ metres


def metre_scale(transform: Affine, crs: CRS | None) -> Callable[[float], tuple[float, float]]:
    """``y (pixel row) → (metres per pixel across, down)``. Projected CRS: the pixel size in
    the CRS's linear unit times its factor to metres. Geographic CRS: the WGS84 ellipsoid's
    metres per degree at that row's latitude (error < 0.1 % for a pixel). No CRS: the pixel
    size as metres (a bare grid has no other scale)."""
    sx = math.hypot(transform.a, transform.d)
    sy = math.hypot(transform.b, transform.e)
    if crs is not None and crs.is_geographic:
        def geographic(y: float) -> tuple[float, float]:
            lat = math.radians((transform * (0.5, y))[1])
            lat_m = 111132.92 - 559.82 * math.cos(2 * lat) + 1.175 * math.cos(4 * lat)
            lon_m = 111412.84 * math.cos(lat) - 93.5 * math.cos(3 * lat)
            return sx * lon_m, sy * lat_m
        return geographic
    factor = 1.0
    if crs is not None:
        with suppress(Exception):
            factor = float(crs.linear_units_factor[1])
    return lambda _y: (sx * factor, sy * factor)


def ribbon(area: float, perimeter: float) -> tuple[float, float]:
    """(length, width) of a ribbon with this area and perimeter: L + w = P/2, L·w = A (exact
    for a rectangle; for a network, the total centre-line length and the mean width)."""
    if area <= 0 or perimeter <= 0:
        return 0.0, 0.0
    half = perimeter / 2
    width = (half - math.sqrt(max(half * half - 4 * area, 0.0))) / 2
    return (area / width if width > 0 else 0.0), width


# ------------------------------------------------------------------------------ the merge


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


class Vectoriser:
    """Streams class-map rows (in order, full width) into finished features (see the module
    docstring); ``emit`` receives each band's finished features, ``finish`` flushes the rest."""

    def __init__(self, height: int, width: int, transform: Affine, crs: CRS | None,
                 classes: Sequence[MappedClass], emit: Callable[[list[Feature]], None],
                 min_area: float = DEFAULT_MIN_AREA, band: int = BAND,
                 tolerance: float = SIMPLIFY_PX, sheet: int = ROAD_SHEET) -> None:
        self.height, self.width = height, width
        self.transform, self.crs = transform, crs
        self.classes = {c.index: c for c in classes}
        self.wanted = np.zeros(256, bool)
        self.wanted[list(self.classes)] = True
        self.wanted[SEGMENTATION_NODATA] = False
        self.emit, self.min_area, self.band, self.tolerance = emit, min_area, band, tolerance
        self.sheet = sheet
        self.scale = metre_scale(transform, crs)
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._y = 0  # raster row of the next band
        # Open features: (class, pieces), unioned only once finished (a road network that
        # spans the raster would otherwise be re-unioned at every band); the pieces of the last
        # band that reach the seam, with their feature's index.
        self._groups: list[tuple[int, list[Any]]] = []
        self._edge: list[tuple[int, Any]] = []
        self._last_row: np.ndarray | None = None  # the previous band's last row
        self.peak_open = 0  # the most vertices held in open features after a band

    def open_vertices(self) -> int:
        """Vertices held in open features now: what the streaming keeps besides one band."""
        pieces = [p for _, ps in self._groups for p in ps]
        return int(shapely.get_num_coordinates(np.array(pieces, dtype=object)).sum()) \
            if pieces else 0

    def append(self, rows: np.ndarray) -> None:
        """Take the next rows of the class map ((1, h, W) or (h, W) uint8)."""
        rows = rows.reshape(-1, self.width) if rows.ndim == 3 else rows
        self._pending.append(rows)
        self._pending_rows += rows.shape[0]
        while self._pending_rows >= self.band:
            self._band(self._take(self.band))

    def finish(self) -> None:
        """Polygonise the last rows and emit every feature still open."""
        if self._pending_rows:
            self._band(self._take(self._pending_rows))
        if self._y != self.height:
            raise ValueError(f"class map rows: got {self._y}, expected {self.height}")
        self._close([_union(p) for _, p in self._groups], [c for c, _ in self._groups])
        self._groups, self._edge = [], []

    def _take(self, n: int) -> np.ndarray:
        rows = np.concatenate(self._pending, axis=0) if len(self._pending) > 1 \
            else self._pending[0]
        out, rest = rows[:n], rows[n:]
        self._pending = [rest] if rest.shape[0] else []
        self._pending_rows = rest.shape[0]
        return np.ascontiguousarray(out)

    def _band(self, band: np.ndarray) -> None:
        from rasterio.features import shapes

        y0, h = self._y, band.shape[0]
        y1 = y0 + h
        mask = self.wanted[band]
        rings: list[Any] = []  # every ring's vertices, in order
        ring_ends: list[int] = []  # vertex offsets
        poly_ends: list[int] = []  # ring offsets
        codes: list[int] = []
        n = 0
        if mask.any():
            for g, v in shapes(band, mask=mask, connectivity=4,
                               transform=Affine(1, 0, 0, 0, 1, y0)):
                for ring in g["coordinates"]:
                    rings.extend(ring)
                    n += len(ring)
                    ring_ends.append(n)
                poly_ends.append(len(ring_ends))
                codes.append(int(v))
        new = _polygons(rings, ring_ends, poly_ends)
        at_seam = (shapely.bounds(new)[:, 3] == y1) if len(new) and y1 < self.height \
            else np.zeros(len(new), bool)
        n_old = len(self._groups)
        cut = y1 % self.sheet == 0  # a road sheet line: open roads end here
        groups: list[tuple[int, list[Any]]] = []
        edge: list[tuple[int, Any]] = []
        finished: list[tuple[int, Any]] = []
        for members in self._link(band[0], new, y0):
            olds = [m for m in members if m < n_old]
            news = [m - n_old for m in members if m >= n_old]
            code = self._groups[olds[0]][0] if olds else codes[news[0]]
            pieces = [p for m in olds for p in self._groups[m][1]] + [new[j] for j in news]
            if any(at_seam[j] for j in news) and not (cut and self.classes[code].is_road):
                edge += [(len(groups), new[j]) for j in news if at_seam[j]]
                groups.append((code, pieces))
            else:
                finished.append((code, _union(pieces)))
        self._groups, self._edge = groups, edge
        self.peak_open = max(self.peak_open, self.open_vertices())
        self._last_row = band[-1].copy()
        self._y = y1
        self._close([g for _, g in finished], [c for c, _ in finished])

    def _link(self, first: np.ndarray, new: np.ndarray, y0: int) -> list[list[int]]:
        """Groups of indices (open features 0..n_old-1, then the band's new polygons) joined
        across the seam at row ``y0``: one sample point per run of equal mapped class, in the
        previous band's seam piece above and the new polygon below."""
        n_old = len(self._groups)
        uf = _UnionFind(n_old + len(new))
        last = self._last_row
        if self._edge and len(new) and last is not None:
            same = (last == first) & self.wanted[first]
            x = np.flatnonzero(same)
            if x.size:
                starts = x[np.r_[True, (np.diff(x) != 1) | (first[x[1:]] != first[x[:-1]])]]
                px = starts + 0.5
                up = shapely.points(px, np.full(px.shape, y0 - 0.5))
                down = shapely.points(px, np.full(px.shape, y0 + 0.5))
                above = _owner(shapely.STRtree([g for _, g in self._edge]), up)
                below = _owner(shapely.STRtree(new), down)
                for a, b in zip(above, below):
                    if a >= 0 and b >= 0:
                        uf.join(self._edge[int(a)][0], n_old + int(b))
        groups: dict[int, list[int]] = {}
        for i in range(n_old + len(new)):
            groups.setdefault(uf.find(i), []).append(i)
        return [groups[k] for k in sorted(groups)]

    def _close(self, geoms: list[Any], codes: list[int]) -> None:
        """Finished pixel polygons → features: small holes filled, specks dropped, simplified
        together, measured in metres, moved to map coordinates, emitted."""
        if not geoms:
            return
        polys = shapely.get_parts(np.array(geoms, dtype=object))  # a union is one polygon
        codes_a = np.repeat(np.array(codes), shapely.get_num_geometries(
            np.array(geoms, dtype=object)))
        rows = shapely.bounds(polys)[:, [1, 3]].mean(axis=1)  # each one's middle row
        scale = np.array([self.scale(float(y)) for y in rows]).reshape(-1, 2)
        px_area = scale[:, 0] * scale[:, 1]
        holed = np.flatnonzero(shapely.get_num_interior_rings(polys) > 0)
        for i in holed:
            polys[i] = _fill_holes(polys[i], self.min_area / px_area[i])
        areas = shapely.area(polys) * px_area  # the classified pixels' area, holes excluded
        keep = areas >= self.min_area
        if not keep.any():
            return
        polys, codes_a, areas, scale = polys[keep], codes_a[keep], areas[keep], scale[keep]
        simple = _simplify(polys, self.tolerance)
        # normalised: the same vertex order whichever band finished the feature
        mapped = shapely.normalize(self._to_map(simple))
        out: list[Feature] = []
        for g, m, c, area, (mx, my) in zip(simple, mapped, codes_a, areas, scale):
            if g is None or g.is_empty:
                continue
            cls = self.classes[int(c)]
            length = width = None
            if cls.is_road:  # from the simplified outline: a staircase has a longer perimeter
                metric = shapely.transform(g, lambda xy, mx=mx, my=my: xy * (mx, my))
                length, width = ribbon(float(metric.area), float(metric.length))
            out.append(Feature(cls, m, float(area), length, width))
        if out:
            self.emit(out)

    def _to_map(self, g: Any) -> Any:
        t = self.transform
        return shapely.transform(g, lambda xy: np.column_stack((
            t.a * xy[:, 0] + t.b * xy[:, 1] + t.c, t.d * xy[:, 0] + t.e * xy[:, 1] + t.f)))


def _union(pieces: list[Any]) -> Any:
    """One feature from its band pieces (they share edges only: the union is exact)."""
    return pieces[0] if len(pieces) == 1 else shapely.union_all(pieces)


def _polygons(coords: list[Any], ring_ends: list[int], poly_ends: list[int]) -> np.ndarray:
    """Polygons from flat vertices and the offsets of rings and polygons, in one call."""
    if not poly_ends:
        return np.array([], dtype=object)
    from shapely import GeometryType

    xy = np.array(coords, dtype=np.float64).reshape(-1, 2)
    return shapely.from_ragged_array(GeometryType.POLYGON, xy, (
        np.array([0] + ring_ends, np.int64), np.array([0] + poly_ends, np.int64)))


def _simplify(polys: np.ndarray, tolerance: float) -> np.ndarray:
    """Coverage simplification (shapely >= 2.1 with GEOS >= 3.12); on older builds each
    polygon on its own (Douglas-Peucker, topology kept): shared edges may then part."""
    try:
        return shapely.coverage_simplify(polys, tolerance)
    except (AttributeError, shapely.errors.UnsupportedGEOSVersionError):
        return shapely.simplify(polys, tolerance, preserve_topology=True)


def _owner(tree: Any, points: Any) -> np.ndarray:
    """For each point, the index of the tree polygon holding it (-1: none)."""
    owner = np.full(len(points), -1, np.int64)
    if len(points):
        pts, polys = tree.query(points, predicate="intersects")
        owner[pts] = polys
    return owner


def _fill_holes(poly: Any, min_px: float) -> Any:
    """``poly`` without its holes smaller than ``min_px`` pixels (specks of another class)."""
    holes = list(poly.interiors)
    if not holes:
        return poly
    keep = [h for h in holes if shapely.Polygon(h).area >= min_px]
    return poly if len(keep) == len(holes) else shapely.Polygon(poly.exterior, keep)


# ------------------------------------------------------------------------------ GeoPackage

_GPKG_APPLICATION_ID = 0x47504B47  # "GPKG"
_GPKG_VERSION = 10200
_WGS84_WKT = CRS.from_epsg(4326).to_wkt()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class GeoPackage:
    """A GeoPackage (1.2) of polygon layers written with sqlite3 to ``path``: the spatial
    reference, one feature table per class (fid, geom, class, class_id, area_m2; roads also
    length_m, width_m), each layer's extent in gpkg_contents."""

    def __init__(self, path: Path, crs: CRS | None, classes: Sequence[MappedClass]) -> None:
        self.path = path
        # written from the vectorising thread, created and closed by the run's thread
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.classes = classes
        self.extent: dict[str, list[float]] = {}
        self.count = 0
        db = self.db
        db.execute(f"PRAGMA application_id = {_GPKG_APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {_GPKG_VERSION}")
        db.execute("PRAGMA synchronous = OFF")  # a temp file: synced once when finished
        db.execute("PRAGMA journal_mode = MEMORY")
        db.execute("BEGIN")
        db.execute("CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL, srs_id INTEGER "
                   "PRIMARY KEY, organization TEXT NOT NULL, organization_coordsys_id INTEGER "
                   "NOT NULL, definition TEXT NOT NULL, description TEXT)")
        db.executemany("INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)", [
            ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", None),
            ("Undefined geographic SRS", 0, "NONE", 0, "undefined", None),
            ("WGS 84 geodetic", 4326, "EPSG", 4326, _WGS84_WKT, None)])
        self.srs_id = self._srs(crs)
        db.execute("CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY, data_type "
                   "TEXT NOT NULL, identifier TEXT UNIQUE, description TEXT DEFAULT '', "
                   "last_change DATETIME NOT NULL DEFAULT "
                   "(strftime('%Y-%m-%dT%H:%M:%fZ','now')), min_x DOUBLE, min_y DOUBLE, "
                   "max_x DOUBLE, max_y DOUBLE, srs_id INTEGER REFERENCES "
                   "gpkg_spatial_ref_sys(srs_id))")
        db.execute("CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL, column_name "
                   "TEXT NOT NULL, geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL, "
                   "z TINYINT NOT NULL, m TINYINT NOT NULL, PRIMARY KEY (table_name, "
                   "column_name), FOREIGN KEY (table_name) REFERENCES "
                   "gpkg_contents(table_name), FOREIGN KEY (srs_id) REFERENCES "
                   "gpkg_spatial_ref_sys(srs_id))")
        for c in classes:
            extra = ", length_m DOUBLE, width_m DOUBLE" if c.is_road else ""
            db.execute(f"CREATE TABLE {_ident(c.name)} (fid INTEGER PRIMARY KEY AUTOINCREMENT, "
                       f"geom POLYGON, class TEXT NOT NULL, class_id INTEGER NOT NULL, "
                       f"area_m2 DOUBLE NOT NULL{extra})")
            db.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier, "
                       "description, srs_id) VALUES (?, 'features', ?, ?, ?)",
                       (c.name, c.name, f"class {c.index} of the class map, colour "
                        f"#{c.colour[0]:02x}{c.colour[1]:02x}{c.colour[2]:02x}",
                        self.srs_id))
            db.execute("INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', 'POLYGON', ?, 0, 0)",
                       (c.name, self.srs_id))
        db.execute("COMMIT")

    def _srs(self, crs: CRS | None) -> int:
        if crs is None:
            return -1
        epsg = crs.to_epsg()
        if epsg == 4326:
            return 4326
        srs_id, org, code = (epsg, "EPSG", epsg) if epsg else (100000, "NONE", 100000)
        self.db.execute("INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)",
                        (crs.to_string() or "custom", srs_id, org, code, crs.to_wkt(), None))
        return srs_id

    def write(self, features: Sequence[Feature]) -> None:
        db = self.db
        db.execute("BEGIN")
        for f in features:
            polys = list(getattr(f.geometry, "geoms", [f.geometry]))
            for g in polys:
                name = f.cls.name
                minx, miny, maxx, maxy = g.bounds
                ext = self.extent.setdefault(name, [minx, miny, maxx, maxy])
                ext[:] = [min(ext[0], minx), min(ext[1], miny), max(ext[2], maxx),
                          max(ext[3], maxy)]
                blob = (b"GP\x00\x03" + struct.pack("<i4d", self.srs_id, minx, maxx, miny, maxy)
                        + shapely.to_wkb(g, byte_order=1, output_dimension=2))
                area = f.area_m2 * (g.area / f.geometry.area) if len(polys) > 1 else f.area_m2
                values: list[Any] = [blob, name, f.cls.index, area]
                cols = "geom, class, class_id, area_m2"
                if f.cls.is_road:
                    values += [f.length_m, f.width_m]
                    cols += ", length_m, width_m"
                db.execute(f"INSERT INTO {_ident(name)} ({cols}) VALUES "
                           f"({', '.join('?' * len(values))})", values)
                self.count += 1
        db.execute("COMMIT")

    def close(self) -> None:
        db = self.db
        db.execute("BEGIN")
        for name, (minx, miny, maxx, maxy) in self.extent.items():
            db.execute("UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ? "
                       "WHERE table_name = ?", (minx, miny, maxx, maxy, name))
        db.execute("COMMIT")
        db.close()


def read_features(path: str | os.PathLike, layer: str) -> list[dict[str, Any]]:
    """The features of one layer as dicts (``geometry``: shapely, then the attributes), in fid
    order: for checks and tests, with sqlite3 alone."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cur = db.execute(f"SELECT * FROM {_ident(layer)} ORDER BY fid")
        names = [d[0] for d in cur.description]
        out = []
        for row in cur:
            rec = dict(zip(names, row))
            blob = rec.pop("geom")
            flags = blob[3]
            env = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}[(flags >> 1) & 7]
            rec["geometry"] = shapely.from_wkb(bytes(blob[8 + env:]))
            out.append(rec)
        return out
    finally:
        db.close()


# ------------------------------------------------------------------------------ the writer


class VectorWriter:
    """The vectors output of one run, published by writers.OutputSet like the GeoTIFFs: rows go
    in by ``append`` (the class map's), ``finish`` completes and checks the temp GeoPackage,
    publishing moves it onto the target, ``abort`` removes it."""

    def __init__(self, target: str | os.PathLike, height: int, width: int, transform: Affine,
                 crs: CRS | None, class_names: Sequence[str],
                 class_colours: Sequence[Sequence[int]],
                 min_area: float = DEFAULT_MIN_AREA) -> None:
        self.target = Path(target)
        self.tmp = temp_path(self.target, "tmp", suffix=".gpkg")
        self.classes = mapped_classes(class_names, class_colours)
        self.siblings: list[Any] = [self]
        self.verify_full = False
        self.gpkg: GeoPackage | None = None
        try:
            self.gpkg = self._guard(lambda: GeoPackage(self.tmp, crs, self.classes),
                                    "cannot be created")
        except BaseException:
            self._remove()
            raise
        self.vectoriser = Vectoriser(height, width, transform, crs, self.classes, self._emit,
                                     min_area=min_area)
        self._pool: ThreadPoolExecutor | None = None
        self._queue: list[Future[None]] = []

    @property
    def staged(self) -> Path:
        return self.tmp

    @property
    def raw_bytes(self) -> int:
        return 0  # small next to the rasters; not part of their space estimate

    def temp_files(self) -> list[Path]:
        return [p for p in self._temps() if p.exists()]

    def _temps(self) -> list[Path]:
        return [self.tmp] + [Path(f"{self.tmp}{s}") for s in ("-journal", "-wal", "-shm")]

    def _guard(self, step: Callable[[], Any], what: str = "writing failed") -> Any:
        try:
            return step()
        except (sqlite3.Error, OSError) as exc:
            text = str(exc)
            cause = "no space left on device" if "full" in text.lower() else text
            raise OutputError(f"{what}: {cause}", path=self.target) from None

    def _emit(self, features: list[Feature]) -> None:
        gpkg = self.gpkg
        assert gpkg is not None
        self._guard(lambda: gpkg.write(features))

    def append(self, rows: np.ndarray) -> None:
        """Queue the rows for the vectorising thread: polygonising and simplifying overlap
        the engine's work (the networks, the GeoTIFFs' compression), which free the GIL. At
        most ``AHEAD`` hand-overs wait; an error of the thread is raised here, or by finish."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="wsfusion-vectors")
        self._queue.append(self._pool.submit(self.vectoriser.append, rows))
        while len(self._queue) > AHEAD or (self._queue and self._queue[0].done()):
            self._queue.pop(0).result()

    def _drain(self) -> None:
        while self._queue:
            self._queue.pop(0).result()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def finish(self) -> None:
        """Flush the open features, close and sync the temp file and check it reads back."""
        self._drain()
        self.vectoriser.finish()
        gpkg = self.gpkg
        assert gpkg is not None
        self._guard(gpkg.close)
        self.gpkg = None
        self._guard(lambda: fsync_file(self.tmp))
        problem = self._check(gpkg.count)
        if problem is not None:
            raise OutputError(f"the written file is damaged ({problem})", path=self.target)

    def _check(self, written: int) -> str | None:
        try:
            db = sqlite3.connect(f"file:{self.tmp}?mode=ro", uri=True)
            try:
                if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    return "database check failed"
                n = sum(db.execute(f"SELECT COUNT(*) FROM {_ident(c.name)}").fetchone()[0]
                        for c in self.classes)
            finally:
                db.close()
        except sqlite3.Error as exc:
            return str(exc)
        return None if n == written else f"{n} features read back, {written} written"

    def abort(self) -> None:
        if self._pool is not None:  # the thread's current band finishes first (~1 s at most)
            for f in self._queue:
                f.cancel()
            self._pool.shutdown(wait=True)
            self._pool, self._queue = None, []
        if self.gpkg is not None:
            with suppress(Exception):
                self.gpkg.db.close()
            self.gpkg = None
        self._remove()

    def _remove(self) -> None:
        for p in self._temps():
            with suppress(FileNotFoundError):
                p.unlink()


class RowsTo:
    """Hands the class map's rows to several sinks (the class-map GeoTIFF, the vectors)."""

    def __init__(self, *sinks: Any) -> None:
        self.sinks = [s for s in sinks if s is not None]

    def append(self, rows: np.ndarray) -> None:
        for s in self.sinks:
            s.append(rows)


__all__ = ["BAND", "DEFAULT_MIN_AREA", "ROAD_SHEET", "Feature", "GeoPackage", "MappedClass",
           "RowsTo", "VectorWriter", "Vectoriser", "mapped_classes", "read_features", "ribbon"]
