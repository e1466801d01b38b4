"""Is a just-closed output whole? And if writing failed, why, in one line.

GDAL can close a GeoTIFF "successfully" after some blocks failed to reach the disk (the error
went to libtiff's handler, or was raised while flushing its cache during a read). So a staged
file is checked before it is published: its header must match what was written and every block
must have bytes inside the file (a truncated or sparse file fails); ``full`` also decodes every
block, which costs a read of the whole output.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Sequence

from . import gdal_errors
from .errors import OutputError
from .publish import describe_oserror, free_mb

# Messages that mean the output's storage failed (not, say, an input's decoder complaining).
STORAGE_WORDS = ("no space left", "quota", "file too large", "read-only file system",
                 "input/output error", "stale file handle", "write error", "_tiffwriteproc",
                 "_tiffseekproc", "error writing", "write failed", "cannot write")


def storage_failures(messages: Sequence[gdal_errors.GdalMessage]) -> list[str]:
    return [m.text for m in messages
            if m.level >= gdal_errors.CE_FAILURE
            and any(w in m.text.lower() for w in STORAGE_WORDS)]


def verify_geotiff(path: Path, profile: dict[str, Any], full: bool = False) -> str | None:
    """What is wrong with the staged file at ``path`` (None when it is whole)."""
    import rasterio
    from rasterio.io import DatasetReader

    size = os.path.getsize(path)
    try:
        with rasterio.Env(), DatasetReader(os.path.abspath(path), driver=["GTiff"]) as src:
            got = (src.width, src.height, src.count, src.dtypes[0])
            want = (profile["width"], profile["height"], profile["count"], profile["dtype"])
            if got != want:
                return f"the file read back is {got}, not {want}"
            bands = [1] if src.interleaving is None or src.interleaving.name == "PIXEL" \
                else list(src.indexes)
            for b in bands:
                for (i, j), _w in src.block_windows(b):
                    off = src.get_tag_item(f"BLOCK_OFFSET_{j}_{i}", "TIFF", bidx=b)
                    n = src.get_tag_item(f"BLOCK_SIZE_{j}_{i}", "TIFF", bidx=b)
                    if not off or not n or int(off) + int(n) > size or int(n) == 0:
                        return f"block {i},{j} of band {b} is missing from the file"
            if full:
                for _ij, w in src.block_windows(1):
                    src.read(window=w)
    except Exception as exc:  # rasterio raises several types on a damaged file
        return gdal_errors.cause(str(exc))
    return None


def write_failure(target: Path, texts: Sequence[str], need_bytes: int,
                  exc: BaseException | None = None, what: str = "writing failed",
                  reclaim_bytes: int = 0) -> OutputError:
    """The one line for a failed write of ``target``: the cause, and for a full disk how much
    room the run needs (the uncompressed size: deflate usually needs less) and how much there
    is once this run's temporary files (``reclaim_bytes``) are gone."""
    texts = list(texts)
    if isinstance(exc, OSError):
        texts.insert(0, describe_oserror(exc))
    elif exc is not None:
        texts.append(str(exc))
    why = gdal_errors.cause(texts) if texts else "unknown write error"
    free = free_mb(target.parent)
    if "no space" not in why and free is not None and free < 1 and (
            isinstance(exc, OSError) and exc.errno == errno.ENOSPC or not texts or
            any("write" in t.lower() or "block" in t.lower() for t in texts)):
        why = "no space left on device"
    if why == "no space left on device":
        need = max(1, round(need_bytes / 2**20))
        have = f", {free + reclaim_bytes / 2**20:.1f} MB free" if free is not None else ""
        why += f" (about {need} MB needed{have})"
    return OutputError(f"{what}: {why}; nothing was published", path=target)


__all__ = ["storage_failures", "verify_geotiff", "write_failure"]
