"""Sensor masks: per-input rasters (Sentinel-2 SCL, Landsat QA_PIXEL, any cloud mask) whose
flagged pixels are invalid for the fusion, exactly as nodata is (weight exactly 0).

A mask is one raster band per input, read as stored onto the output grid with nearest
neighbour (class codes and bit flags must never be interpolated), and a rule: a list of class
values, or a list of bits of which any one set flags the pixel. The reading layer ANDs "not
flagged" into each input's own validity (grid.AlignedReader), so the networks, the
composites, the radiometric scale estimate and every chunk of a distributed run see the same
thing.

Decisions (docs/cli.md, "Sensor masks"):

- ``s2-scl`` masks the Sentinel-2 L2A scene classes 0 no data, 1 saturated or defective,
  3 cloud shadow, 8 cloud medium probability, 9 cloud high probability, 10 thin cirrus. Water
  (6), snow (11), dark areas (2), vegetation / bare soil (4, 5) and unclassified (7) are kept:
  they are ground, and 7 holds much clear ground on bright scenes.
- ``landsat-qa`` masks the Landsat Collection 2 QA_PIXEL bits 0 fill, 1 dilated cloud,
  2 cirrus, 3 cloud, 4 cloud shadow. Bit 5 (snow) is not masked: snow is ground that a GIS user
  wants in a winter or mountain composite, and where it lies on every date masking it would
  leave nodata where every input holds a real, clear pixel (a bits rule can add it).
- Pixels outside the mask raster's footprint are *not* masked: a mask that does not cover a
  place says nothing about it, and masking there would turn valid data into nodata. Values are
  read as stored, the mask's own nodata value included (SCL 0 and the QA fill bit are flagged
  by the presets anyway).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .errors import InputError, first_line, shown

if TYPE_CHECKING:
    from rasterio.windows import Window

    from .grid import Grid

MAX_BIT = 63


@dataclass(frozen=True)
class MaskRule:
    """Which stored mask values flag a pixel: any of ``values``, or any of ``bits`` set."""

    values: tuple[int, ...] = ()
    bits: tuple[int, ...] = ()
    name: str = ""  # the preset it came from, for messages and ``info``

    def __post_init__(self) -> None:
        if bool(self.values) == bool(self.bits):
            raise InputError("a mask rule needs class values or bit numbers (one of the two)")
        bad = [b for b in self.bits if not 0 <= b <= MAX_BIT]
        if bad:
            raise InputError(f"mask bit {bad[0]} is not a bit number 0..{MAX_BIT}")

    def flagged(self, values: np.ndarray) -> np.ndarray:
        """(h, w) bool: True where ``values`` (the stored mask values) are flagged."""
        if self.values:
            return np.isin(values, np.asarray(self.values))
        if values.dtype.kind not in "iu":
            raise InputError(f"bit flags need an integer mask band, not {values.dtype}")
        word = np.uint64(sum(1 << b for b in set(self.bits)))
        return (values.astype(np.uint64) & word) != 0

    def describe(self) -> str:
        what = (f"values {','.join(map(str, self.values))}" if self.values
                else f"bits {','.join(map(str, sorted(set(self.bits))))} (any set)")
        return f"{self.name} = {what}" if self.name else what


# name → (the STAC asset that holds it, the rule every user would choose)
PRESETS: dict[str, tuple[str, MaskRule]] = {
    "s2-scl": ("scl", MaskRule(values=(0, 1, 3, 8, 9, 10), name="s2-scl")),
    "landsat-qa": ("qa_pixel", MaskRule(bits=(0, 1, 2, 3, 4), name="landsat-qa")),
}


def parse_numbers(text: str, what: str) -> tuple[int, ...]:
    """"3,8,9,10" (commas, semicolons or spaces) → (3, 8, 9, 10); ValueError with one line."""
    parts = [p for p in re.split(r"[,;\s]+", (text or "").strip()) if p]
    try:
        out = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{text!r} is not a list of {what} (e.g. 3,8,9,10)") from None
    if not out:
        raise ValueError(f"no {what} given")
    return out


def mask_rule(preset: str | None = None, values: Sequence[int] | None = None,
              bits: Sequence[int] | None = None) -> MaskRule | None:
    """The rule from a preset name or explicit values / bits (one way only); None: no rule."""
    given = [n for n, v in (("a preset", preset), ("values", values), ("bits", bits)) if v]
    if len(given) > 1:
        raise InputError(f"give the mask rule one way: {' or '.join(given)}")
    if preset:
        if preset not in PRESETS:
            raise InputError(f"unknown mask preset {preset!r}; choose one of "
                             f"{', '.join(PRESETS)}")
        return PRESETS[preset][1]
    if values:
        return MaskRule(values=tuple(int(v) for v in values))
    if bits:
        return MaskRule(bits=tuple(int(b) for b in bits))
    return None


@dataclass(frozen=True)
class MaskSource:
    """One input's mask: a raster (band ``band``) and the rule. Frozen and small: it travels
    with the input's RasterInfo to every Dask worker."""

    path: Path
    rule: MaskRule
    band: int = 1
    allow_remote: tuple[str, ...] = field(default=())
    # With the least-masked fallback: this input's preference (0 = least masked overall) for
    # pixels that every input's mask flags; None: no fallback.
    fallback_rank: int | None = None

    @property
    def label(self) -> str:
        return shown(self.path)


