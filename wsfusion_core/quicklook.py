"""A PNG at a glance: inputs | fused | composites, and below them weights | segmentation.

Every raster is read decimated (``out_shape``), so a quicklook of a 50k² mosaic costs a few
megabytes; Pillow only, so the core does not need matplotlib.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from .classes import CLASS_COLOURS, SEGMENTATION_NODATA
from .errors import InputError, OutputError, first_line
from .input_guard import open_input
from .publish import describe_oserror, fsync_file, publish_all, temp_path
from .view import ScaleSpec, declared_scale, radiometry, to_unit

Declaration = Optional[Tuple[float, float, str]]  # what a file declares about its radiometry

NODATA_RGB = (40, 40, 40)  # shown where a raster has no valid data
GAP = 6
LABEL_H = 18


def _decimated_shape(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _read(path: str | os.PathLike, max_side: int, bands: Sequence[int] | None
          ) -> tuple[np.ndarray, np.ndarray, Declaration]:
    """Decimated (C, h, w) stored values of ``bands`` (None: all), (h, w) validity and what the
    file declares about the first band's radiometry (:func:`view.declared_scale`), from one
    open (input_guard's: only the accepted formats)."""
    from rasterio.enums import Resampling

    with open_input(path) as src:
        shape = _decimated_shape(src.width, src.height, max_side)
        idx = [min(b, src.count) for b in bands] if bands else list(range(1, src.count + 1))
        try:
            data = src.read(idx, out_shape=(len(idx), *shape), resampling=Resampling.nearest)
            mask = src.dataset_mask(out_shape=shape, resampling=Resampling.nearest)
        except Exception as exc:  # rasterio raises several types for broken blocks
            raise InputError(f"cannot be read ({first_line(exc)})", path=path) from None
        b = idx[0]
        declared = declared_scale(src.dtypes[b - 1], {**src.tags(), **src.tags(b)},
                                  [src.scales[b - 1]], [src.offsets[b - 1]])
    return data, mask > 0, declared


def _rgb(data: np.ndarray, valid: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    rgb = np.moveaxis((to_unit(data, lo, hi) * 255).round().astype(np.uint8), 0, -1).copy()
    rgb[~valid] = NODATA_RGB
    return rgb


def read_rgbs(paths: Sequence[str | os.PathLike], max_side: int = 512,
              bands: Sequence[int] = (1, 2, 3), scale: str | ScaleSpec | None = None,
              also: Sequence[str | os.PathLike] = ()) -> list[np.ndarray]:
    """(H, W, 3) uint8 views of ``paths`` and then ``also`` on ONE scale, chosen from
    ``paths`` by the networks' rule (:func:`wsfusion_core.view.radiometry`): uint8 as stored,
    other types as the networks see them, so a cloudy date looks brighter than a clear one."""
    reads = [_read(p, max_side, bands) for p in paths]
    rad = radiometry([d for d, _, _ in reads], [v for _, v, _ in reads],
                     [d.dtype.name for d, _, _ in reads], scale,
                     declared=[decl for _, _, decl in reads])
    lo, hi = rad.lo[0], rad.hi[0]
    others = [_read(p, max_side, bands)[:2] for p in also]
    if not rad.common:  # per-input rule: each input its own stretch, the rest the first's
        return ([_rgb(d, v, a, b) for (d, v, _), a, b in zip(reads, rad.lo, rad.hi)]
                + [_rgb(d, v, lo, hi) for d, v in others])
    return [_rgb(d, v, lo, hi) for d, v in [r[:2] for r in reads] + others]


def read_rgb(path: str | os.PathLike, max_side: int = 512,
             bands: Sequence[int] = (1, 2, 3)) -> np.ndarray:
    """(H, W, 3) uint8 view of ``path`` alone, decimated so its longest side is ≤ ``max_side``."""
    return read_rgbs([path], max_side, bands)[0]


def read_weights(path: str | os.PathLike, max_side: int = 512) -> list[np.ndarray]:
    """Per input, (H, W, 3) grey view of a quality raster's weights (black 0 … white 1)."""
    data, valid, _ = _read(path, max_side, None)
    out = []
    for w in data:
        g = (np.clip(np.nan_to_num(w.astype(np.float32)), 0, 1) * 255).round().astype(np.uint8)
        rgb = np.repeat(g[..., None], 3, axis=-1)
        rgb[~valid] = NODATA_RGB
        out.append(rgb)
    return out


def read_classes(path: str | os.PathLike, max_side: int = 512) -> np.ndarray:
    """(H, W, 3) uint8 colouring of a class map with the project colours."""
    classes = _read(path, max_side, [1])[0][0]
    lut = np.tile(np.array(NODATA_RGB, np.uint8), (256, 1))
    lut[: len(CLASS_COLOURS)] = CLASS_COLOURS
    lut[SEGMENTATION_NODATA] = NODATA_RGB
    return lut[classes]


def _note_panel(text: str, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8: ``text`` word-wrapped in dark grey on light grey."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (225, 225, 225))
    draw = ImageDraw.Draw(img)
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}") <= width - 12:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    for i, line in enumerate(lines):
        draw.text((6, 6 + 13 * i), line, fill=(60, 60, 60))
    return np.asarray(img)


def quicklook(inputs: Sequence[str | os.PathLike], fused: str | os.PathLike,
              output: str | os.PathLike, *, segmentation: str | os.PathLike | None = None,
              quality: str | os.PathLike | None = None,
              extra: Sequence[tuple[str, str | os.PathLike]] = (),
              max_side: int = 384, bands: Sequence[int] = (1, 2, 3),
              scale: str | ScaleSpec | None = None,
              segmentation_note: str | None = None) -> Path:
    """Write a labelled PNG: ``input 1 … input K | fused | extra…`` on one radiometric scale,
    and below them the per-input weights (``quality``) and the segmentation; returns its path.
    ``segmentation_note`` (why there is no class map, e.g. the resolution guard's sentence) is
    written in the segmentation's place, so the reader sees the reason, not an empty panel."""
    from PIL import Image, ImageDraw

    rgbs = read_rgbs(inputs, max_side, bands, scale, [fused] + [p for _, p in extra])
    k = len(inputs)
    top = [(f"input {i}", a) for i, a in enumerate(rgbs[:k], 1)] + [("fused", rgbs[k])]
    top += [(label, a) for (label, _), a in zip(extra, rgbs[k + 1:])]
    bottom: list[tuple[str, np.ndarray] | None] = []
    if quality is not None:
        bottom += [(f"weight {i}", a) for i, a in enumerate(read_weights(quality, max_side), 1)]
    cell_w = max(a.shape[1] for _, a in top)
    cell_h = max(a.shape[0] for _, a in top)
    if segmentation is not None:
        bottom += [None] * (k - len(bottom)) + [("segmentation",
                                                 read_classes(segmentation, max_side))]
    elif segmentation_note:
        bottom += [None] * (k - len(bottom)) + [("segmentation",
                                                 _note_panel(segmentation_note, cell_w, cell_h))]
    rows = [top] + ([bottom] if bottom else [])
    width = max(len(r) for r in rows) * (cell_w + GAP) - GAP
    canvas = Image.new("RGB", (width, len(rows) * (cell_h + LABEL_H + GAP) - GAP),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        y = r * (cell_h + LABEL_H + GAP)
        for c, panel in enumerate(row):
            if panel is None:
                continue
            label, arr = panel
            x = c * (cell_w + GAP)
            canvas.paste(Image.fromarray(arr), (x, y + LABEL_H))
            draw.text((x + 3, y + 3), label, fill=(0, 0, 0))

    out = Path(output)
    if not out.parent.is_dir():
        raise OutputError(f"folder {out.parent} does not exist", path=out)
    tmp = temp_path(out, "tmp", ".png")
    try:
        canvas.save(tmp, format="PNG", optimize=True)
        fsync_file(tmp)
        publish_all([(tmp, out)], overwrite=True)
    except OSError as exc:
        raise OutputError(f"cannot write the quicklook ({describe_oserror(exc)})",
                          path=out) from None
    finally:
        tmp.unlink(missing_ok=True)
    return out
