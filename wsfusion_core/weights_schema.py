"""The schema of the weights metadata: types and ranges checked before any tensor is built.

A weights file may come from anyone; its JSON decides the network's shape and the input
scaling, so a tile size of 200000 (memory exhausted), a std of 0 (all-nodata output) or widths
given as text must be refused with one line naming the file, not surface as a TypeError later.
Unknown keys are ignored (a newer writer may add some); missing keys take the defaults.
"""

from __future__ import annotations

import math
from typing import Any, Callable

Check = Callable[[Any], str | None]  # None when valid, else what is wrong

TILE_RANGE = (32, 4096)
CHANNEL_RANGE = (1, 64)
WIDTH_RANGE = (1, 2048)
DEPTH_RANGE = (2, 8)
MAX_CLASSES = 255  # class 255 is the segmentation nodata


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def int_in(lo: int, hi: int) -> Check:
    def check(v: Any) -> str | None:
        if not _is_int(v):
            return f"must be a whole number, not {v!r}"
        return None if lo <= v <= hi else f"must be between {lo} and {hi}, not {v}"
    return check


def one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}, not {v!r}"
    return check


def list_of(item: Check, lo: int, hi: int) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, list):
            return f"must be a list, not {type(v).__name__}"
        if not lo <= len(v) <= hi:
            return f"must have {lo} to {hi} entries, not {len(v)}"
        for i, x in enumerate(v):
            bad = item(x)
            if bad:
                return f"entry {i} {bad}"
        return None
    return check


def text(max_len: int) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, str) or not v.strip():
            return f"must be non-empty text, not {v!r}"
        return None if len(v) <= max_len else f"must be at most {max_len} characters"
    return check


def mapping(v: Any) -> str | None:
    return None if isinstance(v, dict) else f"must be an object, not {type(v).__name__}"


def number(v: Any) -> str | None:
    return None if _is_num(v) else f"must be a finite number, not {v!r}"


def positive(v: Any) -> str | None:
    return None if _is_num(v) and v > 0 else f"must be a finite number > 0, not {v!r}"


def optional(check: Check) -> Check:
    """``check``, or null (the field not recorded)."""
    def inner(v: Any) -> str | None:
        return None if v is None else check(v)
    return inner


SCHEMA: dict[str, Check] = {
    "tile_size": int_in(*TILE_RANGE),
    "in_channels": int_in(*CHANNEL_RANGE),
    "widths": list_of(int_in(*WIDTH_RANGE), *DEPTH_RANGE),
    "fusion": one_of("learned", "mean"),
    "architecture": text(40),  # known names: model.ARCHITECTURES, checked by build_model
    "class_names": list_of(text(100), 1, MAX_CLASSES),
    "class_colours": list_of(list_of(int_in(0, 255), 3, 4), 1, MAX_CLASSES),
    "normalisation": mapping,
    "provenance": mapping,
    "metrics": mapping,
    "name": text(200),
    "evidence": mapping,
    "training_resolutions_m": optional(list_of(positive, 2, 2)),  # [finest, coarsest] metres
}

# The evidence contract (weights.ModelInfo.evidence): each key and its check.
EVIDENCE_SCHEMA: dict[str, Check] = {
    "bands": list_of(text(40), 0, 16),  # STAC EO common names (sensors.COMMON_NAMES)
    "layouts": list_of(text(40), 0, 16),  # sensors.LAYOUTS keys
    "image_scale": one_of("auto", "reflectance"),
    # an RGB model chosen under ``auto`` for inputs of these data types (evidence.py)
    "dtypes": list_of(text(20), 0, 16),
    "reflectance_rule": text(200),
}


def problems(data: Any) -> list[str]:
    """Everything wrong with a decoded metadata object, each as ``field: what``."""
    if not isinstance(data, dict):
        return [f"metadata must be a JSON object, not {type(data).__name__}"]
    out = [f"{key} {bad}" for key, check in SCHEMA.items()
           if key in data and (bad := check(data[key]))]
    if out:
        return out
    ev = data.get("evidence", {})
    # The normalisation covers the image channels, then the evidence bands (evidence.py).
    channels = data.get("in_channels", 3) + (len(ev["bands"]) if isinstance(ev, dict) and
                                             isinstance(ev.get("bands"), list) else 0)
    norm = data.get("normalisation", {})
    for key, check in (("mean", number), ("std", positive)):
        if key in norm:
            bad = list_of(check, channels, channels)(norm[key])
            if bad:
                out.append(f"normalisation.{key} {bad}")
    if "scale" in norm and positive(norm["scale"]):
        out.append(f"normalisation.scale {positive(norm['scale'])}")
    if isinstance(ev, dict):
        out += _evidence_problems(ev)
    if "class_names" in data and "class_colours" in data and \
            len(data["class_names"]) != len(data["class_colours"]):
        out.append(f"class_colours has {len(data['class_colours'])} entries for "
                   f"{len(data['class_names'])} classes")
    res = data.get("training_resolutions_m")
    if res is not None and res[0] > res[1]:
        out.append(f"training_resolutions_m must be [finest, coarsest], not {res}")
    depth = len(data.get("widths", [0] * 5)) - 1
    if data.get("tile_size", TILE_RANGE[1]) < 2 ** depth:
        out.append(f"tile_size {data['tile_size']} is smaller than the network's "
                   f"{2 ** depth} px of downsampling")
    return out


def _evidence_problems(ev: dict[str, Any]) -> list[str]:
    """The evidence contract: known common names and layouts (their normalisation is checked
    with the image channels')."""
    from .sensors import COMMON_NAMES, LAYOUTS

    out = [f"evidence.{key} {bad}" for key, check in EVIDENCE_SCHEMA.items()
           if key in ev and (bad := check(ev[key]))]
    if out:
        return out
    bands = ev.get("bands", [])
    out += [f"evidence.bands: unknown band name {b!r} (known: {', '.join(COMMON_NAMES)})"
            for b in bands if b not in COMMON_NAMES]
    out += [f"evidence.layouts: unknown layout {n!r} (known: {', '.join(LAYOUTS)})"
            for n in ev.get("layouts", []) if n not in LAYOUTS]
    return out


__all__ = ["EVIDENCE_SCHEMA", "SCHEMA", "problems"]
