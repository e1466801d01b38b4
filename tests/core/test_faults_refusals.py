"""No silent wrong output, part B (issue 19, items 4 and 7-16): refusals and one-line errors.

Every case builds its input for real (GeoTIFFs, VRTs, scheduler files, input lists), runs the real
CLI in a subprocess (or ``fuse()`` / ``inspect()``), and checks the promise: the right output, or a
non-zero exit with one line naming the file and the cause, nothing published, no temporary file
left, inputs byte-identical; and ``info`` reports what ``fuse`` does.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import REPO, tmpfs, write_raster
from rasterio.transform import Affine, from_origin

from wsfusion_core.api import fuse
from wsfusion_core.errors import InputError, OutputError, WsfusionError
from wsfusion_core.grid import align
from wsfusion_core.publish import HOST, is_temp_name, remove_stale
from wsfusion_core.report import inspect
from wsfusion_core.size_guard import data_share
from wsfusion_core.view import parse_scale

UTM = "EPSG:32633"  # near 15°E 45°N
UTM_ORIGIN = from_origin(500000.0, 4984000.0, 10.0, 10.0)


# ----------------------------------------------------------------------------- helpers


def cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WSFUSION_DEBUG": ""}
    return subprocess.run([sys.executable, "-m", "wsfusion_core.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def one_line_error(res: subprocess.CompletedProcess, named, *words: str) -> str:
    """The run failed with exactly one stderr line that names ``named`` and every word."""
    assert res.returncode not in (0, None), res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert line.startswith("Error: ") and str(named) in line, line
    for w in words:
        assert w in line, line
    assert "Traceback" not in res.stderr and "this is a bug" not in line
    return line


def debris(folder: Path) -> list[str]:
    return [p.name for p in Path(folder).iterdir()
            if is_temp_name(p.name) or p.name.startswith(".") or p.suffix == ".xml"]


def digest(paths) -> dict[str, str]:
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def noise(h: int, w: int, seed: int = 0, bands: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 255, (bands, h, w), dtype=np.uint8)


def utm_input(path: Path, seed: int = 0, size: int = 64) -> Path:
    return write_raster(path, noise(size, size, seed), crs=UTM, transform=UTM_ORIGIN)


def refused_cleanly(tmp_path: Path, args: list, named, *words: str, cmd: str = "fuse") -> str:
    """Run the CLI in ``tmp_path``; one line, nothing written, no debris, inputs unchanged."""
    names = sorted(p.name for p in tmp_path.iterdir())
    before = digest(p for p in tmp_path.iterdir() if p.is_file())
    res = cli(cmd, *args, *(["-q"] if cmd == "fuse" else []))
    line = one_line_error(res, named, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # nothing published or left
    assert digest(p for p in tmp_path.iterdir() if p.is_file()) == before
    assert debris(tmp_path) == []
    return line


def vrt(path: Path, width: int, height: int, source: Path, rects: bool, size: int,
        transform: str = "500000, 10, 0, 4984000, 0, -10", srs: str = UTM) -> Path:
    """A VRT declaring ``width`` x ``height`` px over ``source`` (``size`` px square), placed
    by a DstRect at its corner (``rects``) or, without one, stretched over the whole grid."""
    bands = []
    for b in (1, 2, 3):
        rect = (f'<SrcRect xOff="0" yOff="0" xSize="{size}" ySize="{size}"/>'
                f'<DstRect xOff="0" yOff="0" xSize="{size}" ySize="{size}"/>') if rects else ""
        bands.append(f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource>'
                     f'<SourceFilename relativeToVRT="0">{source}</SourceFilename>'
                     f"<SourceBand>{b}</SourceBand>{rect}</SimpleSource></VRTRasterBand>")
    path.write_text(f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
                    f"<SRS>{srs}</SRS><GeoTransform>{transform}</GeoTransform>"
                    + "".join(bands) + "</VRTDataset>\n")
    return path


# ----------------------------------------------------------------------------- 4: --scale


BROKEN_SCALES = ["-1e200,1e200", "inf", "1e400", "1e-300", "-3e38,3e38", "nan", "0,inf"]


@pytest.mark.parametrize("scale", BROKEN_SCALES)
def test_scale_that_breaks_float32_is_refused_in_one_line(tmp_path, scale):
    a, b = utm_input(tmp_path / "a.tif", 1), utm_input(tmp_path / "b.tif", 2)
    line = refused_cleanly(tmp_path, [a, b, "-o", tmp_path / "f.tif", f"--scale={scale}"],
                           "--scale", "float32")
    assert scale in line
    with pytest.raises(WsfusionError, match="float32"):
        parse_scale(scale)
    res = cli("info", a, b, f"--scale={scale}")
    one_line_error(res, "--scale", "float32")


def test_ordinary_scales_still_parse():
    assert (parse_scale("0,3000").lo, parse_scale("0,3000").hi) == (0.0, 3000.0)
    assert parse_scale("255").hi == 255.0
    assert parse_scale("-3e38,3e37").kind == "range"  # span 3.3e38: within float32


def test_scale_refused_by_the_python_api(tmp_path):
    a, b = utm_input(tmp_path / "a.tif", 1), utm_input(tmp_path / "b.tif", 2)
    with pytest.raises(WsfusionError, match="float32"):
        fuse([a, b], tmp_path / "f.tif", scale="1e400", method="mean")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif"]


# ----------------------------------------------------------------------------- 7: huge grids


def test_huge_declared_grid_is_refused_before_any_work(tmp_path):
    """A VRT declaring 10⁶ × 10⁶ px over a 64 px file, as the first input: refused at once
    (the subprocess would otherwise plan hours of work and write gigabytes)."""
    src = utm_input(tmp_path / "small.tif", 1)
    huge = vrt(tmp_path / "huge.vrt", 10**6, 10**6, src, rects=True, size=64)
    other = utm_input(tmp_path / "b.tif", 2)
    t0 = time.perf_counter()
    line = refused_cleanly(tmp_path, [huge, other, "-o", tmp_path / "f.tif"], huge,
                           "1,000,000 x 1,000,000", "nodata", "--allow-large")
    assert time.perf_counter() - t0 < 120  # a refusal, not a run (generous: a busy CI box)
    assert "times larger than the area where the inputs hold data" in line
    # info says the same refusal; with the opt-in it plans the run instead
    res = cli("info", huge, other)
    assert res.returncode == 0, res.stderr
    assert "refuse: " in res.stdout and "1,000,000 x 1,000,000" in res.stdout
    res = cli("info", huge, other, "--allow-large")
    assert res.returncode == 0 and "refuse" not in res.stdout and "write 3 band(s)" in res.stdout
    report = inspect([huge, other])
    assert any("nodata" in p for p in report.problems)
    assert not inspect([huge, other], allow_large=True).problems


def test_data_share_follows_a_vrts_sources(tmp_path):
    """The real data extent: a VRT's sources where they land, a plain raster everywhere."""
    src = utm_input(tmp_path / "small.tif", 1)
    quarter = vrt(tmp_path / "q.vrt", 128, 128, src, rects=True, size=64)
    stretched = vrt(tmp_path / "s.vrt", 128, 128, src, rects=False, size=64)
    for path, share in ((quarter, 0.25), (stretched, 1.0)):
        al = align([path])
        assert data_share(al.inputs, al.grid) == pytest.approx(share)
    al = align([quarter, src])  # the plain raster lies on the VRT's source: still a quarter
    assert data_share(al.inputs, al.grid) == pytest.approx(0.25)