def check_mask(source: MaskSource) -> None:
    """Open the mask's header once, so a missing or unreadable mask fails before any output
    is opened, in one line naming the mask file."""
    from .input_guard import open_input

    with open_input(source.path, source.allow_remote) as src:
        if source.band > src.count:
            raise InputError(f"mask has {src.count} band(s), band {source.band} requested",
                             path=source.path)
        if source.rule.bits and np.dtype(src.dtypes[source.band - 1]).kind not in "iu":
            raise InputError(f"mask band is {src.dtypes[source.band - 1]}; bit flags need "
                             "integers", path=source.path)


class MaskReader:
    """Reads one mask onto the output grid: (h, w) bool, True where the rule flags the pixel.
    Warped with nearest neighbour in fixed blocks (blockread.py), so any window of a chunked
    or distributed run reads what the local run reads."""

    def __init__(self, source: MaskSource, grid: Grid) -> None:
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        from .blockread import FixedBlocks
        from .input_guard import open_input

        self.source = source
        try:
            self._src = open_input(source.path, source.allow_remote)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"mask cannot be opened ({first_line(exc)})",
                             path=source.path) from None
        from rasterio.enums import ColorInterp

        self._vrt: Any = None
        self._blocks: Any = None
        # A mask with an alpha band: where it is 0 the mask says nothing (not masked).
        interp = list(self._src.colorinterp)
        self._alpha = interp.index(ColorInterp.alpha) + 1 if ColorInterp.alpha in interp \
            else None
        if self._alpha == source.band:
            self._src.close()
            raise InputError(f"mask band {source.band} is an alpha band", path=source.path)
        if not grid.same_as(_header(self._src, source.path)):
            if self._src.crs is None or grid.crs is None:
                self._src.close()
                raise InputError("mask is on another grid and has no CRS to align it",
                                 path=source.path)
            # src_nodata=None: the stored values are read as they are (the rule decides); the
            # added alpha band marks only the mask's footprint (outside it: not masked).
            self._vrt = WarpedVRT(self._src, crs=grid.crs, transform=grid.transform,
                                  width=grid.width, height=grid.height,
                                  resampling=Resampling.nearest, src_nodata=None,
                                  add_alpha=self._alpha is None)
            vinterp = list(self._vrt.colorinterp)
            self._alpha = vinterp.index(ColorInterp.alpha) + 1
            self._blocks = FixedBlocks(self._vrt)

    def flagged(self, window: Window, out_shape: tuple[int, int] | None = None) -> np.ndarray:
        from rasterio.enums import Resampling

        idx = [self.source.band] + ([self._alpha] if self._alpha else [])
        try:
            if self._blocks is not None and out_shape is None:
                arr = self._blocks.read(idx, window)
            else:
                ds = self._vrt if self._vrt is not None else self._src
                kw: dict[str, Any] = {"window": window}
                if out_shape is not None:
                    kw.update(out_shape=(len(idx), *out_shape), resampling=Resampling.nearest)
                arr = ds.read(idx, **kw)
            flagged = self.source.rule.flagged(arr[0])
            if self._alpha:
                flagged &= arr[1] > 0
            return flagged
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"mask read failed ({first_line(exc)})",
                             path=self.source.path) from None

    def close(self) -> None:
        if self._vrt is not None:
            self._vrt.close()
        self._src.close()


FALLBACKS = ("least-masked",)


