"""Is an input file whole? A truncated GeoTIFF (a copy cut short, a download stopped) opens
fine, since its header sits at the start, and fails only when the missing blocks are read: in
the middle of a run, or never in ``info``. So ``describe`` checks, from the header alone, that
every block lies inside the file, and a read that fails says why in GDAL's own words (rasterio's
"Read failed. See previous exception for details." hides them in the exception chain)."""

from __future__ import annotations

import os
from typing import Any

# Block offsets read at most (all bands together): beyond this only the blocks that come last
# in each band (the last block rows, where a cut-short file loses its data) are checked. A
# lookup costs ~10 µs, so the check stays under a fifth of a second on any file.
MAX_BLOCKS = 16384


def truncation_problem(src: Any, path: str | os.PathLike) -> str | None:
    """Why the GeoTIFF open as ``src`` is not whole (None when every block checked lies inside
    the file, or ``path`` is not a local GeoTIFF)."""
    if src.driver != "GTiff" or not os.path.isfile(path):
        return None
    size = os.path.getsize(path)
    interleave = getattr(src.interleaving, "name", "PIXEL")
    bands = [1] if interleave == "PIXEL" else list(src.indexes)
    bh, bw = src.block_shapes[0]
    rows, cols = -(-src.height // bh), -(-src.width // bw)
    per_band = max(1, MAX_BLOCKS // len(bands))
    for b in bands:
        for k in range(max(0, rows * cols - per_band), rows * cols):
            i, j = divmod(k, cols)
            off = src.get_tag_item(f"BLOCK_OFFSET_{j}_{i}", "TIFF", bidx=b)
            n = src.get_tag_item(f"BLOCK_SIZE_{j}_{i}", "TIFF", bidx=b)
            if off and n and int(off) > 0 and int(off) + int(n) > size:
                return (f"the file is truncated: block row {i}, column {j} of band {b} ends "
                        f"at byte {int(off) + int(n):,} but the file has {size:,} bytes")
    return None


def chained_cause(exc: BaseException) -> str:
    """The innermost message of an exception chain (GDAL's cause), on one line."""
    texts = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        line = " ".join(str(cur).split())
        if line and "see previous exception" not in line.lower():
            texts.append(line)
        cur = cur.__cause__ or cur.__context__
    return texts[-1] if texts else type(exc).__name__


__all__ = ["chained_cause", "truncation_problem"]
