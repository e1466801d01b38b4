"""Classical composites (the no-model baselines): per-pixel mean or median over the inputs that
are valid there. numpy only, so the mean and median methods need no torch and no weights."""

from __future__ import annotations

import warnings
from typing import Iterator

import numpy as np

from .options import COMPOSITES

CHUNK = 1024  # columns per composite step (bounds the float temporaries)


def composite(data: np.ndarray, valid: np.ndarray, method: str = "mean") -> tuple[np.ndarray,
                                                                                   np.ndarray]:
    """data (K, C, H, W), valid (K, H, W) bool → (composite (C, H, W) float, any_valid (H, W)).

    Pixels with no valid input come back as 0 with any_valid False; the caller writes nodata."""
    if method not in COMPOSITES:
        raise ValueError(f"composite method must be 'mean' or 'median', not {method!r}")
    work = np.float64 if data.dtype.itemsize > 2 or data.dtype.kind == "f" else np.float32
    any_valid = valid.any(axis=0)
    if method == "mean":
        w: np.ndarray = valid.astype(work)[:, None]
        total = (np.where(w > 0, data, 0).astype(work) * w).sum(axis=0)
        count = w.sum(axis=0)
        out = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    else:
        masked = np.where(valid[:, None], data.astype(work), np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no valid input
            out = np.nanmedian(masked, axis=0)
        out = np.nan_to_num(out, nan=0.0)
    return out, any_valid


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
    """The composite of one strip, column chunk by column chunk so temporaries stay small:
    yields (x0, composite (C, h, w), equal weights (K, h, w) or None)."""
    for x0 in range(0, data.shape[-1], CHUNK):
        d, v = data[..., x0:x0 + CHUNK], valid[..., x0:x0 + CHUNK]
        comp, _ = composite(zero_invalid(d, v), v, method)
        yield x0, comp, (equal_weights(v) if quality else None)
