"""Classical composites (the no-model baselines): per-pixel mean, median or minimum-blue over
the inputs that are valid there. numpy only, so these methods need no torch and no weights."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

import numpy as np

from .errors import WsfusionError
from .options import COMPOSITES, DEFAULT_BANDS

CHUNK = 512  # columns per composite step (bounds the float temporaries)
# threads per strip: a composite piece (engines.COMPOSITE_COLUMNS) has 4 chunks
WORKERS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
              else os.cpu_count() or 1)
# min-blue's blue band: the last of the networks' bands (R,G,B → B), as a 0-based channel.
BLUE = DEFAULT_BANDS[-1] - 1


def composite(data: np.ndarray, valid: np.ndarray, method: str = "mean", blue: int = BLUE
              ) -> tuple[np.ndarray, np.ndarray]:
    """data (K, C, H, W), valid (K, H, W) bool → (composite (C, H, W) float, any_valid (H, W)).

    Invalid pixels may hold anything (NaN, sentinels): they never enter the result. Pixels with
    no valid input come back as 0 with any_valid False; the caller writes nodata. The median of
    an even count is the mean of the two middle values (as ``np.nanmedian``). ``min-blue`` takes
    every band from the valid input with the lowest channel ``blue`` (see :func:`min_blue`)."""
    if method not in COMPOSITES:
        raise ValueError(f"composite method must be one of {', '.join(COMPOSITES)}, "
                         f"not {method!r}")
    work = _work_dtype(data.dtype)
    any_valid = valid.any(axis=0)
    if method == "min-blue":
        return _chosen_values(data, min_blue(data, valid, blue), work), any_valid
    count = valid.sum(axis=0)
    if method == "mean":
        total = np.where(valid[:, None], data, np.zeros((), data.dtype)).sum(axis=0, dtype=work)
        return np.divide(total, count.astype(work), out=np.zeros_like(total),
                         where=count > 0), any_valid
    return _median(data, valid, count, work), any_valid


def min_blue(data: np.ndarray, valid: np.ndarray, blue: int = BLUE) -> np.ndarray:
    """(K, H, W) bool: per pixel the valid input with the lowest value in channel ``blue``
    (clouds and haze brighten blue most), the classical minimum-blue composite's choice.

    The choice depends on the values only, never on the order of the inputs: a tie in blue goes
    to the lowest value in the other channels, taken in channel order; inputs equal in every
    channel all stay chosen (any of them gives the same composite; :func:`equal_weights` of the
    choice gives each an equal share of the weight, else 1 to the one chosen). NaN counts as
    the highest value."""
    if not 0 <= blue < data.shape[1]:
        raise ValueError(f"blue channel {blue} outside the {data.shape[1]} channel(s)")
    chosen = valid.copy()
    top = np.inf if data.dtype.kind == "f" else np.iinfo(data.dtype).max
    for c in [blue] + [c for c in range(data.shape[1]) if c != blue]:
        x = data[:, c]
        if data.dtype.kind == "f":
            x = np.where(np.isnan(x), np.inf, x)
        low = np.where(chosen, x, np.array(top, x.dtype)).min(axis=0)
        chosen &= x == low
        if not (chosen.sum(axis=0) > 1).any():  # no tie left
            break
    return chosen


def _work_dtype(dtype: np.dtype) -> type:
    """float32 holds every 8- and 16-bit integer exactly; wider types and floats need float64."""
    return np.float64 if dtype.itemsize > 2 or dtype.kind == "f" else np.float32


def min_blue_like(data: np.ndarray, stored: np.ndarray, valid: np.ndarray, blue: int
                  ) -> np.ndarray:
    """(C, H, W) float32: min-blue of ``data`` (e.g. the inputs' network views) with the choice
    made on the ``stored`` values of the same inputs, as the written image makes it, so that a
    segmentation of the composite reads the image that is written (a view may be scaled per
    input or hold other bands)."""
    return _chosen_values(data, min_blue(stored, valid, blue), np.float32)


def _chosen_values(data: np.ndarray, chosen: np.ndarray, work: type) -> np.ndarray:
    """(C, H, W): every band of a chosen input (the chosen ones are equal), 0 where none is."""
    first = np.broadcast_to(chosen.argmax(axis=0)[None, None],
                            (1, data.shape[1]) + chosen.shape[1:])
    out = np.take_along_axis(data, first, axis=0)[0].astype(work)
    out[:, ~chosen.any(axis=0)] = 0
    return out


def _median(data: np.ndarray, valid: np.ndarray, count: np.ndarray, work: type) -> np.ndarray:
    """Per-pixel median of the valid inputs: invalid ones become +inf, a sorting network of
    element-wise min/max orders the K layers (vectorised, unlike a sort along axis 0), and the
    middle one or two valid layers are picked per pixel."""
    layers = [np.where(valid[i][None], data[i].astype(work), np.inf) for i in range(len(data))]
    k = len(layers)
    for rnd in range(k):  # odd-even transposition sort: k rounds sort any k layers
        for i in range(rnd % 2, k - 1, 2):
            lo = np.minimum(layers[i], layers[i + 1])
            np.maximum(layers[i], layers[i + 1], out=layers[i + 1])
            layers[i] = lo
    ordered = np.stack(layers)
    shape = (1,) + ordered.shape[1:]
    lo_idx = np.broadcast_to(np.maximum(count - 1, 0) // 2, shape[1:])[None]
    hi_idx = np.broadcast_to(count // 2, shape[1:])[None]
    lo_v = np.take_along_axis(ordered, lo_idx, 0)[0]
    hi_v = np.take_along_axis(ordered, hi_idx, 0)[0]
    out = (lo_v + hi_v) / 2
    out[:, count == 0] = 0
    return out


def equal_weights(valid: np.ndarray) -> np.ndarray:
    """Per-input weights (K, H, W) float32, 1/n over the n True inputs of a pixel, else 0: the
    mean composite's (of ``valid``) and min-blue's (of its choice: 0/1)."""
    count = valid.sum(axis=0, keepdims=True).astype(np.float32)
    return np.divide(valid.astype(np.float32), count, out=np.zeros(valid.shape, np.float32),
                     where=count > 0)


def composite_chunks(data: np.ndarray, valid: np.ndarray, method: str, quality: bool,
                     bands: Sequence[int] = DEFAULT_BANDS
                     ) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """The composite of one strip, column chunk by column chunk so temporaries stay small, the
    chunks computed on up to ``WORKERS`` threads (numpy releases the GIL): yields (x0,
    composite (C, h, w), per-input weights (K, h, w) or None) in column order. ``bands``: the
    networks' bands; min-blue's blue is the last of them (R,G,B → B)."""
    blue = blue_channel(bands, data.shape[1]) if method == "min-blue" else BLUE

    def one(x0: int) -> tuple[int, np.ndarray, np.ndarray | None]:
        d, v = data[..., x0:x0 + CHUNK], valid[..., x0:x0 + CHUNK]
        if method == "min-blue":
            chosen = min_blue(d, v, blue)
            return (x0, _chosen_values(d, chosen, _work_dtype(d.dtype)),
                    equal_weights(chosen) if quality else None)
        comp, _ = composite(d, v, method)
        return x0, comp, (equal_weights(v) if quality else None)

    starts = range(0, data.shape[-1], CHUNK)
    if WORKERS < 2 or len(starts) < 2:
        yield from map(one, starts)
        return
    yield from _pool().map(one, starts)


_POOL: list[ThreadPoolExecutor] = []


def _pool() -> ThreadPoolExecutor:
    """One process-wide pool: the same threads (and their malloc arenas) serve every strip."""
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(WORKERS, thread_name_prefix="wsfusion-composite"))
    return _POOL[0]


def blue_channel(bands: Sequence[int], count: int) -> int:
    """min-blue's blue channel (0-based) among ``count`` bands: the last network band."""
    if not bands or not 1 <= bands[-1] <= count:
        raise WsfusionError(f"the minimum-blue composite reads blue from the last network band "
                            f"({bands[-1] if bands else 'none'}), but the inputs have {count} "
                            "band(s)", hint="choose bands whose last one is blue")
    return bands[-1] - 1
