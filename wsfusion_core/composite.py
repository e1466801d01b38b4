"""Classical composites (the no-model baselines): per-pixel mean or median over the inputs that
are valid there. numpy only, so the mean and median methods need no torch and no weights."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np

from .options import COMPOSITES

CHUNK = 512  # columns per composite step (bounds the float temporaries)
# threads per strip: a composite piece (engines.COMPOSITE_COLUMNS) has 4 chunks
WORKERS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
              else os.cpu_count() or 1)


def composite(data: np.ndarray, valid: np.ndarray, method: str = "mean") -> tuple[np.ndarray,
                                                                                   np.ndarray]:
    """data (K, C, H, W), valid (K, H, W) bool → (composite (C, H, W) float, any_valid (H, W)).

    Invalid pixels may hold anything (NaN, sentinels): they never enter the result. Pixels with
    no valid input come back as 0 with any_valid False; the caller writes nodata. The median of
    an even count is the mean of the two middle values (as ``np.nanmedian``)."""
    if method not in COMPOSITES:
        raise ValueError(f"composite method must be 'mean' or 'median', not {method!r}")
    work = np.float64 if data.dtype.itemsize > 2 or data.dtype.kind == "f" else np.float32
    any_valid = valid.any(axis=0)
    count = valid.sum(axis=0)
    if method == "mean":
        total = np.where(valid[:, None], data, np.zeros((), data.dtype)).sum(axis=0, dtype=work)
        return np.divide(total, count.astype(work), out=np.zeros_like(total),
                         where=count > 0), any_valid
    return _median(data, valid, count, work), any_valid


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
    """The mean composite's per-input weights (K, H, W): 1/n over the valid inputs, else 0."""
    count = valid.sum(axis=0, keepdims=True).astype(np.float32)
    return np.divide(valid.astype(np.float32), count, out=np.zeros(valid.shape, np.float32),
                     where=count > 0)


def zero_invalid(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Invalid pixels may hold NaN or sentinel values; zero them so a 0 weight stays 0.
    data (..., K, C, h, w), valid (..., K, h, w)."""
    return np.where(valid[..., None, :, :], data, np.zeros((), data.dtype))


def composite_chunks(data: np.ndarray, valid: np.ndarray, method: str, quality: bool
                     ) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """The composite of one strip, column chunk by column chunk so temporaries stay small, the
    chunks computed on up to ``WORKERS`` threads (numpy releases the GIL): yields (x0,
    composite (C, h, w), equal weights (K, h, w) or None) in column order."""
    def one(x0: int) -> tuple[int, np.ndarray, np.ndarray | None]:
        d, v = data[..., x0:x0 + CHUNK], valid[..., x0:x0 + CHUNK]
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
