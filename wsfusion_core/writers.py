"""GeoTIFF outputs: profiles, the output dtype/nodata rule, atomic writing in whole blocks,
colour table and class tags, Cloud-Optimized copies, GDAL cache sizing.

Every output is written to a hidden temp file beside its target, closed, synced and checked,
and all are moved into place together (publish.py) only when the whole run succeeded, so a
crash, an error, a full disk or a cancel never leaves a half-written file and never touches an
existing one.
"""

from __future__ import annotations

import json
import math
import os
import stat
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar, Union

import numpy as np
import rasterio
from rasterio.windows import Window

from . import gdal_errors
from .classes import CLASS_COLOURS, CLASS_NAMES, SEGMENTATION_NODATA
from .errors import OutputError, shown
from .input_guard import file_kind
from .output_checks import storage_failures, verify_geotiff, write_failure
from .publish import OVERWRITE_HINT, fsync_file, publish_all, remove_stale, temp_path
from .remote import REMOTE_CONFIG

if TYPE_CHECKING:
    from .grid import Grid, RasterInfo

BLOCK = 256  # GeoTIFF block side; also the composites' strip height (whole blocks per strip)
Nodata = Union[float, int, None]
W = TypeVar("W")  # an output writer (AtomicGeoTIFF or vectors.VectorWriter)