def test_output_larger_than_the_disk_is_refused(tmp_path):
    """10⁷ × 10⁷ px with data everywhere (the VRT's source stretched over it): 300 TB
    uncompressed, more than any test disk holds twice over."""
    src = utm_input(tmp_path / "small.tif", 1)
    big = vrt(tmp_path / "big.vrt", 10**7, 10**7, src, rects=False, size=64)
    out = tmp_path / "f.tif"
    line = refused_cleanly(tmp_path, [big, "-o", out, "--method", "mean"], out,
                           "no space left on device", "needed", "free", "--allow-large")
    assert "TB needed" in line
    with pytest.raises(OutputError, match="2:1 compression") as err:
        fuse([big], out, method="mean")
    assert err.value.path == out


def test_cog_disk_full_with_the_opt_in_still_publishes_nothing(tmp_path):
    """With the opt-in the run goes ahead and a full disk is caught while writing, as before."""
    ins = [write_raster(tmp_path / f"in{i}.tif", noise(512, 512, i), nodata=0)
           for i in range(2)]
    with tmpfs(tmp_path / "disk", "size=520k,mode=0777") as disk:
        out = disk / "f.tif"
        res = cli("fuse", *ins, "-o", out, "--method", "mean", "--cog", "-q")
        one_line_error(res, out, "no space left on device", "2:1 compression")
        res = cli("fuse", *ins, "-o", out, "--method", "mean", "--cog", "-q", "--allow-large")
        one_line_error(res, out, "no space left on device", "writing failed")
        assert list(disk.iterdir()) == []


