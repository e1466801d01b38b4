"""The networks' view of the inputs: how raw pixel values become the 0..1 network input.

One module so that inference, the quicklook and training share one scaling rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from rasterio.windows import Window

if TYPE_CHECKING:
    from .grid import AlignedReader

PERCENTILES = (2.0, 98.0)  # network view of non-uint8 inputs
SAMPLE_SIDE = 1024  # longest side of the decimated read that estimates those percentiles


def view_scales(readers: list[AlignedReader], bands: tuple[int, ...]) -> list[np.ndarray]:
    """Per input, per network band: (lo, hi) mapping values onto 0..1 for the networks.

    uint8 uses the fixed 0..255 of training. Other dtypes use the 2nd-98th percentile of the
    input's valid pixels on the output grid (one decimated read, computed once before tiling),
    so every tile sees the same deterministic scaling; the output keeps the original values."""
    out = []
    for rd in readers:
        if np.dtype(rd.info.dtype) == np.uint8:
            out.append(np.array([[0.0, 255.0]] * len(bands)))
            continue
        g = rd.grid
        f = max(1.0, max(g.width, g.height) / SAMPLE_SIDE)
        shape = (max(1, round(g.height / f)), max(1, round(g.width / f)))
        data, valid = rd.read(Window(0, 0, g.width, g.height), out_shape=shape)
        scale = []
        for b in bands:
            v = data[b - 1][valid].astype(np.float64)
            if v.size == 0:
                scale.append((0.0, 1.0))
                continue
            lo, hi = np.percentile(v, PERCENTILES)
            scale.append((float(lo), float(hi) if hi > lo else float(lo) + 1.0))
        out.append(np.array(scale))
    return out


def network_view(data: np.ndarray, valid: np.ndarray, bands: tuple[int, ...],
                 scales: Sequence[np.ndarray], norm: dict[str, Any]) -> np.ndarray:
    """(K, C, h, W) original values → (K, len(bands), h, W) float32 normalised network input;
    invalid pixels are 0 (their fusion weight is 0 anyway)."""
    k = data.shape[0]
    idx = [b - 1 for b in bands]
    out = np.empty((k, len(idx)) + data.shape[2:], dtype=np.float32)
    mean = np.asarray(norm.get("mean", [0.0] * len(idx)), dtype=np.float32)
    std = np.asarray(norm.get("std", [1.0] * len(idx)), dtype=np.float32)
    for i in range(k):
        lo, hi = scales[i][:, 0], scales[i][:, 1]
        x = data[i, idx].astype(np.float32)
        x -= lo.astype(np.float32)[:, None, None]
        x /= (hi - lo).astype(np.float32)[:, None, None]
        np.clip(x, 0.0, 1.0, out=x)
        x -= mean[:, None, None]
        x /= std[:, None, None]
        x[:, ~valid[i]] = 0.0
        out[i] = x
    return out
