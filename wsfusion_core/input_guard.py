"""Opening rasters that came from someone else: only regular local files, only the raster formats
a GIS user brings, no VRT that reads arbitrary files, and only data types the engine computes in.

GDAL opens whatever it recognises: a FIFO blocks ``open`` forever, a device node streams
endlessly, a VRT named ``.tif`` can pull raw bytes from any local file (``VRTRawRasterBand``) or a
URL into the output. So the file is ``stat``-ed before GDAL sees it, a VRT's XML is checked
before GDAL parses it, and GDAL is asked to try only the allowed drivers. Remote inputs (and
remote VRT sources) are read only when the caller allows their host or bucket (remote.py).
"""

from __future__ import annotations

import os
import stat
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .errors import InputError, first_line
from .remote import REMOTE_OPEN_CONFIG, Remote, check_remote, parse_remote
from .tile_index import GTI_MIN_GDAL, SQLITE_MAGIC, gti_available, index_locations

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

# GDAL short names; a name this GDAL build lacks is ignored. COG files open as GTiff. GTI: a
# GeoPackage tile index (GDAL >= 3.9), its locations checked like a VRT's sources.
ALLOWED_DRIVERS = ("GTiff", "VRT", "GTI", "JP2OpenJPEG", "JP2KAK", "JP2ECW", "JPEG", "PNG", "WEBP",
                   "HFA", "ENVI", "EHdr", "ERS", "GPKG", "NITF", "PCIDSK", "SAGA", "RST",
                   "AAIGrid", "GSBG", "ISIS3", "PDS4")
# A remote file is read by one driver that reads only itself: a remote VRT (or tile index)
# could name local files or other hosts, and its XML cannot be checked before GDAL fetches it;
# so could the headers of ERS, ISIS3, PDS4, HFA or ENVI (they name data files), so a remote
# input is one of the single-file image formats.
REMOTE_DRIVERS = ("GTiff", "JP2OpenJPEG", "JP2KAK", "JP2ECW", "JPEG", "PNG", "WEBP")
REMOTE_FORMATS_TEXT = "GeoTIFF/COG, JPEG2000, JPEG, PNG, WebP"
FORMATS_TEXT = ("GeoTIFF/COG, VRT, GeoPackage tile index (GTI), JPEG2000, JPEG, PNG, WebP, "
                "Erdas IMG, ENVI, GeoPackage, NITF")
# Config options in force while an input is opened.
SAFE_CONFIG = {"GDAL_VRT_ENABLE_RAWRASTERBAND": "NO", "GDAL_VRT_ENABLE_PYTHON": "NO"}
# What the engine blends in (float64 for 32-bit integers); 64-bit integers would lose precision.
SUPPORTED_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
GDAL_TYPE_NAMES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16",
                   "uint32": "UInt32", "int32": "Int32", "float32": "Float32",
                   "float64": "Float64"}
MAX_VRT_BYTES = 16 * 2**20
MAX_VRT_DEPTH = 4

_PROBED: set[str] = set()  # remote rasters this process found to be plain rasters
_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """'a named pipe (FIFO)', 'a directory', ... for a non-regular ``st_mode``."""
    if stat.S_ISDIR(mode):
        return "a directory"
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