# ----------------------------------------------------------------------------- 8: footprints


def _lonlat_raster(path: Path, west: float, north: float, width: int, height: int,
                   res: float = 1.0) -> Path:
    return write_raster(path, noise(height, width, 5), crs="EPSG:4326",
                        transform=from_origin(west, north, res, res))


@pytest.mark.parametrize("west,width", [(-180, 360), (-100, 220), (0, 180), (0, 30)],
                         ids=["world", "-100..120", "0..180", "0..30"])
def test_lonlat_raster_over_a_utm_reference_is_fused(tmp_path, west, width):
    ref = utm_input(tmp_path / "ref.tif", 1, size=64)
    ll = _lonlat_raster(tmp_path / "ll.tif", west, 90, width, 180)
    rep = inspect([ref, ll])
    assert rep.problems == [] and rep.overlaps[1] == pytest.approx(1.0)
    out = tmp_path / "f.tif"
    res = cli("fuse", ref, ll, "-o", out, "--method", "mean", "-q")
    assert res.returncode == 0, res.stderr
    with rasterio.open(out) as f, rasterio.open(ref) as r:
        fused, own = f.read(), r.read()
        assert f.crs == r.crs and f.transform == r.transform
    assert (fused != own).any()  # the world raster took part
    assert (fused != 0).any(axis=0).all()  # and nowhere became nodata


def test_footprints_across_the_antimeridian_and_over_a_pole(tmp_path):
    # a UTM zone 60 raster reaching past 180°E, on a lon/lat grid 170..190°E
    u60 = write_raster(tmp_path / "u60.tif", noise(30, 30), crs="EPSG:32660",
                       transform=from_origin(700000, 5000000, 10000, 10000))
    grid = _lonlat_raster(tmp_path / "g.tif", 170, 46, 200, 20, res=0.1)  # 170..190, 44..46
    al = align([grid, u60])
    # 179.5°E..176.7°W x 44..45.1°N: ~3.8° x 1.1° of 20° x 2° (west of 180° alone: 0.014)
    assert 0.07 < al.overlaps[1] < 0.14
    # a whole-world lon/lat raster on a polar stereographic grid around the North Pole
    polar = write_raster(tmp_path / "polar.tif", noise(20, 20), crs="EPSG:3413",
                         transform=from_origin(-1000000, 1000000, 100000, 100000))
    world = _lonlat_raster(tmp_path / "world.tif", -180, 90, 360, 180)
    assert align([polar, world]).overlaps[1] == pytest.approx(1.0)
    # and the polar grid on the world grid: all longitudes north of ~77°N
    share = align([world, polar]).overlaps[1]
    assert 0.04 < share < 0.07


def test_truly_separate_rasters_still_do_not_overlap(tmp_path):
    ref = utm_input(tmp_path / "ref.tif", 1)
    far = _lonlat_raster(tmp_path / "far.tif", 90, 50, 20, 10)  # 90..110°E
    refused_cleanly(tmp_path, [ref, far, "-o", tmp_path / "f.tif", "--method", "mean"], far,
                    "does not overlap")


# ----------------------------------------------------------------------------- 9, 15: grids, CRSs


def _with_transform(path: Path, transform: Affine, crs=UTM) -> Path:
    """A GeoTIFF whose geotransform GDAL would refuse to write: a VRT around a real file."""
    src = utm_input(path.with_suffix(".src.tif"), 3)
    gdal = ", ".join(repr(v) for v in transform.to_gdal())
    return vrt(path, 64, 64, src, rects=True, size=64, transform=gdal, srs=crs)


