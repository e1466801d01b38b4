"""The closed sets and defaults that the CLI, the QGIS plugin and the engine share (one source).

numpy-free and torch-free: the plugin reads these while building its dialog."""

from __future__ import annotations

import os
import re
from typing import Literal, Sequence, Tuple, Union

from .errors import InputError

Method = Literal["learned", "mean", "median", "min-blue"]
Device = Literal["auto", "cpu", "cuda"]
MaskKind = Literal["nodata", "alpha", "mask", "none"]
Selection = Literal["blend", "best"]

# New methods go last: the QGIS algorithm stores the method as its index in this tuple.
METHODS: Tuple[Method, ...] = ("learned", "mean", "median", "min-blue")
COMPOSITES: Tuple[Method, ...] = ("mean", "median", "min-blue")  # the methods that need no model
DEVICES: Tuple[Device, ...] = ("auto", "cpu", "cuda")
# How the per-input weights make a pixel: ``blend`` the weighted average (the paper), ``best``
# the pixel of the input with the highest weight, unchanged. New choices go last: the QGIS
# algorithm stores the selection as its index in this tuple.
SELECTIONS: Tuple[Selection, ...] = ("blend", "best")
STAC_GROUPS = ("solar_day", "day", "item")  # how STAC items are grouped into dates
DEFAULT_BANDS: Tuple[int, ...] = (1, 2, 3)
DEFAULT_OVERLAP = 64
# The vectors' minimum mapping unit in m² (a garden shed): smaller features and holes are dropped.
DEFAULT_MIN_AREA = 5.0


def parse_bands(text: str | None) -> Tuple[int, ...] | None:
    """"1,2,3" (commas, semicolons or spaces) → (1, 2, 3); empty → None (the default bands).

    Raises ValueError with a one-line reason; each front end rewraps it in its own error type."""
    text = (text or "").strip()
    if not text:
        return None
    # One comma or semicolon (spaces around it allowed) or spaces alone separate two numbers;
    # "1,,3" is a typo, not "1,3": refused rather than guessed.
    items = re.split(r"\s*[,;]\s*|\s+", text)
    if "" in items:
        raise ValueError(f"{text!r}: a band number is missing between separators (e.g. 1,2,3)")
    try:
        bands = tuple(int(b) for b in items)
    except ValueError:
        raise ValueError(f"{text!r} is not a list of band numbers (e.g. 1,2,3)") from None
    if not bands or min(bands) < 1:
        raise ValueError(f"{text!r}: band numbers start at 1 (e.g. 1,2,3)")
    return bands


def check_choice(value: str, choices: Sequence[str], what: str) -> None:
    """One wording for an unknown method/device, whoever called the engine."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")


def band_problem(bands: Sequence[int], count: int, path: Union[str, os.PathLike],
                 explicit: bool) -> InputError | None:
    """The error for network bands the inputs lack (``fuse`` raises it, ``info`` lists it);
    ``explicit``: the caller chose the bands (else they are the defaults)."""
    bad = next((b for b in bands if b < 1 or b > count), None)
    if bad is None:
        return None
    hint = None if explicit else f"choose bands, e.g. {','.join(['1'] * len(bands))}"
    return InputError(f"has {count} image band(s); band {bad} does not exist (bands "
                      f"{','.join(map(str, bands))} requested)", path=path, hint=hint)


def selection_problem(method: str, selection: str) -> str | None:
    """Why ``selection`` cannot run with ``method`` (``fuse`` raises it, ``info`` lists it), or
    None. Best-pixel selection needs per-input weights; the median has none (its value may be
    the mean of two inputs, taken from neither)."""
    if selection == "best" and method == "median":
        return ("best-pixel selection needs per-input weights, and the median has none; "
                "use method learned, mean or min-blue")
    return None


def index_dtype(k: int) -> str:
    """The input-index output's type: 1..K with 0 for nodata, uint8 up to 254 inputs."""
    return "uint8" if k <= 254 else "uint16"
