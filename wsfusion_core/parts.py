"""Finished chunk outputs ("parts") in a hidden folder beside the target, and their assembly.

Each chunk task writes one tiled, compressed GeoTIFF per output (fused, segmentation, quality,
input index)
through a temp name and renames it into place, so a part that exists is complete. The client
mosaics the parts with a VRT per output and copies that, block row by block row, into the
outputs a local run would open (same profile, tags, colour table), then publishes them
together. A manifest holding the run's fingerprint lets ``resume`` reuse parts only from the
same run. Workers exchange no pixels and no file is written by two tasks, so no lock is needed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from xml.sax.saxutils import escape

import numpy as np
import rasterio
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from .blend import FinishedRows
from .chunks import Chunk, Region
from .errors import shown
from .grid import Grid
from .publish import HOST, PROGRAM, pid_alive
from .remote import is_remote_name
from .writers import BLOCK, base_profile

MANIFEST = "manifest.json"
# Decode the next block row of the parts while the output compresses this one (copy_into);
# False: one after the other (the bench compares both).
READ_AHEAD = True
SMALL_FILE = 1 << 20  # bytes: fingerprinted by content
_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16",
               "uint32": "UInt32", "int32": "Int32", "uint64": "UInt64", "int64": "Int64",
               "float32": "Float32", "float64": "Float64"}


def parts_folder(target: str | os.PathLike) -> Path:
    """The hidden folder beside ``target`` that holds the parts of one run."""
    t = Path(target)
    return t.with_name(f".{t.name}.parts")


@dataclass(frozen=True)
class Layer:
    """One output as its parts store it."""

    kind: str  # "fused" | "segmentation" | "quality" | "index"
    count: int
    dtype: str
    nodata: float | int | None
    predictor: bool = True
    # The output has a mask (writers.output_format): the part stores the validity as one more
    # band (0/1) after the image bands, so the mosaic carries it to the writer.
    mask: bool = False
    fill: float | int | None = None  # written where no input is valid (default: nodata)

    @property
    def stored_count(self) -> int:
        return self.count + (1 if self.mask else 0)

    @property
    def fill_value(self) -> float | int | None:
        return self.fill if self.fill is not None else self.nodata


# A part's temporary (PartWriters): ``.<kind>_<chunk>.<12 hex>.tmp.tif``.
_PART_TEMP = re.compile(r"^\.(fused|segmentation|quality)_r\d+_c\d+\.[0-9a-f]{12}\.tmp\.tif$")


def part_path(folder: str | os.PathLike, kind: str, chunk: Chunk) -> Path:
    return Path(folder) / f"{kind}_{chunk.name}.tif"


def chunk_done(folder: str | os.PathLike, layers: Sequence[Layer], chunk: Chunk) -> bool:
    return all(part_path(folder, lay.kind, chunk).is_file() for lay in layers)


def fingerprint(settings: dict[str, Any], files: Sequence[str | os.PathLike]) -> str:
    """What makes parts reusable: the run's settings and each file's size and mtime (the
    content of small files such as VRTs, which a STAC run writes anew each time)."""
    stamp: list[Any] = []
    for f in files:
        if is_remote_name(str(f)):  # remote: its name is all we can afford to check
            stamp.append(shown(f))
            continue
        st = os.stat(f)
        if st.st_size <= SMALL_FILE:
            stamp.append([str(Path(f).resolve()), hashlib.sha256(Path(f).read_bytes()).hexdigest()])
        else:
            stamp.append([str(Path(f).resolve()), st.st_size, st.st_mtime_ns])
    text = json.dumps({"settings": settings, "files": stamp}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def prepare_folder(folder: Path, stamp: str, resume: bool) -> bool:
    """Make the parts folder for a run with fingerprint ``stamp``. With ``resume`` the parts
    of a run with the same fingerprint are kept (returns True); anything else there is stale
    and removed first."""
    manifest = folder / MANIFEST
    if resume and manifest.is_file():
        with suppress(OSError, ValueError):
            if json.loads(manifest.read_text()).get("fingerprint") == stamp:
                return True
    remove_folder(folder)
    folder.mkdir()
    tmp = folder / f".{MANIFEST}.tmp"
    # Who owns the folder: a run killed outright (SIGKILL) cannot remove it; the next run
    # writing to this folder does (remove_stale_parts) once that process is gone.
    tmp.write_text(json.dumps({"fingerprint": stamp, "program": PROGRAM, "pid": os.getpid(),
                               "host": HOST, "resume": bool(resume)}) + "\n")
    os.replace(tmp, manifest)
    return False


def remove_stale_parts(folder: str | os.PathLike) -> list[Path]:
    """Clean up after chunked runs of this host killed outright: a parts folder (``.NAME.parts``
    holding our manifest) whose run is gone is removed whole, unless that run asked to be
    resumable: then only its half-written part temporaries go, the finished parts stay for
    ``resume``. Folders without our manifest (a user's) and other hosts' runs are left alone.
    Returns what was removed."""
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(".") and name.endswith(".parts")):
            continue
        path = Path(folder) / name
        try:
            if path.is_symlink() or not path.is_dir():
                continue
            owner = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(owner, dict) or owner.get("program") != PROGRAM \
                or owner.get("host") != HOST or not isinstance(owner.get("pid"), int) \
                or pid_alive(owner["pid"]):
            continue
        if not owner.get("resume"):
            with suppress(OSError):
                shutil.rmtree(path)
                removed.append(path)
            continue
        for part in path.iterdir():
            if _PART_TEMP.match(part.name) or part.name == f".{MANIFEST}.tmp":
                with suppress(OSError):
                    part.unlink()
                    removed.append(part)
    return removed


def remove_folder(folder: Path) -> None:
    if folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder)
    elif folder.exists() or folder.is_symlink():
        folder.unlink()


class PartWriters:
    """The parts of one chunk. ``sink`` takes the finished rows the strip buffer hands back
    (region coordinates, full region width) and writes the chunk's own pixels of them."""

    def __init__(self, folder: str | os.PathLike, layers: Sequence[Layer], region: Region,
                 grid: Grid) -> None:
        c = region.chunk
        self.region, self.folder = region, Path(folder)
        win = Window(c.x0, c.y0, c.width, c.height)
        sub = Grid(grid.crs, window_transform(win, grid.transform), c.width, c.height)
        token = uuid.uuid4().hex[:12]  # a retried task on another worker writes its own temps
        self.items: dict[str, tuple[Any, Path, Path, bool]] = {}
        try:
            for lay in layers:
                final = part_path(folder, lay.kind, c)
                tmp = final.with_name(f".{final.stem}.{token}.tmp.tif")
                prof = base_profile(sub, lay.stored_count, lay.dtype, lay.nodata, lay.predictor)
                self.items[lay.kind] = (rasterio.open(tmp, "w", **prof), tmp, final, lay.mask)
        except Exception:
            self.abort()
            raise

    def sink(self, rows: FinishedRows) -> None:
        reg = self.region
        c = reg.chunk
        y_a = reg.y + rows.y
        y_b = y_a + rows.fused.shape[-2]
        lo, hi = max(y_a, c.y0), min(y_b, c.y1)
        if hi <= lo:
            return
        xs = slice(c.x0 - reg.x, c.x1 - reg.x)
        for kind, array in (("fused", rows.fused), ("segmentation", rows.classes),
                            ("quality", rows.quality), ("index", rows.index)):
            if kind in self.items and array is not None:
                ds, _tmp, _final, mask = self.items[kind]
                win = Window(0, lo - c.y0, c.width, hi - lo)
                ds.write(array[:, lo - y_a:hi - y_a, xs], window=win,
                         indexes=list(range(1, array.shape[0] + 1)))
                if mask:
                    assert rows.valid is not None, "a masked output needs the rows' validity"
                    ds.write(rows.valid[lo - y_a:hi - y_a, xs].astype(ds.dtypes[0]),
                             ds.count, window=win)

    def publish(self) -> None:
        """Close every part, then rename them into place (a chunk is done once all exist)."""
        for ds, _tmp, _final, _mask in self.items.values():
            ds.close()
        for _ds, tmp, final, _mask in self.items.values():
            os.replace(tmp, final)

    def abort(self) -> None:
        for ds, tmp, _final, _mask in self.items.values():
            with suppress(Exception):
                ds.close()
            with suppress(FileNotFoundError):
                tmp.unlink()


def write_vrt(path: Path, grid: Grid, layer: Layer, chunks: Sequence[Chunk]) -> Path:
    """A VRT mosaic of the parts of one output (sources relative to the VRT)."""
    nd = layer.nodata
    nd_text = "" if nd is None else (
        f"    <NoDataValue>{'nan' if isinstance(nd, float) and math.isnan(nd) else nd}"
        "</NoDataValue>\n")
    t = grid.transform
    head = [f'<VRTDataset rasterXSize="{grid.width}" rasterYSize="{grid.height}">']
    if grid.crs is not None:
        head.append(f"  <SRS>{escape(grid.crs.to_wkt())}</SRS>")
    head.append(f"  <GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}"
                "</GeoTransform>")
    body = []
    for b in range(1, layer.stored_count + 1):
        body.append(f'  <VRTRasterBand dataType="{_GDAL_TYPES[layer.dtype]}" band="{b}">')
        body.append(nd_text.rstrip("\n")) if nd_text else None
        for c in chunks:
            body.append(
                "    <SimpleSource>\n"
                f'      <SourceFilename relativeToVRT="1">{part_path("", layer.kind, c)}'
                "</SourceFilename>\n"
                f"      <SourceBand>{b}</SourceBand>\n"
                f'      <SrcRect xOff="0" yOff="0" xSize="{c.width}" ySize="{c.height}"/>\n'
                f'      <DstRect xOff="{c.x0}" yOff="{c.y0}" xSize="{c.width}" '
                f'ySize="{c.height}"/>\n'
                "    </SimpleSource>")
        body.append("  </VRTRasterBand>")
    path.write_text("\n".join(head + [line for line in body if line] + ["</VRTDataset>"]) + "\n")
    return path


def copy_into(vrt: Path, writer: Any, height: int, mask: bool = False) -> None:
    """Stream the mosaic into an output writer, block row by block row (full width); with
    ``mask`` its last band is the validity the writer's mask is made of.

    Compressing the output costs about 2.5x decoding the parts (bench/bench_distributed.py),
    and both release the GIL: with ``READ_AHEAD`` a thread decodes the next block row while
    this one is compressed. The rows and their order are the same either way, so is the file.
    """
    with rasterio.open(vrt) as src:
        def read(y: int) -> np.ndarray:
            return src.read(window=Window(0, y, src.width, min(BLOCK, height - y)))

        def append(rows: np.ndarray) -> None:
            if mask:
                writer.append(rows[:-1], rows[-1] != 0)
            else:
                writer.append(rows)

        if not READ_AHEAD:
            for y in range(0, height, BLOCK):
                append(read(y))
            return
        with ThreadPoolExecutor(1, thread_name_prefix="wsfusion-assembly") as pool:
            ahead = pool.submit(read, 0)
            for y in range(0, height, BLOCK):
                rows = ahead.result()
                if y + BLOCK < height:
                    ahead = pool.submit(read, y + BLOCK)
                append(rows)