def natural_nodata(dtype: str) -> float | int:
    """The nodata value used when the reference has none: 0 for unsigned, the minimum for
    signed integers, NaN for floats."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return float("nan")
    if dt.kind == "u":
        return 0
    return int(np.iinfo(dt).min)


@dataclass(frozen=True)
class OutputFormat:
    """How the fused output marks "no input is valid here" (``output_format`` decides).

    ``nodata`` is the value declared in the file (None: none declared); ``fill`` the value
    written into such pixels either way; ``mask``: an internal per-dataset mask (GDAL's
    ``GDAL_TIFF_INTERNAL_MASK``, 0 = no data) marks them instead of a nodata value."""

    source: RasterInfo  # the input whose radiometry, band names and colour tags the output keeps
    dtype: str
    nodata: float | int | None
    fill: float | int
    mask: bool
    why: str = ""  # why a mask is written instead of a nodata value (for ``info`` and logs)

    @property
    def text(self) -> str:
        """What ``info`` prints: what marks the pixels where no input is valid."""
        if not self.mask:
            return f"nodata {self._shown(self.nodata)} where no input is valid"
        return (f"an internal mask where no input is valid (no nodata value; pixels there "
                f"hold {self._shown(self.fill)}), because {self.why}")

    def _shown(self, value: float | int | None) -> str:
        """0, not 0.0, for integer outputs (rasterio reads every nodata as a float)."""
        if value is not None and np.dtype(self.dtype).kind in "iu":
            return str(int(value))
        return str(value)


def _same_value(a: float | int | None, b: float | int) -> bool:
    if a is None:
        return False
    if isinstance(b, float) and math.isnan(b):
        return isinstance(a, float) and math.isnan(a)
    return bool(a == b)


def never_valid(value: float | int, inputs: Sequence[RasterInfo], dtype: str) -> str | None:
    """None when no valid output pixel can take ``value``, else why one can.

    Every method writes, per pixel, one valid input value or a convex combination of valid
    input values (weighted means, the median's middle pair, bilinear warping), rounded to the
    dtype. NaN is never valid. Any other value is safe only when every input declares it as
    nodata (so no valid input value equals it) and it is the dtype's lowest or highest value
    (so no combination of other values rounds to it): 0 or 255 in uint8 inputs that all say
    nodata 0, say; not -9999 in int16 (the mean of -9998 and -10000 is -9999)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    dt = np.dtype(dtype)
    shown = str(int(value)) if dt.kind in "iu" else str(value)
    undeclared = [i for i in inputs if not _same_value(i.nodata, value)]
    if undeclared:
        i = undeclared[0]
        said = "declares no nodata value" if i.nodata is None else f"declares nodata {i.nodata}"
        return f"{i.path.name} {said}, so {shown} may be a valid value there"
    lo, hi = ((np.iinfo(dt).min, np.iinfo(dt).max) if dt.kind in "iu"
              else (-np.finfo(dt).max, np.finfo(dt).max))
    if lo < value < hi:
        return (f"{shown} lies inside the {dtype} range, so a mean of valid values may "
                "equal it")
    return None


def output_format(inputs: Sequence[RasterInfo], reference: RasterInfo) -> OutputFormat:
    """The one rule for the output's nodata or mask; ``fuse`` and ``info`` both ask here.

    The output keeps the radiometry of the reference when it is one of the inputs, else of the
    first input. Its candidate nodata is that input's nodata value, else 0 for unsigned, the
    minimum for signed integers, NaN for floats. The candidate is declared as nodata only when
    no valid output pixel can take it (``never_valid``); otherwise no nodata value is declared
    and an internal mask marks where no input is valid, so a valid value (a black roof, a
    saturated 65535) is never read as nodata. The pixels under the mask still hold the
    candidate, so the values are those of a nodata output."""
    source = next((i for i in inputs if i.path == reference.path), inputs[0])
    fill = source.nodata if source.nodata is not None else natural_nodata(source.dtype)
    why = never_valid(fill, inputs, source.dtype)
    if why is None:
        return OutputFormat(source, source.dtype, fill, fill, False)
    return OutputFormat(source, source.dtype, None, fill, True, why)


def gdal_cache(width: int, bytes_per_pixel: int, inputs: Sequence[RasterInfo] = (),
               tiles: bool = False, grid: Grid | None = None) -> rasterio.Env:
    """GDAL settings for one run (or one chunk of it): the block cache (default: 5 % of RAM,
    filled as the raster streams through) bounded to what one strip of ``width`` px needs, all
    cores for (de)compression, and the remote-read options when an input may be remote.

    Outputs are written in whole blocks, so GDAL never keeps a partial output block. Network
    strips (``tiles``) are read in whole block rows, each decoded once (strips.BlockRows), so
    the cache keeps a block row only of the inputs warped onto ``grid`` (their source blocks
    are shared by neighbouring output blocks; all inputs when no grid is given); composites
    need nothing beyond what a read decodes at once."""
    read = sum(i.count * np.dtype(i.dtype).itemsize + 1 for i in inputs
               if grid is None or not grid.same_as(i)) if tiles else 0
    need = BLOCK * width * (bytes_per_pixel + read) + 8 * 2**20
    remote = REMOTE_CONFIG if any(i.allow_remote for i in inputs) else {}
    return rasterio.Env(GDAL_CACHEMAX=int(need), GDAL_NUM_THREADS="ALL_CPUS", **remote)


def base_profile(grid: Grid, count: int, dtype: str, nodata: Nodata,
                 predictor: bool = True) -> dict[str, Any]:
    """Tiled 256×256, DEFLATE (+ horizontal/float predictor), BigTIFF when needed."""
    kind = np.dtype(dtype).kind
    profile = {
        "driver": "GTiff", "width": grid.width, "height": grid.height, "count": count,
        "dtype": dtype, "crs": grid.crs, "transform": grid.transform, "nodata": nodata,
        "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate",
        "BIGTIFF": "IF_SAFER", "interleave": "pixel" if count <= 4 else "band",
        "num_threads": "ALL_CPUS",  # DEFLATE on every core
    }
    if predictor:
        profile["predictor"] = 3 if kind == "f" else 2
    return profile


def check_outputs(outputs: Sequence[Path], inputs: Sequence[Path], overwrite: bool) -> None:
    """Refuse an output that is an input, repeats another output, exists (without overwrite), or
    whose folder is missing; before any pixel is read."""
    seen: dict[Path, Path] = {}
    ins = {Path(os.path.realpath(p)): p for p in inputs}
    for out in outputs:
        real = Path(os.path.realpath(out))
        if real in ins or any(_same_file(out, p) for p in inputs):
            raise OutputError(f"output would overwrite input {ins.get(real, out)}", path=out)
        if real in seen:
            raise OutputError("the same path is given for two outputs", path=out)
        seen[real] = out
        try:
            mode = os.stat(out).st_mode
        except OSError:
            mode = None
        if mode is not None and stat.S_ISDIR(mode):
            raise OutputError("is a directory", path=out)
        if mode is not None and not stat.S_ISREG(mode):
            # Replacing a device node or FIFO with a file would break what uses it.
            raise OutputError(f"is {file_kind(mode)}, not a regular file; outputs are written "
                              "as new files only", path=out)
        if mode is not None and not overwrite:
            raise OutputError("already exists", path=out, hint=OVERWRITE_HINT)
        if mode is None and os.path.islink(out) and not overwrite:
            # A dangling link still takes the name: publishing never replaces it unasked, so
            # say it now rather than after the whole run.
            raise OutputError(f"already exists as a symbolic link to a missing file "
                              f"({os.readlink(out)})", path=out, hint=OVERWRITE_HINT)
        if not out.parent.is_dir():
            raise OutputError(f"folder {out.parent} does not exist", path=out)
        if not os.access(out.parent, os.W_OK):
            raise OutputError(f"folder {out.parent} is not writable", path=out)
    from .parts import remove_stale_parts  # parts.py imports this module

    for folder in {p.parent for p in outputs}:
        remove_stale(folder)  # left by runs killed outright (SIGKILL, power loss)
        remove_stale_parts(folder)


def output_path(path: str | os.PathLike) -> Path:
    """An output name as a Path; refused when it ends with a separator (``out.tif/``): the
    user meant a folder, and ``Path`` would silently drop the slash and write a file."""
    text = os.fspath(path)
    if text.endswith(os.sep) or (os.altsep and text.endswith(os.altsep)):
        raise OutputError("names a folder (it ends with a path separator), not a file; "
                          "give the output file's name", path=text.rstrip("/" + os.sep))
    return Path(text)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class AtomicGeoTIFF:
    """One output raster written through a temp file; ``OutputSet.commit`` publishes it.

    ``append`` takes rows in order and writes whole blocks only, so every GeoTIFF block is
    written once, complete (no partial block waits in GDAL's cache or is re-read). Every GDAL
    call is checked: an exception, or a storage failure GDAL only reported to its error handler
    (recorded by the ``OutputSet``), becomes one OutputError naming the target and the cause."""

    def __init__(self, target: str | os.PathLike, profile: dict[str, Any], cog: bool = False,
                 overview_resampling: str = "average", mask: bool = False) -> None:
        self.target = Path(target)
        self.cog = cog
        # Write an internal per-dataset mask (0: no data) from the ``valid`` rows ``append``
        # is given: the output rule (``output_format``) chose it over a nodata value.
        self.mask = mask
        self._pending_mask: list[np.ndarray] = []
        self.overview_resampling = overview_resampling
        self.profile = profile
        self._pending: list[np.ndarray] = []  # appended rows not yet written (< one block)
        self._next_row = 0  # raster row where the pending rows start
        self.tmp = temp_path(self.target, "tmp")
        self.cog_tmp = temp_path(self.target, "cog")
        self.siblings: list[AtomicGeoTIFF] = [self]  # the run's outputs (for space estimates)
        self.verify_full = False
        self.dataset: Any = None
        self._rec = gdal_errors.current()
        self._mark = self._rec.mark() if self._rec else 0
        try:
            self._guard(lambda: setattr(self, "dataset", rasterio.open(self.tmp, "w", **profile)),
                        "cannot be created")
        except BaseException:
            self._remove()
            raise

    @property
    def staged(self) -> Path:
        """The finished file that publishing moves onto the target."""
        return self.cog_tmp if self.cog else self.tmp

    @property
    def raw_bytes(self) -> int:
        """Uncompressed size; with a COG the plain copy and the COG (with overviews) coexist."""
        p = self.profile
        n = p["width"] * p["height"] * p["count"] * np.dtype(p["dtype"]).itemsize
        return int(n * (2.4 if self.cog else 1.0))

    def temp_files(self) -> list[Path]:
        """This output's temporary files that exist now (for the space estimate)."""
        return [p for p in (self.tmp, self.cog_tmp) if p.exists()]

    def _guard(self, step: Any, what: str = "writing failed") -> None:
        """Run one GDAL step; raise one line if it raised or GDAL reported a storage failure."""
        try:
            step()
        except OutputError:
            raise
        except Exception as exc:  # rasterio raises several types, OSError included
            raise self._failure(exc, what) from None
        if self._rec is not None:
            bad = storage_failures(self._rec.messages[self._mark:])
            if bad:
                raise self._failure(None, what)

    def _failure(self, exc: BaseException | None, what: str) -> OutputError:
        texts = [m.text for m in self._rec.failures_since(self._mark)] if self._rec else []
        same_disk = [w for w in self.siblings if w.target.parent == self.target.parent]
        temps = [p for w in same_disk for p in w.temp_files()]
        return write_failure(self.target, texts, sum(w.raw_bytes for w in same_disk), exc, what,
                             sum(p.stat().st_size for p in temps))

    def write(self, array: np.ndarray, row: int, valid: np.ndarray | None = None) -> None:
        """Write rows ``row .. row+h`` across the full width (array (count, h, width)); with a
        mask, ``valid`` (h, width) bool goes into it."""
        h = array.shape[-2]
        win = Window(0, row, self.profile["width"], h)
        self._guard(lambda: self.dataset.write(array, window=win))
        if self.mask:
            if valid is None:
                raise ValueError("this output has a mask: rows need their validity")
            with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):  # in the file, not a .msk
                self._guard(lambda: self.dataset.write_mask(
                    np.where(valid, np.uint8(255), np.uint8(0)), window=win))

    def append(self, rows: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Queue the next rows (count, h, width) (and their validity (h, width) for a mask);
        write as many whole blocks as are complete."""
        self._pending.append(rows)
        if self.mask:
            if valid is None:
                raise ValueError("this output has a mask: rows need their validity")
            self._pending_mask.append(valid)
        self._write_pending((sum(p.shape[1] for p in self._pending) // BLOCK) * BLOCK)

    def _write_pending(self, take: int) -> None:
        if take == 0:
            return
        rows = np.concatenate(self._pending, axis=1) if len(self._pending) > 1 \
            else self._pending[0]
        valid = None
        if self.mask:
            valid = np.concatenate(self._pending_mask, axis=0) \
                if len(self._pending_mask) > 1 else self._pending_mask[0]
            self._pending_mask = [valid[take:]] if take < valid.shape[0] else []
            valid = valid[:take]
        self.write(rows[:, :take], self._next_row, valid)
        self._next_row += take
        self._pending = [rows[:, take:]] if take < rows.shape[1] else []

    def finish(self) -> None:
        """Write the last partial block, close and sync the temp file (and make its COG copy),
        then check that what is on disk is whole; the target is still untouched."""
        self._write_pending(sum(p.shape[1] for p in self._pending))
        self._guard(self.dataset.close)
        self._guard(lambda: fsync_file(self.tmp))
        if self.cog:
            self._guard(self._to_cog, "Cloud-Optimized GeoTIFF conversion failed")
            self._guard(lambda: fsync_file(self.cog_tmp))
            self._unlink(self.tmp)
        problem = verify_geotiff(self.staged, self.profile, full=self.verify_full)
        if problem is not None:
            raise self._failure(None, f"the written file is damaged ({problem})")

    def _to_cog(self) -> None:
        from rasterio.shutil import copy

        kind = np.dtype(self.profile["dtype"]).kind
        opts = {"COMPRESS": "DEFLATE", "BLOCKSIZE": BLOCK, "BIGTIFF": "IF_SAFER",
                "NUM_THREADS": "ALL_CPUS",
                "RESAMPLING": self.overview_resampling.upper(), "OVERVIEWS": "IF_NEEDED"}
        if "predictor" in self.profile:
            opts["PREDICTOR"] = "FLOATING_POINT" if kind == "f" else "YES"
        copy(str(self.tmp), str(self.cog_tmp), driver="COG", **opts)

    def abort(self) -> None:
        if self.dataset is not None:
            with suppress(Exception):
                self.dataset.close()
        self._remove()

    def _remove(self) -> None:
        for p in (self.tmp, self.cog_tmp):
            self._unlink(p)

    @staticmethod
    def _unlink(p: Path) -> None:
        for f in (p, Path(f"{p}.aux.xml")):
            with suppress(FileNotFoundError):
                f.unlink()


class OutputSet:
    """All outputs of one run, published together (publish.publish_all): on any exception (a
    Cancelled included) every temp file is removed and no target is touched. While open, GDAL's
    messages are recorded (not printed) so that the writers can check them."""

    def __init__(self, overwrite: bool = False, verify: bool = False) -> None:
        # AtomicGeoTIFFs, and a vectors.VectorWriter (the same staged/finish/abort interface)
        self.items: list[Any] = []
        self.overwrite = overwrite
        self.verify = verify
        self._capture: Any = None

    def add(self, writer: W) -> W:
        self.items.append(writer)
        w: Any = writer
        w.siblings = self.items
        w.verify_full = self.verify
        return writer

    def commit(self, before_publish: Callable[[], None] | None = None) -> None:
        """Close, convert and check every file first, then move them all: a failure in the slow
        part leaves every target untouched. ``before_publish`` may still raise (a cancel that
        arrived during a long COG conversion) and nothing is published."""
        for w in self.items:
            w.finish()
            if before_publish is not None:
                before_publish()
        publish_all([(w.staged, w.target) for w in self.items], self.overwrite)
        for w in self.items:
            w._remove()

    def __enter__(self) -> OutputSet:
        self._capture = gdal_errors.capture()
        self._capture.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is not None:
                for w in self.items:
                    w.abort()
        finally:
            self._capture.__exit__(exc_type, exc, tb)


def open_fused(target: Path, grid: Grid, count: int, dtype: str, nodata: Nodata, cog: bool,
               descriptions: Sequence[str | None] = (), tags: dict[str, str] | None = None,
               rgb: bool = False, mask: bool = False) -> AtomicGeoTIFF:
    """The fused output; ``mask``: an internal mask instead of ``nodata`` (output_format)."""
    profile = base_profile(grid, count, dtype, nodata)
    # Say it explicitly: GDAL would otherwise call the 4th band of a 4-band byte image alpha
    # (a NIR band is not transparency). RGB inputs give red/green/blue bands 1-3 and leave any
    # further band (NIR) undefined, as in the inputs.
    profile["photometric"] = "RGB" if rgb and count >= 3 else "MINISBLACK"
    w = AtomicGeoTIFF(target, profile, cog=cog, overview_resampling="average", mask=mask)
    for i, d in enumerate(descriptions, start=1):
        if d and i <= count:
            w.dataset.set_band_description(i, d)
    if tags:
        w.dataset.update_tags(**tags)
    return w


def write_colormap(dataset: Any, colours: Sequence[Sequence[int]] = CLASS_COLOURS) -> None:
    """Palette for the class map: one colour per class, transparent for nodata (255)."""
    cmap = {i: tuple(int(v) for v in c[:3]) + (255,) for i, c in enumerate(colours)}
    cmap[SEGMENTATION_NODATA] = (0, 0, 0, 0)
    dataset.write_colormap(1, cmap)


def open_segmentation(target: Path, grid: Grid, cog: bool,
                      class_names: Sequence[str] = CLASS_NAMES,
                      class_colours: Sequence[Sequence[int]] = CLASS_COLOURS,
                      tags: dict[str, str] | None = None) -> AtomicGeoTIFF:
    profile = base_profile(grid, 1, "uint8", SEGMENTATION_NODATA, predictor=False)
    w = AtomicGeoTIFF(target, profile, cog=cog, overview_resampling="nearest")
    ds = w.dataset
    write_colormap(ds, class_colours)
    legend = ", ".join(f"{i}={n}" for i, n in enumerate(class_names))
    ds.set_band_description(1, f"class ({legend}; {SEGMENTATION_NODATA}=nodata)")
    ds.update_tags(CLASS_NAMES=",".join(class_names),
                   CLASS_COLOURS=json.dumps([list(c)[:3] for c in class_colours]),
                   SEGMENTATION_NODATA=str(SEGMENTATION_NODATA), **(tags or {}))
    ds.update_tags(1, **{f"CLASS_{i}": n for i, n in enumerate(class_names)})
    return w


def open_quality(target: Path, grid: Grid, inputs: Sequence[Path], cog: bool,
                 tags: dict[str, str] | None = None) -> AtomicGeoTIFF:
    profile = base_profile(grid, len(inputs), "float32", math.nan)
    w = AtomicGeoTIFF(target, profile, cog=cog, overview_resampling="average")
    for i, p in enumerate(inputs, start=1):
        w.dataset.set_band_description(i, f"weight of {Path(p).name}")
        w.dataset.update_tags(i, INPUT=shown(p))  # a URL as given, not Path-folded
    w.dataset.update_tags(**(tags or {}))
    return w


INDEX_NODATA = 0  # the input-index output: 1..K name an input, 0 none (no input valid)


def index_colours(k: int) -> dict[int, tuple[int, int, int, int]]:
    """A palette for the input index: K well-separated hues (golden-angle steps, so neighbouring
    numbers differ), 0 transparent. GIS software then shows the index as categories."""
    import colorsys

    cmap = {INDEX_NODATA: (0, 0, 0, 0)}
    for i in range(1, k + 1):
        r, g, b = colorsys.hsv_to_rgb(((i - 1) * 0.381966) % 1.0, 0.75, 0.95)
        cmap[i] = (int(r * 255), int(g * 255), int(b * 255), 255)
    return cmap


def open_index(target: Path, grid: Grid, inputs: Sequence[Path], cog: bool,
               tags: dict[str, str] | None = None) -> AtomicGeoTIFF:
    """The best-pixel selection's input index: one band, value = the 1-based number of the input
    each output pixel was copied from (0 = nodata: no input valid), uint8 up to 254 inputs, else
    uint16. The inputs' file names are in the tags, as a JSON list in input order
    (``WSFUSION_INDEX_INPUTS``) and one per value (band tags ``INPUT_<n>``), and a palette
    colours each input. GeoTIFF keeps category names and attribute tables only in a ``.aux.xml``
    sidecar, outside the outputs published together, so they are not written; the QGIS
    algorithm labels the classes from these tags."""
    from .options import index_dtype

    dtype = index_dtype(len(inputs))
    profile = base_profile(grid, 1, dtype, INDEX_NODATA, predictor=False)
    w = AtomicGeoTIFF(target, profile, cog=cog, overview_resampling="nearest")
    ds = w.dataset
    ds.set_band_description(1, "input index")
    names = [Path(p).name for p in inputs]
    ds.update_tags(WSFUSION_INDEX_INPUTS=json.dumps(names),
                   WSFUSION_INDEX_NODATA=str(INDEX_NODATA), **(tags or {}))
    ds.update_tags(1, **{f"INPUT_{i}": n for i, n in enumerate(names, start=1)})
    ds.write_colormap(1, index_colours(len(inputs)))
    return w