def check_regular(path: str | os.PathLike) -> Path:
    """The file exists, is readable and is a regular file (symlinks followed); before any open,
    so a FIFO cannot block us."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError("file not found", path=p) from None
    except OSError as exc:
        raise InputError(f"cannot be read ({(exc.strerror or str(exc)).lower()})",
                         path=p) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError("is a directory, not a raster", path=p)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"is {file_kind(st.st_mode)}, not a regular file; only raster files "
                         "are read", path=p)
    return p


def check_container(path: Path, depth: int = 0, allow_remote: Sequence[str] = ()
                    ) -> str | None:
    """A local file that names other files has each name checked before GDAL sees it: a VRT's
    sources, a GeoPackage tile index's locations (nested ones too). Tile indexes in other
    forms (XML, FlatGeobuf, Parquet) are refused. Returns "vrt", "gti" or None (neither)."""
    with open(path, "rb") as f:
        raw = f.read(256)
    head = raw.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<VRTDataset"):
        check_vrt(path, depth, allow_remote)
        return "vrt"
    if head.startswith(b"<GDALTileIndexDataset") or raw.startswith((b"fgb\x03", b"PAR1")):
        raise InputError("tile index (GTI) in XML, FlatGeobuf or Parquet form; only GeoPackage "
                         "tile indexes (.gti.gpkg) are checked and read", path=path)
    if raw.startswith(SQLITE_MAGIC):
        _deeper(path, depth, "tile indexes")
        for name in index_locations(path):
            _check_named(path, name, True, depth, allow_remote, "tile index location")
        return "gti"
    return None


def _deeper(path: Path, depth: int, what: str) -> None:
    if depth >= MAX_VRT_DEPTH:
        raise InputError(f"VRTs or {what} nested more than {MAX_VRT_DEPTH} deep; refused",
                         path=path)


def check_vrt(path: Path, depth: int = 0, allow_remote: Sequence[str] = ()) -> None:
    """Refuse a VRT (whatever its name) with raw bands, Python pixel functions, or sources that
    are neither regular local files nor allowed remote rasters; nested ones are checked too."""
    with open(path, "rb") as f:
        head = f.read(256).lstrip(b"\xef\xbb\xbf \t\r\n")
        if not head.startswith(b"<VRTDataset"):
            return
        f.seek(0)
        text = f.read(MAX_VRT_BYTES + 1)
    if len(text) > MAX_VRT_BYTES:
        raise InputError(f"VRT larger than {MAX_VRT_BYTES // 2**20} MB; refused", path=path)
    _deeper(path, depth, "tile indexes")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InputError(f"not a valid VRT ({exc})", path=path) from None
    for el in root.iter():
        if el.tag == "VRTRasterBand" and el.get("subClass") == "VRTRawRasterBand":
            raise InputError("VRT with a raw raster band (VRTRawRasterBand), which can read "
                             "any local file; refused", path=path)
        if el.tag == "PixelFunctionLanguage" and (el.text or "").strip().lower() == "python":
            raise InputError("VRT with a Python pixel function; refused", path=path)
        if el.tag == "SourceFilename":
            _check_named(path, (el.text or "").strip(), el.get("relativeToVRT") == "1", depth,
                         allow_remote, "VRT source")


def _check_named(container: Path, name: str, relative: bool, depth: int,
                 allow_remote: Sequence[str], what: str) -> None:
    """One file a VRT or tile index names: a regular local file (relative to the container when
    ``relative`` and not absolute) or an allowed remote plain raster, checked in turn."""
    try:
        remote = parse_remote(name)
    except InputError as exc:
        raise InputError(f"{what} refused: {exc}", path=container) from None
    if remote is not None:
        check_remote(remote, allow_remote, f"{what} {remote.given} is remote and",
                     path=container)
        # GDAL opens these with any driver: make sure this one is a plain raster (no remote
        # VRT or tile index naming further files) before the container is opened.
        if remote.gdal not in _PROBED:
            try:
                open_remote(remote).close()
            except InputError as exc:
                raise InputError(f"{what} refused: {exc}", path=container) from None
            _PROBED.add(remote.gdal)
        return
    if not name or name.startswith("<") or "://" in name or ":" in name[2:8]:
        raise InputError(f"{what} {name[:80]!r} is not a local file; refused", path=container)
    src = container.parent / name if relative and not os.path.isabs(name) else Path(name)
    try:
        check_regular(src)
    except InputError as exc:
        raise InputError(f"{what} refused: {exc}", path=container) from None
    check_container(src, depth + 1, allow_remote)


def open_remote(remote: Remote) -> DatasetReader:
    """Open an allowed remote raster read-only with the remote drivers and options."""
    import rasterio
    from rasterio.io import DatasetReader

    try:
        with rasterio.Env(**SAFE_CONFIG, **REMOTE_OPEN_CONFIG):
            return DatasetReader(remote.gdal, driver=list(REMOTE_DRIVERS))
    except Exception as exc:  # rasterio raises several types for unreadable headers
        first = first_line(exc)
        if "not recognized as" in first or "not a supported file format" in first:
            raise InputError(f"{remote.given}: not a raster in an accepted format for a remote "
                             f"input ({REMOTE_FORMATS_TEXT}; remote VRTs, tile indexes and "
                             "multi-file formats are refused)") from None
        raise InputError(f"{remote.given}: not a readable remote raster ({first})") from None


def open_input(path: str | os.PathLike, allow_remote: Sequence[str] = ()) -> DatasetReader:
    """``rasterio.open`` for an input: checks first, then only the allowed drivers, with VRT raw
    bands and Python code disabled. Remote names (URLs, /vsicurl/, /vsis3/, ...) are read only
    when a pattern of ``allow_remote`` (remote.patterns) matches their host or bucket.
    InputError naming the file when refused or unreadable."""
    import rasterio
    from rasterio.io import DatasetReader

    remote = parse_remote(str(path))
    if remote is not None:
        check_remote(remote, allow_remote)
        return open_remote(remote)
    p = check_regular(path)
    try:
        kind = check_container(p, allow_remote=allow_remote)
    except OSError as exc:
        raise InputError(f"cannot be read ({(exc.strerror or str(exc)).lower()})",
                         path=p) from None
    try:
        with rasterio.Env(**SAFE_CONFIG):
            # DatasetReader takes a driver list (rasterio.open only one name); an absolute path
            # so that no name is read as a GDAL prefix such as "NETCDF:".
            ds = DatasetReader(os.path.abspath(p), driver=list(ALLOWED_DRIVERS))
    except Exception as exc:  # rasterio raises several types for unreadable headers
        first = first_line(exc)
        if kind == "gti" and not gti_available():
            raise InputError(f"a GDAL tile index (GTI) needs GDAL >= "
                             f"{'.'.join(map(str, GTI_MIN_GDAL))}; this rasterio has GDAL "
                             f"{rasterio.__gdal_version__}", path=p) from None
        if "not recognized as" in first or "not a supported file format" in first:
            raise InputError(f"not a raster in an accepted format ({FORMATS_TEXT})",
                             path=p) from None
        raise InputError(f"not a readable raster ({first})", path=p) from None
    if ds.driver == "GTI" and kind != "gti":  # a form check_container does not know
        ds.close()
        raise InputError("tile index (GTI) not in GeoPackage form; refused", path=p)
    return ds


def dtype_problem(info: Any) -> InputError | None:
    """Data types the engine does not compute in (complex, 64-bit integers), naming the file."""
    if info.dtype in SUPPORTED_DTYPES:
        return None
    kind = "complex" if np.dtype(info.dtype).kind == "c" else "unsupported"
    return InputError(f"has {kind} data type {info.dtype}, which cannot be fused", path=info.path,
                      hint=f"convert it to one of {', '.join(SUPPORTED_DTYPES)} first "
                           "(e.g. gdal_translate -ot Float32)")


__all__ = ["ALLOWED_DRIVERS", "REMOTE_DRIVERS", "SAFE_CONFIG", "SUPPORTED_DTYPES",
           "check_container", "check_regular", "check_vrt", "dtype_problem", "file_kind",
           "open_input", "open_remote"]
