"""Promote a trained checkpoint to the weights shipped inside wsfusion_core, with honest
metadata (status, recipe, measured test numbers)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SHIPPED = Path(__file__).resolve().parents[1] / "wsfusion_core" / "data" / "weights" / \
    "default.safetensors"


def ship(src: str | os.PathLike, dst: str | os.PathLike = SHIPPED, *, status: str,
         metrics: dict[str, Any] | None = None, name: str = "wsfusion-default",
         real_clouds: dict[str, Any] | None = None) -> Path:
    """Re-save ``src`` to ``dst`` through the real weight format, recording ``status``
    ("preliminary" / "final") and, when given, the measured test ``metrics``."""
    from wsfusion_core.weights import load_weights, save_weights

    model, info = load_weights(src)
    info.name = name
    info.provenance = dict(info.provenance, status=status, source_checkpoint=str(src))
    if metrics is not None:
        info.metrics = metrics
    if real_clouds is not None:  # the real-cloud validation (training/realclouds.py headline)
        info.metrics = dict(info.metrics or {}, real_clouds=real_clouds)
    path = save_weights(dst, model, info)
    path.chmod(0o644)  # shipped in the package: readable by every user
    return path


def record_real_clouds(path: str | os.PathLike, real_clouds: dict[str, Any]) -> Path:
    """Add the real-cloud validation numbers (``metrics.real_clouds``) to the card of the weights
    at ``path`` (re-saved in place through the real weight format; nothing else changes)."""
    from wsfusion_core.weights import load_weights, save_weights

    model, info = load_weights(path)
    info.metrics = dict(info.metrics or {}, real_clouds=real_clouds)
    out = save_weights(path, model, info)
    out.chmod(0o644)
    return out