def rescue(own: np.ndarray, flagged: np.ndarray, ranks: Sequence[int | None]) -> np.ndarray:
    """(K, h, w) bool: the pixels to make valid again under the least-masked fallback. Where
    every input is invalid only because masks flag it (at least one input has data there by
    its own nodata, masks and footprint), the input with data there of the lowest rank (the
    least masked over the whole grid) is used alone; elsewhere nothing changes."""
    out = np.zeros(own.shape, bool)
    need = ~(own & ~flagged).any(axis=0) & own.any(axis=0)
    if not need.any():
        return out
    for _, i in sorted((r, i) for i, r in enumerate(ranks) if r is not None):
        take = need & own[i]
        out[i] = take
        need &= ~take
    return out


def mask_share(info: Any, grid: Grid, max_side: int = 1024) -> float | None:
    """The share of ``info``'s own valid pixels on ``grid`` that its sensor mask flags, from
    a read decimated to ``max_side`` px (None without a mask). ``info`` shows it; the
    least-masked fallback ranks the inputs by it."""
    from dataclasses import replace

    from rasterio.windows import Window

    from .grid import AlignedReader

    if info.sensor_mask is None:
        return None
    f = max(1.0, max(grid.width, grid.height) / max_side)
    shape = (max(1, round(grid.height / f)), max(1, round(grid.width / f)))
    whole = Window(0, 0, grid.width, grid.height)
    with AlignedReader(replace(info, sensor_mask=None), grid) as rd:
        _, own = rd.read(whole, out_shape=shape)
    reader = MaskReader(info.sensor_mask, grid)
    try:
        flagged = reader.flagged(whole, out_shape=shape)
    finally:
        reader.close()
    n = int(own.sum())
    return float((own & flagged).sum()) / n if n else 0.0


def with_fallback(infos: Sequence[Any], grid: Grid, fallback: str | None) -> list[Any]:
    """``infos`` with each mask's fallback rank set (``"least-masked"``), or as they are."""
    from dataclasses import replace

    if fallback is None:
        return list(infos)
    if fallback not in FALLBACKS:
        raise InputError(f"unknown mask fallback {fallback!r}; choose one of "
                         f"{', '.join(FALLBACKS)}")
    masked = [i for i, info in enumerate(infos) if info.sensor_mask is not None]
    if not masked:
        raise InputError("a mask fallback needs sensor masks")
    shares = {i: mask_share(infos[i], grid) or 0.0 for i in masked}
    order = sorted(masked, key=lambda i: (shares[i], i))
    out = list(infos)
    for rank, i in enumerate(order):
        out[i] = replace(infos[i], sensor_mask=replace(infos[i].sensor_mask, fallback_rank=rank))
    return out


def _header(src: Any, path: Path) -> Any:
    """A RasterInfo-like header of an open dataset, for Grid.same_as."""
    from .grid import RasterInfo

    return RasterInfo(Path(path), src.width, src.height, (1,), None, src.dtypes[0], src.nodata,
                      src.crs if src.crs else None, src.transform, "none")


def attach(infos: Sequence[Any], masks: Sequence[str | os.PathLike | None] | None,
           rule: MaskRule | None, allow_remote: Sequence[str] = ()) -> list[Any]:
    """``infos`` with their MaskSource set (one mask path or None per input, in input order)."""
    from dataclasses import replace

    if masks is None:
        if rule is not None:
            raise InputError("a mask rule was given but no mask rasters")
        return list(infos)
    masks = list(masks)
    if len(masks) != len(infos):
        raise InputError(f"{len(masks)} mask raster(s) for {len(infos)} input(s); give one per "
                         "input, in input order (none for an input without a mask)")
    if rule is None:
        raise InputError("mask rasters were given without a rule: choose a preset (s2-scl, "
                         "landsat-qa), class values or bit numbers")
    out = []
    for info, m in zip(infos, masks):
        if m is None or str(m).strip().lower() in ("", "none"):
            out.append(info)
            continue
        src = MaskSource(Path(m), rule, allow_remote=tuple(allow_remote))
        check_mask(src)
        out.append(replace(info, sensor_mask=src))
    return out


__all__ = ["FALLBACKS", "PRESETS", "MaskReader", "MaskRule", "MaskSource", "attach",
           "check_mask", "mask_rule", "mask_share", "parse_numbers", "rescue", "with_fallback"]
