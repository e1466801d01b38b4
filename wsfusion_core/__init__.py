"""wsfusion: fuse co-located overhead images into one clean GeoTIFF (Rafique, Blanton, Jacobs).

Public API: ``fuse``, ``FusionResult``, ``load_weights``, ``ModelInfo``. Imports are lazy so that
``import wsfusion_core`` is cheap (the QGIS plugin loads it at start-up; torch loads on first use).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "fuse": "api",
    "FusionResult": "api",
    "load_weights": "weights",
    "save_weights": "weights",
    "ModelInfo": "weights",
    "WsfusionError": "errors",
    "InputError": "errors",
    "OutputError": "errors",
    "WeightsError": "errors",
    "Cancelled": "errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'wsfusion_core' has no attribute {name!r}")