@pytest.mark.parametrize("first", [True, False], ids=["reference", "second"])
def test_nan_in_the_geotransform_names_the_file(tmp_path, first):
    good = utm_input(tmp_path / "good.tif", 1)
    bad = _with_transform(tmp_path / "nan.vrt", Affine(10.0, 0, float("nan"), 0, -10, 4984000))
    args = [bad, good] if first else [good, bad]
    refused_cleanly(tmp_path, [*args, "-o", tmp_path / "f.tif", "--method", "mean"], bad,
                    "NaN")
    one_line_error(cli("info", *args), bad, "NaN")


def test_zero_pixel_size_is_not_called_no_overlap(tmp_path):
    bad = _with_transform(tmp_path / "zero.vrt", Affine(0.0, 0, 500000, 0, -10, 4984000))
    line = refused_cleanly(tmp_path, [bad, "-o", tmp_path / "f.tif", "--method", "mean"], bad,
                           "zero pixel size")
    assert "overlap" not in line


def test_local_cs_next_to_utm_cannot_be_converted(tmp_path):
    good = utm_input(tmp_path / "utm.tif", 1)
    local = write_raster(tmp_path / "local.tif", noise(64, 64, 2),
                         crs='LOCAL_CS["site grid",UNIT["metre",1]]', transform=UTM_ORIGIN)
    line = refused_cleanly(tmp_path, [good, local, "-o", tmp_path / "f.tif", "--method", "mean"],
                           local, "cannot be converted")
    assert "overlap" not in line
    res = cli("info", good, local)
    assert res.returncode == 0 and "refuse: " in res.stdout
    assert "cannot be converted" in res.stdout


def test_lonlat_grid_beyond_the_pole_is_refused_quietly(tmp_path):
    beyond = _lonlat_raster(tmp_path / "lat100.tif", 10, 100, 40, 60)  # 100°N .. 40°N
    good = utm_input(tmp_path / "utm.tif", 1)
    for args in ([beyond, good], [good, beyond]):
        line = refused_cleanly(tmp_path, [*args, "-o", tmp_path / "f.tif", "--method", "mean"],
                               beyond, "latitude 100", "beyond the pole")
        assert "PROJ" not in line


# ----------------------------------------------------------------------------- 10, 11: list files


def test_scheduler_file_that_is_not_json(tmp_path):
    a, b = utm_input(tmp_path / "a.tif", 1), utm_input(tmp_path / "b.tif", 2)
    sched = tmp_path / "scheduler.json"
    sched.write_text("{not json")
    refused_cleanly(tmp_path, [a, b, "-o", tmp_path / "f.tif", "--method", "mean",
                               "--scheduler-file", sched], sched, "not a dask scheduler file",
                    "invalid JSON")
    sched.write_text(json.dumps({"type": "Scheduler"}))
    refused_cleanly(tmp_path, [a, b, "-o", tmp_path / "f.tif", "--method", "mean",
                               "--scheduler-file", sched], sched, "address")


def test_input_list_that_is_not_utf8(tmp_path):
    utm_input(tmp_path / "a.tif", 1)
    utm_input(tmp_path / "b.tif", 2)
    lst = tmp_path / "inputs.txt"
    lst.write_bytes(b"a.tif\n\xff\xfeb.tif\n")
    refused_cleanly(tmp_path, ["--input-list", lst, "-o", tmp_path / "f.tif", "--method",
                               "mean"], lst, "not UTF-8", "line 2")


# ----------------------------------------------------------------------------- 12: damaged TIFFs


