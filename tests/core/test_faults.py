"""Fault injection: nothing lost, nothing leaked (issue 8).

Every hostile case runs the real CLI (a subprocess) or ``fuse()`` on real files, and checks the
promise of the README: a non-zero exit with one line naming the file and the cause, no output
published, no earlier output changed, no temporary file left behind, inputs untouched.
Disk-full cases mount a small tmpfs and permission cases run as ``nobody`` (both need root, as
in CI); they skip with the reason elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import REPO, tmpfs, write_raster

from wsfusion_core.api import fuse
from wsfusion_core.errors import (
    Cancelled,
    InputError,
    OutputError,
    WeightsError,
    WsfusionError,
)
from wsfusion_core.publish import HOST, is_temp_name, remove_stale

SAMPLE = sorted((REPO / "wsfusion_core" / "data" / "sample").glob("input_*.tif"))
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ----------------------------------------------------------------------------- helpers


def cli(*args, nobody: bool = False, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "wsfusion_core.cli", *map(str, args)]
    if nobody:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(),
                          cwd=REPO)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "WSFUSION_DEBUG": ""}


def one_line_error(res: subprocess.CompletedProcess, path, *words: str) -> str:
    """The run failed with exactly one stderr line, naming ``path`` and every word."""
    assert res.returncode not in (0, None), res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert line.startswith("Error: ") and str(path) in line, line
    for w in words:
        assert w in line, line
    assert "Traceback" not in res.stderr and "ERROR " not in res.stderr
    return line


def debris(*folders: Path) -> list[str]:
    """Temporary files (ours or GDAL's side files) left in ``folders``."""
    return [p.name for f in folders for p in Path(f).iterdir()
            if is_temp_name(p.name) or p.name.startswith(".") or p.suffix == ".xml"]


def digest(paths) -> dict[str, str]:
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


@pytest.fixture(autouse=True)
def inputs_untouched():
    """Every case: the shipped sample inputs are byte-identical afterwards."""
    before = digest(SAMPLE)
    yield
    assert digest(SAMPLE) == before


@pytest.fixture
def small_disk(tmp_path):
    """A 520 KiB tmpfs: the sample's fused output does not fit."""
    with tmpfs(tmp_path / "disk", "size=520k,mode=0777") as d:
        yield d


@pytest.fixture
def world_dir():
    """A folder ``nobody`` can reach (pytest's tmp_path is private to root)."""
    if not IS_ROOT or shutil.which("setpriv") is None:
        pytest.skip("permission cases run as nobody via setpriv and need root (CI runs as root)")
    d = Path(tempfile.mkdtemp(prefix="wsfusion-faults-", dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def small_tiff(path: Path, value: int = 7) -> bytes:
    """A valid little GeoTIFF standing for an earlier result; returns its bytes."""
    write_raster(path, np.full((1, 8, 8), value, np.uint8))
    return path.read_bytes()


def valid_geotiff(path: Path) -> bool:
    with rasterio.open(path) as src:
        src.read()
    return True


# ----------------------------------------------------------------------------- disk full


@pytest.mark.parametrize("cog", [False, True], ids=["gtiff", "cog"])
def test_disk_full_cli_publishes_nothing(small_disk, cog):
    out = small_disk / "fused.tif"
    res = cli("fuse", *SAMPLE, "-o", out, "--method", "mean", "-q", *(["--cog"] if cog else []))
    line = one_line_error(res, out, "no space left on device", "MB needed")
    assert "RasterioIOError" not in line
    assert list(small_disk.iterdir()) == []


def test_disk_full_overwrite_keeps_the_old_output(small_disk):
    out = small_disk / "fused.tif"
    old = small_tiff(out)
    res = cli("fuse", *SAMPLE, "-o", out, "--method", "mean", "-q", "--overwrite")
    one_line_error(res, out, "no space left on device")
    assert out.read_bytes() == old
    assert [p.name for p in small_disk.iterdir()] == ["fused.tif"]


def test_disk_full_api_raises_output_error_with_path(small_disk):
    out = small_disk / "fused.tif"
    with pytest.raises(OutputError) as err:
        fuse(SAMPLE, out, method="mean")
    assert err.value.path == out and "no space left on device" in str(err.value)
    assert "\n" not in str(err.value)
    assert list(small_disk.iterdir()) == []


def test_read_only_file_system(tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        res = cli("fuse", *SAMPLE, "-o", ro / "f.tif", "--method", "mean", "-q")
        one_line_error(res, ro / "f.tif", "not writable")


def test_full_read_back_verification_passes_a_good_run(tmp_path):
    out = tmp_path / "f.tif"
    fuse(SAMPLE, out, method="median", verify=True, cog=True)
    assert valid_geotiff(out) and debris(tmp_path) == []


# ----------------------------------------------------------------------------- several outputs


def test_second_output_unpublishable_restores_the_first(world_dir):
    """Sticky world-writable folder; q.tif belongs to root, so nobody cannot replace it: the
    fused output nobody could replace must come back unchanged too."""
    shared = world_dir / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    fused, q = shared / "fused.tif", shared / "q.tif"
    old_fused, old_q = small_tiff(fused, 1), small_tiff(q, 2)
    os.chown(fused, _nobody_uid(), -1)
    res = cli("fuse", *SAMPLE, "-o", fused, "--quality", q, "--method", "mean", "-q",
              "--overwrite", nobody=True)
    one_line_error(res, q, "not permitted", "no output was published")
    assert fused.read_bytes() == old_fused and q.read_bytes() == old_q
    assert sorted(p.name for p in shared.iterdir()) == ["fused.tif", "q.tif"]


def test_unwritable_folder_as_nobody(world_dir):
    locked = world_dir / "locked"
    locked.mkdir()
    os.chmod(locked, 0o755)
    out = locked / "fused.tif"
    res = cli("fuse", *SAMPLE, "-o", out, "--method", "mean", "-q", nobody=True)
    one_line_error(res, out, "not writable")
    assert list(locked.iterdir()) == []


def _nobody_uid() -> int:
    import pwd

    return pwd.getpwnam("nobody").pw_uid


# ----------------------------------------------------------------------------- races


@pytest.mark.parametrize("which", ["fused", "quality"])
def test_file_appearing_during_the_run_is_never_replaced(tmp_path, which):
    """A file created at a target while the run works (another run, a user saving) is kept,
    and no other output is published either."""
    out, q = tmp_path / "fused.tif", tmp_path / "q.tif"
    victim = out if which == "fused" else q
    seen: list[float] = []

    def progress(f: float) -> None:
        seen.append(f)
        if f >= 0.5 and not victim.exists():
            victim.write_bytes(b"someone else's work")

    with pytest.raises(OutputError) as err:
        fuse(SAMPLE, out, quality=q, method="mean", progress=progress)
    assert err.value.path == victim and "appeared" in str(err.value)
    assert victim.read_bytes() == b"someone else's work"
    assert [p.name for p in tmp_path.iterdir()] == [victim.name]
    assert max(seen) >= 0.5


# ----------------------------------------------------------------------------- signals


def _long_run_args(tmp_path: Path, make_raster, smooth_image, make_weights) -> list:
    """A learned run of many one-tile batches: seconds long, so a signal lands mid-run."""
    ins = [make_raster(tmp_path / f"in{i}.tif", smooth_image(1200, 1200, seed=i))
           for i in range(2)]
    w = make_weights(tile_size=128)
    return ["fuse", *ins, "--weights", w, "--batch-size", "1", "--overlap", "16", "-q"]


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                      (signal.SIGINT, 130)], ids=["TERM", "HUP", "INT"])
def test_signal_stops_cleanly(tmp_path, make_raster, smooth_image, make_weights, sig, code):
    outdir = tmp_path / "out"
    outdir.mkdir()
    args = _long_run_args(tmp_path, make_raster, smooth_image, make_weights)
    proc = subprocess.Popen([sys.executable, "-m", "wsfusion_core.cli", *map(str, args),
                             "-o", str(outdir / "f.tif"), "--segmentation",
                             str(outdir / "s.tif")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), cwd=REPO)
    _wait_for_temp(outdir, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert list(outdir.iterdir()) == []
    assert "Traceback" not in err


def test_sigkill_debris_is_removed_by_the_next_run(tmp_path, make_raster, smooth_image,
                                                   make_weights):
    outdir = tmp_path / "out"
    outdir.mkdir()
    args = _long_run_args(tmp_path, make_raster, smooth_image, make_weights)
    proc = subprocess.Popen([sys.executable, "-m", "wsfusion_core.cli", *map(str, args),
                             "-o", str(outdir / "f.tif")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env(), cwd=REPO)
    _wait_for_temp(outdir, proc)
    proc.kill()
    proc.wait(timeout=60)
    left = debris(outdir)
    assert left and all(f"-{proc.pid}-" in n for n in left)
    # A live process's file and another host's file are not ours to remove.
    live = outdir / f".wsfusion-{os.getpid()}-{HOST}-0.tmp.tif"
    other = outdir / f".wsfusion-{proc.pid}-{'0' * 6 if HOST != '000000' else '1' * 6}-0.tmp.tif"
    live.write_bytes(b"x")
    other.write_bytes(b"x")
    res = cli("fuse", *SAMPLE, "-o", outdir / "g.tif", "--method", "mean", "-q")
    assert res.returncode == 0, res.stderr
    assert sorted(debris(outdir)) == sorted([live.name, other.name])
    assert remove_stale(outdir) == []


def test_cancel_during_cog_conversion_publishes_nothing(tmp_path):
    """A stop request that arrives while the outputs are converted (minutes on large rasters)
    is still honoured: nothing is published."""
    (tmp_path / "f.tif").write_bytes(b"previous")

    def cancel() -> bool:  # true once a COG copy is being made, i.e. inside commit
        return any(".cog." in p.name for p in tmp_path.iterdir())

    with pytest.raises(Cancelled):
        fuse(SAMPLE, tmp_path / "f.tif", quality=tmp_path / "q.tif", method="mean", cog=True,
             overwrite=True, cancel=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.tif"]
    assert (tmp_path / "f.tif").read_bytes() == b"previous"


def _wait_for_temp(folder: Path, proc: subprocess.Popen, limit: float = 120) -> None:
    t0 = time.monotonic()
    while not debris(folder):
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"the run ended before it wrote anything: {err}")
        if time.monotonic() - t0 > limit:
            proc.kill()
            pytest.fail("no temporary output appeared")
        time.sleep(0.02)


# ----------------------------------------------------------------------------- names and nodes


@pytest.mark.parametrize("cog", [False, True], ids=["gtiff", "cog"])
def test_longest_names_work(tmp_path, cog):
    out = tmp_path / ("n" * 240 + ".tif")  # 244 characters
    q = tmp_path / ("q" * 251 + ".tif")  # 255: the limit of most file systems
    res = cli("fuse", *SAMPLE, "-o", out, "--quality", q, "--method", "mean", "-q",
              *(["--cog"] if cog else []))
    assert res.returncode == 0, res.stderr
    assert valid_geotiff(out) and valid_geotiff(q)
    assert debris(tmp_path) == []


def make_node(path: Path, kind: str, minor: int) -> Path:
    """A FIFO, or a character device like /dev/null (minor 3) or /dev/zero (minor 5)."""
    if kind == "fifo":
        os.mkfifo(path)
    elif not IS_ROOT:
        pytest.skip("creating a device node needs root (CI runs as root)")
    else:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    return path


@pytest.mark.parametrize("kind", ["chardev", "fifo"])
def test_device_or_fifo_output_is_refused(tmp_path, kind):
    node = make_node(tmp_path / "out.tif", kind, 3)
    res = cli("fuse", *SAMPLE, "-o", node, "--method", "mean", "-q", "--overwrite", timeout=60)
    one_line_error(res, node, "not a regular file")
    mode = os.lstat(node).st_mode
    assert (stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISCHR(mode))
    assert debris(tmp_path) == []


def test_dev_null_output_is_refused():
    res = cli("fuse", *SAMPLE, "-o", "/dev/null", "--method", "mean", "-q", "--overwrite")
    one_line_error(res, "/dev/null", "character device")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


# ----------------------------------------------------------------------------- hostile inputs


@pytest.mark.parametrize("kind", ["fifo", "chardev"])
def test_non_regular_input_is_refused_without_hanging(tmp_path, kind):
    node = make_node(tmp_path / "in.tif", kind, 5)
    out = tmp_path / "f.tif"
    res = cli("fuse", SAMPLE[0], node, "-o", out, "--method", "mean", "-q", timeout=60)
    one_line_error(res, node, "not a regular file")
    assert not out.exists()
    res = cli("info", node, timeout=60)
    one_line_error(res, node, "not a regular file")


def _vrt(path: Path, band_xml: str) -> Path:
    with rasterio.open(SAMPLE[0]) as src:
        t = src.transform
        crs = src.crs.to_wkt()
    path.write_text(f"""<VRTDataset rasterXSize="64" rasterYSize="64">
  <SRS>{crs}</SRS>
  <GeoTransform>{t.c}, {t.a}, 0, {t.f}, 0, {t.e}</GeoTransform>
  {band_xml}
</VRTDataset>""")
    return path


def test_vrt_raw_band_reading_any_file_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOP-SECRET" * 1000)
    vrt = _vrt(tmp_path / "looks_like.tif", f"""<VRTRasterBand dataType="Byte" band="1"
      subClass="VRTRawRasterBand"><SourceFilename relativeToVRT="0">{secret}</SourceFilename>
      <ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>64</LineOffset>
    </VRTRasterBand>""")
    out = tmp_path / "f.tif"
    res = cli("fuse", vrt, vrt, "-o", out, "--method", "mean", "-q")
    one_line_error(res, vrt, "raw raster band")
    assert not out.exists()
    with pytest.raises(InputError) as err:
        fuse([vrt, SAMPLE[0]], out, method="mean")
    assert err.value.path == vrt


@pytest.mark.parametrize("source", ["/vsicurl/http://127.0.0.1:9/x.tif", "fifo", "/dev/zero"])
def test_vrt_with_a_non_file_source_is_refused(tmp_path, source):
    if source == "fifo":
        source = str(tmp_path / "pipe.tif")
        os.mkfifo(source)
    vrt = _vrt(tmp_path / "v.vrt", f"""<VRTRasterBand dataType="Byte" band="1"><SimpleSource>
      <SourceFilename relativeToVRT="0">{source}</SourceFilename><SourceBand>1</SourceBand>
    </SimpleSource></VRTRasterBand>""")
    res = cli("fuse", vrt, SAMPLE[0], "-o", tmp_path / "f.tif", "--method", "mean", "-q",
              timeout=60)
    one_line_error(res, vrt, "refused")
    assert not (tmp_path / "f.tif").exists()


def test_an_honest_vrt_still_works(tmp_path):
    vrt = _vrt(tmp_path / "v.vrt", f"""<VRTRasterBand dataType="Byte" band="1"><SimpleSource>
      <SourceFilename relativeToVRT="0">{SAMPLE[1]}</SourceFilename><SourceBand>1</SourceBand>
    </SimpleSource></VRTRasterBand>""")
    res = cli("info", vrt)
    assert res.returncode == 0, res.stderr


def test_format_outside_the_allow_list_is_refused(tmp_path):
    gif = tmp_path / "in.gif"
    with rasterio.open(gif, "w", driver="GIF", width=16, height=16, count=1,
                       dtype="uint8") as dst:
        dst.write(np.zeros((1, 16, 16), np.uint8))
    res = cli("fuse", gif, gif, "-o", tmp_path / "f.tif", "--method", "mean", "-q")
    one_line_error(res, gif, "accepted format")


def _like_sample(path: Path, dtype: str, bands: int = 4) -> Path:
    with rasterio.open(SAMPLE[1]) as src:
        profile = src.profile
        data = src.read(list(range(1, bands + 1)))
    profile.update(dtype=dtype, count=bands, nodata=None, photometric="MINISBLACK")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(dtype) * (257 if dtype == "uint16" else 1))
    return path


def test_mixed_data_types_are_refused_naming_both(tmp_path):
    wide = _like_sample(tmp_path / "wide.tif", "uint16")
    out = tmp_path / "f.tif"
    res = cli("fuse", SAMPLE[0], wide, "-o", out, "--method", "mean", "-q")
    one_line_error(res, wide, "uint16", "uint8", SAMPLE[0].name)
    assert not out.exists()
    info = cli("info", SAMPLE[0], wide)
    assert info.returncode == 0 and "refuse:" in info.stdout and "uint16" in info.stdout


@pytest.mark.parametrize("dtype", ["complex64", "int64"])
def test_unsupported_data_type_is_refused_naming_the_file(tmp_path, dtype):
    bad = _like_sample(tmp_path / f"{dtype}.tif", dtype)
    res = cli("fuse", bad, bad, "-o", tmp_path / "f.tif", "--method", "mean", "-q")
    one_line_error(res, bad, dtype)
    with pytest.raises(InputError) as err:
        fuse([bad, bad], tmp_path / "f.tif", method="mean")
    assert err.value.path == bad


# ----------------------------------------------------------------------------- weights


BAD_METADATA = {
    "tile size as text": {"tile_size": "300"},
    "widths not integers": {"widths": [16.5, 32, 64]},
    "tile size 0": {"tile_size": 0},
    "tile size 200000": {"tile_size": 200000},
    "std 0": {"normalisation": {"mean": [0, 0, 0], "std": [0.0, 1.0, 1.0]}},
    "metadata is a list": [],
    "colours do not match classes": {"class_colours": [[1, 2, 3]]},
    "fusion unknown": {"fusion": "pickle"},
    "architecture unknown": {"architecture": "transformer"},
    "architecture not text": {"architecture": ["set"]},
}


def _weights_with(path: Path, patch) -> Path:
    from safetensors.torch import save_file

    from wsfusion_core.weights import FORMAT, METADATA_KEY, ModelInfo, build_model

    info = ModelInfo(widths=[4, 8, 8, 8, 8])
    tensors = {k: v.contiguous() for k, v in build_model(info).state_dict().items()}
    meta = json.loads(info.to_json())
    meta = patch if isinstance(patch, list) else {**meta, **patch, "format": FORMAT}
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(meta)})
    return path


@pytest.mark.parametrize("case", list(BAD_METADATA), ids=list(BAD_METADATA))
def test_hostile_weights_metadata_is_refused(tmp_path, case):
    from wsfusion_core.weights import load_weights

    w = _weights_with(tmp_path / "w.safetensors", BAD_METADATA[case])
    with pytest.raises(WeightsError) as err:
        load_weights(w)
    assert err.value.path == w and "\n" not in str(err.value)
    out = tmp_path / "f.tif"
    res = cli("fuse", *SAMPLE, "-o", out, "--weights", w, "-q")
    one_line_error(res, w, "metadata")
    assert "overlap" not in res.stderr and not out.exists()


# ----------------------------------------------------------------------------- API contract


def test_only_wsfusion_errors_escape_the_api(tmp_path):
    """Everyday mistakes through ``fuse()``: each a WsfusionError carrying the file."""
    cases = {
        tmp_path / "missing.tif": lambda p: fuse([p], tmp_path / "f.tif", method="mean"),
        tmp_path: lambda p: fuse([SAMPLE[0]], p, method="mean"),
        tmp_path / "no" / "f.tif": lambda p: fuse([SAMPLE[0]], p, method="mean"),
        SAMPLE[0]: lambda p: fuse([p], p, method="mean", overwrite=True),
    }
    for path, call in cases.items():
        with pytest.raises(WsfusionError) as err:
            call(path)
        assert err.value.path is not None, str(err.value)
    # Not a file problem, and not foreseen: still a WsfusionError (with .path None), one line.
    with pytest.raises(WsfusionError) as err:
        fuse(SAMPLE, tmp_path / "f.tif", method="mean", bands=["red"])  # type: ignore[list-item]
    assert err.value.path is None and "ValueError" in str(err.value)
    assert debris(tmp_path) == []


# ----------------------------------------------------------------------------- everyday mistakes


def _everyday(tmp: Path) -> dict[str, tuple[list, object, tuple[str, ...]]]:
    """name → (CLI arguments, the path the one line must name, words it must contain)."""
    text = tmp / "notes.tif"
    text.write_text("not a raster")
    exists = tmp / "exists.tif"
    exists.write_bytes(b"keep me")
    far = tmp / "far.tif"
    write_raster(far, np.full((4, 16, 16), 9, np.uint8), transform=rasterio.transform.from_origin(
        0.0, 0.0, 1.0, 1.0), crs="EPSG:26914")
    three = tmp / "three.tif"
    write_raster(three, np.full((3, 512, 512), 9, np.uint8), crs="EPSG:26914")
    w_missing = tmp / "nothere.safetensors"
    w_bad = tmp / "bad.safetensors"
    w_bad.write_bytes(b"\x00" * 64)
    out = tmp / "f.tif"
    s0 = SAMPLE[0]
    return {
        "missing input": ([s0, tmp / "gone.tif", "-o", out], tmp / "gone.tif", ("not found",)),
        "folder as input": ([s0, tmp, "-o", out], tmp, ("directory",)),
        "text file as input": ([s0, text, "-o", out], text, ("raster",)),
        "output is an input": ([s0, SAMPLE[1], "-o", s0, "--overwrite"], s0, ("input",)),
        "two outputs one path": ([*SAMPLE, "-o", out, "--quality", out], out, ("same path",)),
        "missing folder": ([*SAMPLE, "-o", tmp / "no" / "f.tif"], tmp / "no" / "f.tif",
                           ("does not exist",)),
        "output is a folder": ([*SAMPLE, "-o", tmp], tmp, ("directory",)),
        "output exists": ([*SAMPLE, "-o", exists], exists, ("already exists", "--overwrite")),
        "no overlap": ([s0, far, "-o", out], far, ("overlap",)),
        "band counts differ": ([s0, three, "-o", out], three, ("band",)),
        "weights missing": ([*SAMPLE, "-o", out, "--method", "learned", "--weights", w_missing],
                            w_missing, ("not found",)),
        "weights not safetensors": ([*SAMPLE, "-o", out, "--method", "learned", "--weights",
                                     w_bad], w_bad, ("safetensors",)),
    }


EVERYDAY = [
    "missing input", "folder as input", "text file as input", "output is an input",
    "two outputs one path", "missing folder", "output is a folder", "output exists",
    "no overlap", "band counts differ", "weights missing", "weights not safetensors"]


@pytest.mark.parametrize("case", EVERYDAY)
def test_everyday_mistakes_one_line_nothing_written(tmp_path, case):
    args, named, words = _everyday(tmp_path)[case]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    method = [] if "--method" in args else ["--method", "mean"]
    res = cli("fuse", *args, *method, "-q")
    one_line_error(res, named, *words)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before and debris(tmp_path) == []
