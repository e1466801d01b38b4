"""Vector outputs (vectors.py): exact features from hand-made class maps, seams merged exactly,
specks dropped, published with the other outputs or not at all, the same with Dask workers,
and the CLI flag end to end. Real GeoPackages throughout, read back with sqlite3 and checked
with GDAL's ogrinfo where it is installed."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest
import shapely
from affine import Affine
from helpers import tmpfs
from rasterio.crs import CRS
from rasterio.features import shapes

from wsfusion_core.api import fuse
from wsfusion_core.classes import CLASS_COLOURS, CLASS_NAMES, SEGMENTATION_NODATA
from wsfusion_core.errors import Cancelled, OutputError
from wsfusion_core.vectors import (
    BAND,
    ROAD_SHEET,
    Vectoriser,
    VectorWriter,
    mapped_classes,
    read_features,
    ribbon,
)
from wsfusion_core.writers import OutputSet

CLASSES = mapped_classes(CLASS_NAMES, CLASS_COLOURS)
SAMPLE = Path(__file__).resolve().parents[2] / "wsfusion_core" / "data" / "sample" / "banepa"
ROAD, BUILDING = CLASS_NAMES.index("road"), CLASS_NAMES.index("building")
# 2 m pixels, UTM: a pixel is 4 m²
TRANSFORM = Affine(2, 0, 300000, 0, -2, 3000000)
CRS_UTM = CRS.from_epsg(32645)


def write_map(folder: Path, classes: np.ndarray, name: str = "v.gpkg", min_area: float = 5.0,
              chunk_rows: int = 7) -> Path:
    """``classes`` (H, W) through a VectorWriter in an OutputSet, fed ``chunk_rows`` at a time
    (as the engine hands rows over), published to ``folder/name``."""
    h, w = classes.shape
    target = folder / name
    with OutputSet() as outs:
        vec = outs.add(VectorWriter(target, h, w, TRANSFORM, CRS_UTM, CLASS_NAMES,
                                    CLASS_COLOURS, min_area))
        for y in range(0, h, chunk_rows):
            vec.append(classes[None, y:y + chunk_rows])
        outs.commit()
    return target


def pixel_box(x0: int, y0: int, x1: int, y1: int):
    """The map-coordinate polygon of pixel columns x0..x1 and rows y0..y1 (ends excluded)."""
    t = TRANSFORM
    return shapely.transform(shapely.box(x0, y0, x1, y1), lambda xy: np.column_stack((
        t.a * xy[:, 0] + t.b * xy[:, 1] + t.c, t.d * xy[:, 0] + t.e * xy[:, 1] + t.f)))


def ogr_ok(path: Path) -> None:
    """GDAL's own reader opens the GeoPackage (a separate process: the system GDAL)."""
    if shutil.which("ogrinfo") is None:
        return
    r = subprocess.run(["ogrinfo", "-ro", "-so", "-al", str(path)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "ERROR" not in r.stderr, r.stderr
    assert "Layer name: building" in r.stdout and "Layer name: road" in r.stdout


# ----------------------------------------------------------------------------- exact features


def test_hand_made_map_gives_exact_features_and_attributes(tmp_path):
    m = np.zeros((60, 50), np.uint8)
    m[4:14, 5:15] = BUILDING  # 10 x 10 px = 400 m²
    m[20:30, 30:45] = BUILDING  # 15 x 10 px = 600 m², with a 2 x 2 px hole (16 m²) kept
    m[24:26, 36:38] = 0
    m[2:58, 20:23] = ROAD  # a straight road 3 px (6 m) wide, 56 px (112 m) long
    m[40, 5] = BUILDING  # a one-pixel speck (4 m² < 5 m²): dropped
    m[50:52, 40:42] = SEGMENTATION_NODATA  # nodata is never a feature
    path = write_map(tmp_path, m)
    ogr_ok(path)

    buildings = read_features(path, "building")
    assert len(buildings) == 2
    first, second = sorted(buildings, key=lambda f: -f["geometry"].bounds[3])
    assert first["geometry"].equals(pixel_box(5, 4, 15, 14))
    assert len(first["geometry"].exterior.coords) == 5  # a square stays a square
    assert first["area_m2"] == pytest.approx(400.0)
    expected = pixel_box(30, 20, 45, 30).difference(pixel_box(36, 24, 38, 26))
    assert second["geometry"].equals(expected)
    assert second["area_m2"] == pytest.approx(600.0 - 16.0)
    assert {f["class"] for f in buildings} == {"building"}
    assert {f["class_id"] for f in buildings} == {BUILDING}

    (road,) = read_features(path, "road")
    assert road["geometry"].equals(pixel_box(20, 2, 23, 58))
    assert road["area_m2"] == pytest.approx(6 * 112)
    assert road["length_m"] == pytest.approx(112.0)
    assert road["width_m"] == pytest.approx(6.0)
    assert road["class"] == "road" and road["class_id"] == ROAD

    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
        srs = db.execute("SELECT srs_id FROM gpkg_geometry_columns").fetchall()
        assert srs == [(32645,), (32645,)]
        ext = db.execute("SELECT min_x, min_y, max_x, max_y FROM gpkg_contents "
                         "WHERE table_name = 'road'").fetchone()
        assert ext == pytest.approx(pixel_box(20, 2, 23, 58).bounds)
    finally:
        db.close()


def test_ribbon_is_exact_for_rectangles():
    assert ribbon(6 * 112, 2 * (6 + 112)) == pytest.approx((112.0, 6.0))
    assert ribbon(0, 0) == (0.0, 0.0)


def test_staircase_edges_are_simplified_to_about_a_pixel(tmp_path):
    """A diagonal band of pixels becomes a few straight edges within ~1 px of the pixels."""
    m = np.zeros((80, 80), np.uint8)
    for y in range(80):
        m[y, max(0, y - 6):y + 6] = BUILDING
    path = write_map(tmp_path, m, min_area=0)
    (f,) = read_features(path, "building")
    exact = shapely.unary_union([pixel_box(x0, y, x0 + 1, y + 1)
                                 for y, x0 in zip(*np.nonzero(m == BUILDING))])
    assert len(f["geometry"].exterior.coords) < 20  # the pixel outline has ~320 vertices
    assert f["geometry"].is_valid
    assert f["geometry"].hausdorff_distance(exact) <= 2 * 2.0  # within 1-2 px of 2 m
    assert abs(f["geometry"].area - exact.area) / exact.area < 0.02


# ----------------------------------------------------------------------------- seams


def blobs(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A class map of random overlapping rectangles of both classes (long shapes, U shapes
    and holes arise) with some nodata."""
    rng = np.random.default_rng(seed)
    m = np.zeros(shape, np.uint8)
    h, w = shape
    for _ in range(60):
        y, x = rng.integers(0, h), rng.integers(0, w)
        m[y:y + rng.integers(1, h // 2), x:x + rng.integers(1, 12)] = rng.choice([ROAD, BUILDING])
    m[rng.random(shape) < 0.002] = SEGMENTATION_NODATA
    return m


def whole_raster_polygons(m: np.ndarray, code: int) -> list:
    return [shapely.geometry.shape(g) for g, v in shapes(m, mask=m == code, connectivity=4)
            if v == code]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shapes_crossing_band_seams_come_out_whole(seed):
    """Bands of 5 rows (every shape crosses many seams), rows arriving 3 at a time: the
    features are exactly the whole-raster polygons: no seam, no duplicate, no loss."""
    m = blobs((97, 61), seed)
    got: list = []
    v = Vectoriser(97, 61, Affine.identity(), None, CLASSES, got.extend, min_area=0, band=5,
                   tolerance=0.0)
    for y in range(0, 97, 3):
        v.append(m[None, y:y + 3])
    v.finish()
    for code in (ROAD, BUILDING):
        want = whole_raster_polygons(m, code)
        have = [f.geometry for f in got if f.cls.index == code]
        assert len(have) == len(want)
        key = lambda g: (round(g.area, 6), g.bounds)  # noqa: E731
        for a, b in zip(sorted(have, key=key), sorted(want, key=key)):
            assert a.equals(b)
        assert sum(g.area for g in have) == np.count_nonzero(m == code)


def test_one_shape_across_many_seams_is_one_feature(tmp_path):
    m = np.zeros((1200, 40), np.uint8)
    m[3:1020, 10:14] = ROAD  # crosses three 256-row band seams (not the 1024 sheet line)
    m[500:530, 20:30] = BUILDING  # straddles the first seam
    m[1000:1100, 0:2] = BUILDING
    m[1020:1022, 0:9] = BUILDING  # an L whose foot joins across the seam at 1024
    path = write_map(tmp_path, m, chunk_rows=300)
    (road,) = read_features(path, "road")
    assert road["geometry"].equals(pixel_box(10, 3, 14, 1020))
    assert len(road["geometry"].exterior.coords) == 5  # the seam vertices are gone
    buildings = read_features(path, "building")
    assert len(buildings) == 2
    areas = sorted(f["area_m2"] for f in buildings)
    assert areas == pytest.approx([4 * (100 * 2 + 2 * 7), 4 * 300])


def test_roads_are_cut_exactly_at_sheet_lines_and_buildings_never():
    """A road network is cut where it crosses a sheet row (memory bound); the two pieces
    share the cut edge exactly. A building across the same line stays one feature."""
    m = np.zeros((40, 30), np.uint8)
    m[2:38, 3:6] = ROAD
    m[15:25, 10:20] = BUILDING
    got: list = []
    v = Vectoriser(40, 30, Affine.identity(), None, CLASSES, got.extend, min_area=0, band=5,
                   sheet=20)
    v.append(m[None])
    v.finish()
    roads = sorted((f.geometry for f in got if f.cls.index == ROAD), key=lambda g: g.bounds)
    assert [r.bounds for r in roads] == [(3, 2, 6, 20), (3, 20, 6, 38)]
    assert roads[0].intersection(roads[1]).equals(shapely.LineString([(3, 20), (6, 20)]))
    (building,) = [f.geometry for f in got if f.cls.index == BUILDING]
    assert building.equals(shapely.box(10, 15, 20, 25))


def grid_town(y0: int, h: int, width: int) -> np.ndarray:
    """Rows of a town: a road grid with a diagonal road family (one network across the whole
    raster) and a 6 x 6 px building in every 13 px cell off the roads."""
    y, x = np.arange(y0, y0 + h)[:, None], np.arange(width)[None, :]
    m = np.where((y % 13 < 6) & (x % 13 < 6), BUILDING, 0).astype(np.uint8)
    m[((y % 40) < 3) | ((x % 40) < 3) | (((x + y) % 97) < 3)] = ROAD
    return m


def test_memory_does_not_grow_with_height():
    """A raster 4x as tall holds no more: the vertices kept in open features (GEOS memory,
    exact) and the Python/numpy peak (tracemalloc) stay within 1.25x, although the road
    network spans the whole raster (it is cut at sheet lines). Bands and sheets scaled down
    8x (BAND 256 → 32, ROAD_SHEET 1024 → 128) to keep the test short; the rule is the same."""
    import tracemalloc

    band, sheet = BAND // 8, ROAD_SHEET // 8
    width = 300
    peaks, opened = [], []
    for height in (4 * sheet, 16 * sheet):
        v = Vectoriser(height, width, TRANSFORM, CRS_UTM, CLASSES, lambda f: None, band=band,
                       sheet=sheet)
        tracemalloc.start()
        for y in range(0, height, 300):
            v.append(grid_town(y, min(300, height - y), width))
        v.finish()
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        opened.append(v.peak_open)
    assert opened[0] > 0
    assert opened[1] <= 1.25 * opened[0], opened
    assert peaks[1] <= 1.25 * peaks[0], peaks


def test_features_do_not_depend_on_how_rows_arrive(tmp_path):
    m = blobs((700, 90), 7)
    a = write_map(tmp_path, m, "a.gpkg", chunk_rows=256)
    b = write_map(tmp_path, m, "b.gpkg", chunk_rows=300)
    for layer in ("road", "building"):
        fa, fb = read_features(a, layer), read_features(b, layer)
        assert len(fa) > 3
        assert [shapely.to_wkb(f.pop("geometry")) for f in fa] == \
            [shapely.to_wkb(f.pop("geometry")) for f in fb]
        assert fa == fb


# ----------------------------------------------------------------------------- specks


def test_specks_and_small_holes_below_the_minimum_unit_are_dropped(tmp_path):
    m = np.zeros((40, 40), np.uint8)
    m[2, 2] = BUILDING  # 4 m²
    m[5:7, 5] = BUILDING  # 8 m²
    m[10:30, 10:30] = BUILDING
    m[15, 15] = 0  # a 4 m² hole
    m[20:22, 20:22] = 0  # a 16 m² hole
    m[35, 30:33] = ROAD  # 12 m²
    for min_area, count, holes in ((5.0, 3, 1), (10.0, 2, 1), (20.0, 1, 0), (0.0, 4, 2)):
        path = write_map(tmp_path, m, f"m{min_area}.gpkg", min_area=min_area)
        buildings = read_features(path, "building")
        roads = read_features(path, "road")
        assert len(buildings) + len(roads) == count, min_area
        big = max(buildings, key=lambda f: f["area_m2"])
        assert len(big["geometry"].interiors) == holes, min_area
        assert all(f["area_m2"] >= min_area for f in buildings + roads)


# ----------------------------------------------------------------------------- fuse


@pytest.fixture
def scene():
    """Two inputs of the shipped Banepa sample (real town imagery): the shipped model maps
    dozens of buildings and roads there (random weights map one class everywhere)."""
    return [SAMPLE / "input_1.tif", SAMPLE / "input_2.tif"]


def all_features(path: Path) -> dict[str, list]:
    out = {}
    for layer in ("road", "building"):
        feats = read_features(path, layer)
        out[layer] = [(shapely.to_wkb(f.pop("geometry")), f) for f in feats]
    return out


def test_fuse_writes_vectors_matching_its_class_map(tmp_path, scene):
    import rasterio

    out, seg, vec = tmp_path / "f.tif", tmp_path / "s.tif", tmp_path / "v.gpkg"
    res = fuse(scene, out, segmentation=seg, vectors=vec, min_area=0, device="cpu")
    assert res.vectors == vec and res.class_names == CLASS_NAMES
    ogr_ok(vec)
    with rasterio.open(seg) as src:
        classes, transform = src.read(1), src.transform
    px = abs(transform.a * transform.e)
    for layer, code in (("road", ROAD), ("building", BUILDING)):
        feats = read_features(vec, layer)
        assert len(feats) == len(whole_raster_polygons(classes, code))
        # with no minimum unit, the features' areas are the class's pixels, exactly
        total = sum(f["area_m2"] for f in feats)
        assert total == pytest.approx(np.count_nonzero(classes == code) * px, rel=1e-9)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_vectors_alone_need_no_class_map_output(tmp_path, scene):
    vec = tmp_path / "v.gpkg"
    fuse(scene, tmp_path / "f.tif", vectors=vec, device="cpu")
    assert vec.is_file() and not (tmp_path / "s.tif").exists()
    ogr_ok(vec)


def test_workers_give_identical_features(tmp_path, scene, one_thread):
    pytest.importorskip("distributed")
    local, dask = tmp_path / "local.gpkg", tmp_path / "dask.gpkg"
    fuse(scene, tmp_path / "l.tif", vectors=local, min_area=0, device="cpu")
    res = fuse(scene, tmp_path / "d.tif", vectors=dask, min_area=0, device="cpu", cluster=2,
               chunk=256)
    assert res.chunks.workers == 2 and res.chunks.chunks == 4
    a, b = all_features(local), all_features(dask)
    assert sum(len(v) for v in a.values()) > 5
    assert a == b


def test_wrong_extension_and_negative_unit_are_refused_before_work(tmp_path, scene):
    with pytest.raises(OutputError, match="GeoPackage"):
        fuse(scene, tmp_path / "f.tif", vectors=tmp_path / "v.shp", method="mean")
    with pytest.raises(Exception, match="minimum area"):
        fuse(scene, tmp_path / "f.tif", vectors=tmp_path / "v.gpkg", min_area=-1)
    (tmp_path / "v.gpkg").write_text("old")
    with pytest.raises(OutputError, match="already exists"):
        fuse(scene, tmp_path / "f.tif", vectors=tmp_path / "v.gpkg", method="mean")
    assert not (tmp_path / "f.tif").exists()
    assert (tmp_path / "v.gpkg").read_text() == "old"


# ----------------------------------------------------------------------------- all or nothing


def test_disk_full_in_the_vectors_step_publishes_nothing(tmp_path, scene):
    """The GeoPackage goes to a tiny real tmpfs: the vectors step fails for lack of space and
    neither the fused image nor the class map (on a roomy disk) is published."""
    with tmpfs(tmp_path / "small", "size=64k") as small:
        out, seg, vec = tmp_path / "f.tif", tmp_path / "s.tif", small / "v.gpkg"
        with pytest.raises(OutputError) as err:
            fuse(scene, out, segmentation=seg, vectors=vec, min_area=0,
                 device="cpu")
        assert str(vec) in str(err.value) or "v.gpkg" in str(err.value)
        assert not out.exists() and not seg.exists() and not vec.exists()
        assert not list(small.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_vectors_target_appearing_during_the_run_publishes_nothing(tmp_path, scene):
    out, seg, vec = tmp_path / "f.tif", tmp_path / "s.tif", tmp_path / "v.gpkg"

    def progress(fraction: float) -> None:
        if fraction > 0 and not vec.exists():
            vec.write_text("someone else's")

    with pytest.raises(OutputError, match="appeared"):
        fuse(scene, out, segmentation=seg, vectors=vec, device="cpu",
             progress=progress)
    assert not out.exists() and not seg.exists()
    assert vec.read_text() == "someone else's"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cancel_leaves_no_vectors_and_no_temp_files(tmp_path, scene):
    vec = tmp_path / "v.gpkg"
    seen: list[float] = []
    with pytest.raises(Cancelled):
        fuse(scene, tmp_path / "f.tif", vectors=vec, device="cpu",
             progress=seen.append, cancel=lambda: bool(seen) and seen[-1] > 0)
    assert not vec.exists() and not (tmp_path / "f.tif").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- CLI


def test_cli_vectors_end_to_end(tmp_path, scene):
    from click.testing import CliRunner

    from wsfusion_core.cli import main

    vec = tmp_path / "v.gpkg"
    r = CliRunner().invoke(main, ["fuse", *map(str, scene), "-o", str(tmp_path / "f.tif"),
                                  "--vectors", str(vec), "--min-area", "20", "--device", "cpu",
                                  "-q"])
    assert r.exit_code == 0, r.output
    assert "vectors:" in r.output and str(vec) in r.output
    ogr_ok(vec)
    feats = read_features(vec, "building") + read_features(vec, "road")
    assert all(f["area_m2"] >= 20 for f in feats)

    r = CliRunner().invoke(main, ["fuse", *map(str, scene), "-o", str(tmp_path / "g.tif"),
                                  "--vectors", str(tmp_path / "v.shp"), "--method", "mean"])
    assert r.exit_code != 0
    assert "v.shp" in r.output and "GeoPackage" in r.output
    assert not (tmp_path / "g.tif").exists()


def test_a_killed_runs_temp_geopackage_is_removed_by_the_next_run(tmp_path):
    """A run killed outright (SIGKILL) leaves its temp GeoPackage; the next run writing to
    that folder removes it, as it removes temp GeoTIFFs."""
    from wsfusion_core.publish import HOST, is_temp_name, remove_stale

    dead = 4_000_000  # above Linux's pid_max: no such process
    debris = tmp_path / f".wsfusion-{dead}-{HOST}-0.tmp.gpkg"
    debris.write_bytes(b"SQLite format 3\x00")
    mine = tmp_path / ".wsfusion-notes.gpkg"  # a user's file that merely looks alike: kept
    mine.write_text("keep")
    assert is_temp_name(debris.name) and not is_temp_name(mine.name)
    assert remove_stale(tmp_path) == [debris]
    assert not debris.exists() and mine.exists()