def test_truncated_tiff_is_refused_by_info_and_fuse(tmp_path):
    good = utm_input(tmp_path / "good.tif", 1, size=256)
    cut = tmp_path / "cut.tif"
    data = utm_input(tmp_path / "whole.tif", 2, size=256).read_bytes()
    (tmp_path / "whole.tif").unlink()
    cut.write_bytes(data[: len(data) // 2])
    refused_cleanly(tmp_path, [good, cut, "-o", tmp_path / "f.tif", "--method", "mean"], cut,
                    "truncated", "bytes")
    one_line_error(cli("info", good, cut), cut, "truncated")


def _damaged(path: Path, georeferenced: bool = True, damage: bool = True, seed: int = 4
             ) -> Path:
    """A tiled, compressed 512² GeoTIFF whose first block holds zeros: whole in size,
    undecodable (``damage`` False: intact); without a CRS or geotransform if asked."""
    geo = dict(crs=UTM, transform=UTM_ORIGIN) if georeferenced else {}
    with rasterio.open(path, "w", driver="GTiff", width=512, height=512, count=3,
                       dtype="uint8", tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate", **geo) as dst:
        dst.write(noise(512, 512, seed))
    if not damage:
        return path
    with rasterio.open(path) as src:
        off = int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        n = int(src.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
    raw = bytearray(path.read_bytes())
    raw[off:off + n] = b"\0" * n
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("workers", [False, True], ids=["local", "workers"])
def test_undecodable_block_says_why(tmp_path, workers):
    good = utm_input(tmp_path / "good.tif", 1, size=512)
    bad = _damaged(tmp_path / "bad.tif")
    extra = ["--workers", "2", "--chunk", "256"] if workers else []
    line = refused_cleanly(tmp_path, [good, bad, "-o", tmp_path / "f.tif", "--method", "mean",
                                      *extra], bad, "read failed (", "Decod")
    assert "previous exception" not in line and "chunk r" not in line
    assert "Exception" not in line


# ----------------------------------------------------------------------------- 13: warnings


def test_non_georeferenced_inputs_print_no_python_warning(tmp_path):
    ins = [_damaged(tmp_path / f"plain{i}.tif", georeferenced=False, damage=False, seed=i)
           for i in range(2)]
    res = cli("fuse", *ins, "-o", tmp_path / "f.tif", "--method", "mean")  # not quiet
    assert res.returncode == 0, res.stderr
    assert "Warning" not in res.stderr and "dataset = " not in res.stderr
    (tmp_path / "f.tif").unlink()
    # an error after the outputs were opened (an undecodable block) is one line, no warning
    bad = _damaged(tmp_path / "bad.tif", georeferenced=False)
    refused_cleanly(tmp_path, [ins[0], bad, "-o", tmp_path / "g.tif", "--method", "mean"],
                    bad, "read failed")


# ----------------------------------------------------------------------------- 14: symlinks


def test_dangling_symlink_at_the_output_is_refused_at_once(tmp_path):
    a, b = utm_input(tmp_path / "a.tif", 1), utm_input(tmp_path / "b.tif", 2)
    link = tmp_path / "f.tif"
    link.symlink_to(tmp_path / "missing.tif")
    refused_cleanly(tmp_path, [a, b, "-o", link, "--method", "mean"], link,
                    "symbolic link to a missing file", "--overwrite")
    assert link.is_symlink() and os.readlink(link) == str(tmp_path / "missing.tif")
    res = cli("fuse", a, b, "-o", link, "--method", "mean", "-q", "--overwrite")
    assert res.returncode == 0, res.stderr
    assert not link.is_symlink() and link.is_file()
    assert not (tmp_path / "missing.tif").exists()


# ----------------------------------------------------------------------------- 16: small defects


def test_output_with_a_trailing_slash_is_refused(tmp_path):
    a, b = utm_input(tmp_path / "a.tif", 1), utm_input(tmp_path / "b.tif", 2)
    refused_cleanly(tmp_path, [a, b, "-o", f"{tmp_path / 'out.tif'}/", "--method", "mean"],
                    tmp_path / "out.tif", "folder")
    assert not (tmp_path / "out.tif").exists()


def test_stale_clean_up_removes_only_what_the_writer_makes(tmp_path):
    dead = _dead_pid()
    ours = [f".wsfusion-{dead}-{HOST}-3.tmp.tif", f".wsfusion-{dead}-{HOST}-4.cog.tif",
            f".wsfusion-{dead}-{HOST}-5.tmp.tif.aux.xml", f".wsfusion-{dead}-{HOST}-6.tmp.png"]
    users = [f".wsfusion-{dead}-{HOST}-7.anything", f".wsfusion-{dead}-{HOST}-8.tmp.tif.bak",
             f".wsfusion-{dead}-{HOST}-9.notes.txt", f".wsfusion-{dead}-{HOST}-1.old.tif"]
    for name in ours + users:
        (tmp_path / name).write_bytes(b"x")
    removed = remove_stale(tmp_path)
    assert sorted(p.name for p in removed) == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(users)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _killed_chunked_run(tmp_path: Path, make_raster, smooth_image, make_weights,
                        resume: bool) -> tuple[Path, Path, list]:
    """A chunked learned run killed with SIGKILL while a part is being written."""
    ins = [make_raster(tmp_path / f"in{i}.tif", smooth_image(1024, 1024, seed=i))
           for i in range(2)]
    w = make_weights(tile_size=128)
    outdir = tmp_path / "out"
    outdir.mkdir()
    args = ["fuse", *ins, "--weights", w, "--batch-size", "1", "--overlap", "16", "--chunk",
            "256", "-q", "-o", outdir / "f.tif", *(["--resume"] if resume else [])]
    env = {**os.environ, "PYTHONPATH": str(REPO), "WSFUSION_DEBUG": ""}
    proc = subprocess.Popen([sys.executable, "-m", "wsfusion_core.cli", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            cwd=REPO)
    parts = outdir / ".f.tif.parts"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.is_dir() and any(p.name.endswith(".tmp.tif") for p in parts.iterdir()):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before a part was being written"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert any(p.name.endswith(".tmp.tif") for p in parts.iterdir())
    return outdir, parts, ins


@pytest.mark.parametrize("resume", [False, True], ids=["plain", "resume"])
def test_parts_of_a_killed_run_are_cleaned_by_the_next_run_in_the_folder(
        tmp_path, make_raster, smooth_image, make_weights, resume):
    outdir, parts, ins = _killed_chunked_run(tmp_path, make_raster, smooth_image, make_weights,
                                             resume)
    users = outdir / ".mine.parts"  # a user's folder of that shape, without our manifest
    users.mkdir()
    (users / "keep.txt").write_text("mine")
    res = cli("fuse", *ins, "-o", outdir / "other.tif", "--method", "mean", "-q")
    assert res.returncode == 0, res.stderr
    assert (users / "keep.txt").read_text() == "mine"
    if resume:  # finished parts stay for --resume; the half-written temporary is gone
        assert parts.is_dir() and (parts / "manifest.json").is_file()
        assert not any(p.name.endswith(".tmp.tif") for p in parts.iterdir())
    else:
        assert not parts.exists()
    assert debris(outdir) == [".mine.parts"] + ([".f.tif.parts"] if resume else [])


def test_inputs_tag_is_a_json_list(tmp_path):
    a = utm_input(tmp_path / "x;y.tif", 1)
    b = utm_input(tmp_path / "b.tif", 2)
    out = tmp_path / "f.tif"
    fuse([a, b], out, method="mean")
    with rasterio.open(out) as f:
        assert json.loads(f.tags()["WSFUSION_INPUTS"]) == ["x;y.tif", "b.tif"]


@pytest.mark.parametrize("bands", ["1,,3", "1,2,", ",1,2", "1;;2"])
def test_empty_band_number_is_refused(tmp_path, bands):
    a, b = utm_input(tmp_path / "a.tif", 1), utm_input(tmp_path / "b.tif", 2)
    refused_cleanly(tmp_path, [a, b, "-o", tmp_path / "f.tif", "--method", "mean",
                               "--bands", bands], "--bands", "missing")


def test_errors_survive_pickling_whole():
    """What a dask worker sends back: the same class, path, hint and text."""
    import pickle

    err = InputError("read failed (x)", path="/data/a.tif", hint="try b")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is InputError and back.path == Path("/data/a.tif")
    assert back.hint == "try b" and str(back) == str(err)


def test_python_warnings_go_to_the_log_once_per_place(capfd):
    """What fuse and inspect are wrapped in: numpy's RuntimeWarnings (a thousand of them from
    one line) and others reach ``log`` as one line each, and nothing is printed."""
    import warnings

    from wsfusion_core.errors import quiet_warnings

    @quiet_warnings
    def work(log=None):
        for _ in range(1000):
            np.float32(3e38) * np.float32(10)  # overflow: a RuntimeWarning each time
        warnings.warn("a library's note", stacklevel=1)
        return "done"

    lines: list[str] = []
    assert work(log=lines.append) == "done"
    assert lines == ["warning: RuntimeWarning: overflow encountered in scalar multiply",
                     "warning: UserWarning: a library's note"]
    assert work() == "done"  # no log: dropped
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # never printed
