"""The networks' view of the inputs: one radiometric scale for all inputs, then 0..1.

The networks were trained on 8-bit imagery (value / 255): clouds saturate near white, ground
sits mid-grey. Every input must reach them on ONE common scale, so that "brighter than the
other dates here" survives; a per-input stretch makes a cloud-covered image look like an
ordinary one. Inference, the quicklook and training all call :func:`to_unit` with a scale that
:func:`radiometry` chooses here (numpy only). The rule, in words and numbers, goes into ``info``
and the output tags.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from numpy.typing import ArrayLike
from rasterio.windows import Window

from .errors import WsfusionError

if TYPE_CHECKING:
    from .grid import AlignedReader

SAMPLE_SIDE = 1024  # longest side of the decimated read that estimates a scale
WHITE_REFLECTANCE = 0.3  # reflectance shown as white: ground mid-grey, clouds saturate
REFERENCE_PERCENTILES = (2.0, 98.0)  # of the clear-sky reference (per-pixel minimum)
REFERENCE_TARGET = (0.05, 0.70)  # where those percentiles land in the 0..1 network range
LEGACY_PERCENTILES = (2.0, 98.0)  # the pre-issue-12 per-input stretch (``--scale per-input``)
FLOAT_REFLECTANCE = (-0.5, 1.6)  # float inputs whose valid values all lie here are reflectance
LANDSAT_C2 = (2.75e-5, -0.2)  # Landsat Collection 2 level-2 reflectance = DN * gain + offset

SCALE_HELP = ("auto (uint8 as stored; declared scale/offset or Sentinel-2 tags; else one scale "
              "estimated from all inputs), s2 (reflectance x 10000: Sentinel-2 L1C/L2A, "
              "Landsat C1 SR), landsat-c2, reflectance (0..1 floats), LO,HI, a divisor D "
              "(= 0,D), or per-input (the old per-input 2-98 % stretch, for comparison only)")


@dataclass(frozen=True)
class ScaleSpec:
    """What the user asked for (``--scale``), parsed once for the CLI, QGIS and Python."""

    kind: str  # auto | s2 | landsat-c2 | reflectance | range | per-input
    lo: float = 0.0
    hi: float = 1.0
    text: str = "auto"


@dataclass(frozen=True)
class Radiometry:
    """The chosen scale: per input, per network band, stored values lo..hi → 0..1."""

    rule: str  # one line: how the scale was chosen, with its numbers
    lo: np.ndarray  # (K, C)
    hi: np.ndarray  # (K, C)

    @property
    def common(self) -> bool:
        return bool((self.lo == self.lo[:1]).all() and (self.hi == self.hi[:1]).all())

    def scales(self) -> list[np.ndarray]:
        """Per input a (C, 2) array of (lo, hi): the form :func:`network_view` takes."""
        return [np.stack([lo, hi], axis=1) for lo, hi in zip(self.lo, self.hi)]


def parse_scale(text: str | ScaleSpec | None) -> ScaleSpec:
    """``--scale`` text → ScaleSpec; a clear WsfusionError naming the accepted forms."""
    if isinstance(text, ScaleSpec):
        return text
    t = (text or "auto").strip().lower().replace(" ", "")
    if t in ("auto", ""):
        return ScaleSpec("auto", text="auto")
    if t in ("s2", "sentinel-2", "sentinel2", "reflectance10000", "x10000"):
        return ScaleSpec("s2", 0.0, WHITE_REFLECTANCE * 10000, "s2")
    if t in ("landsat-c2", "landsatc2", "c2"):
        gain, off = LANDSAT_C2
        return ScaleSpec("landsat-c2", -off / gain, (WHITE_REFLECTANCE - off) / gain, "landsat-c2")
    if t in ("reflectance", "refl"):
        return ScaleSpec("reflectance", 0.0, WHITE_REFLECTANCE, "reflectance")
    if t in ("per-input", "perinput", "legacy"):
        return ScaleSpec("per-input", text="per-input")
    try:
        parts = [float(p) for p in t.split(",")]
    except ValueError:
        parts = []
    # The networks compute in float32 and to_unit divides by max(HI - LO, 1e-12): a number
    # beyond float32 (inf, 1e400, 1e200) or a span that overflows or falls below that floor
    # (1e-300) would turn every value into NaN or one constant, and still say "learned".
    limit, floor = float(np.finfo(np.float32).max), 1e-12
    if parts and len(parts) <= 2 and not all(np.isfinite(parts) & (np.abs(parts) <= limit)):
        raise WsfusionError(f"--scale {text!r}: not a finite number within float32's range "
                            f"(±{limit:.3g})")
    lo, hi = (0.0, parts[0]) if len(parts) == 1 else (parts + [0.0, 0.0])[:2]
    with np.errstate(over="ignore"):
        span = float(np.float32(hi) - np.float32(lo))
    if len(parts) <= 2 and hi > lo and not floor <= span <= limit:
        raise WsfusionError(f"--scale {text!r}: the range is too "
                            f"{'narrow' if span < floor else 'wide'} for float32 "
                            f"(HI - LO must lie within {floor:g}..{limit:.3g})")
    if len(parts) == 1 and parts[0] > 0:
        return ScaleSpec("range", 0.0, parts[0], t)
    if len(parts) == 2 and parts[1] > parts[0]:
        return ScaleSpec("range", parts[0], parts[1], t)
    raise WsfusionError(f"--scale {text!r} not understood; use {SCALE_HELP}")


def to_unit(values: np.ndarray, lo: ArrayLike, hi: ArrayLike) -> np.ndarray:
    """Stored values (C, ...) → float32 0..1 on the scale lo..hi (per band): the one formula
    inference, quicklook and training share (training's uint8 tiles: lo 0, hi 255)."""
    lo = np.asarray(lo, np.float32).reshape((-1,) + (1,) * (values.ndim - 1))
    hi = np.asarray(hi, np.float32).reshape(lo.shape)
    x = values.astype(np.float32)
    x -= lo
    x /= np.maximum(hi - lo, np.float32(1e-12))
    return np.clip(x, 0.0, 1.0, out=x)


def declared_scale(dtype: str, tags: dict[str, str], scales: Sequence[float],
                   offsets: Sequence[float]) -> tuple[float, float, str] | None:
    """(lo, hi, why) from what a file declares about its radiometry, else None: uint8 is
    value / 255; a GDAL band scale/offset or Sentinel-2 quantification tags give reflectance."""
    if np.dtype(dtype) == np.uint8:
        return 0.0, 255.0, "uint8 as stored (value / 255, as in training)"
    sc, of = (float(scales[0]) if scales else 1.0), (float(offsets[0]) if offsets else 0.0)
    if sc not in (0.0, 1.0) or of != 0.0:
        return (-of / sc, (WHITE_REFLECTANCE - of) / sc,
                f"declared band scale {sc:g} / offset {of:g} (reflectance)")
    up = {k.upper(): v for k, v in tags.items()}
    q = up.get("BOA_QUANTIFICATION_VALUE") or up.get("QUANTIFICATION_VALUE")
    if q:
        add = float(up.get("BOA_ADD_OFFSET") or up.get("RADIO_ADD_OFFSET") or 0.0)
        return (-add, WHITE_REFLECTANCE * float(q) - add,
                f"Sentinel-2 tags: quantification {float(q):g}, offset {add:g}")
    return None


def estimate_joint(data: Sequence[np.ndarray], valid: Sequence[np.ndarray]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """One (lo, hi) per band for ALL inputs, from their valid pixels together.

    The clear-sky reference is the per-pixel minimum over the valid inputs (clouds brighten,
    so they do not inflate it); per band, its 2nd/98th percentiles land on 0.05/0.70 of the
    network range, where ground sits in 8-bit training imagery, so clouds stay near white.
    Per band, like a true- or false-colour composite: bands of very different brightness
    (NIR, SWIR, red) all reach the range the networks know."""
    ref = np.full(data[0].shape, np.inf)  # (C, h, w), a running minimum: no K-fold stack
    for d, v in zip(data, valid):
        np.minimum(ref, np.where(v[None], d, np.inf), out=ref)
    seen = np.isfinite(ref[0])
    c = ref.shape[0]
    lo, hi = np.zeros(c), np.ones(c)
    if not seen.any():
        return lo, hi
    t0, t1 = REFERENCE_TARGET
    for b in range(c):
        p0, p1 = np.percentile(ref[b][seen], REFERENCE_PERCENTILES)
        span = max(p1 - p0, 1e-9 * max(abs(p1), 1.0)) / (t1 - t0)
        lo[b], hi[b] = p0 - t0 * span, p0 - t0 * span + span
    return lo, hi


def _looks_like_reflectance(data: Sequence[np.ndarray], valid: Sequence[np.ndarray]) -> bool:
    vals = [d[:, v] for d, v in zip(data, valid) if v.any()]
    if not vals:
        return False
    lo = min(float(np.nanmin(x)) for x in vals)
    hi = max(float(np.nanmax(x)) for x in vals)
    return FLOAT_REFLECTANCE[0] <= lo and hi <= FLOAT_REFLECTANCE[1]


def _per_input(data: Sequence[np.ndarray], valid: Sequence[np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = [], []
    for d, v in zip(data, valid):
        lo_i, hi_i = [], []
        for band in d:
            vals = band[v].astype(np.float64)
            a, b = (np.percentile(vals, LEGACY_PERCENTILES) if vals.size else (0.0, 1.0))
            lo_i.append(a)
            hi_i.append(b if b > a else a + 1.0)
        lo.append(lo_i)
        hi.append(hi_i)
    return np.array(lo, float), np.array(hi, float)


def radiometry(data: Sequence[np.ndarray], valid: Sequence[np.ndarray], dtypes: Sequence[str],
               spec: ScaleSpec | str | None = None, *,
               declared: Sequence[tuple[float, float, str] | None] | None = None,
               bands: Sequence[int] | None = None) -> Radiometry:
    """Choose the scale for K inputs from their (decimated) network bands.

    data: K arrays (C, h, w) of stored values, valid: K (h, w) bools, declared: per input what
    :func:`declared_scale` found (None: nothing). Never per input unless ``per-input`` is asked."""
    spec = parse_scale(spec)
    k, c = len(data), (data[0].shape[0] if data else 0)
    names = f" bands {','.join(map(str, bands))}" if bands else ""

    def common(lo: ArrayLike, hi: ArrayLike, why: str) -> Radiometry:
        lo = np.broadcast_to(np.asarray(lo, float), (c,))
        hi = np.broadcast_to(np.asarray(hi, float), (c,))
        nums = "; ".join(f"{a:.6g}..{b:.6g}" for a, b in zip(lo, hi))
        if c > 1 and (lo == lo[0]).all() and (hi == hi[0]).all():
            nums = f"{lo[0]:.6g}..{hi[0]:.6g} (every band)"
        return Radiometry(f"{why}; one scale for all {k} inputs,{names} → 0..1: {nums}",
                          np.tile(lo, (k, 1)), np.tile(hi, (k, 1)))

    if spec.kind == "per-input":
        lo, hi = _per_input(data, valid)
        return Radiometry(f"per-input {LEGACY_PERCENTILES[0]:g}-{LEGACY_PERCENTILES[1]:g} % "
                          "stretch (the old rule; inputs lose their relative brightness)", lo, hi)
    if spec.kind != "auto":
        return common(spec.lo, spec.hi, f"--scale {spec.text}")
    decl = [d for d in (declared or []) if d is not None]
    if all(np.dtype(t) == np.uint8 for t in dtypes):
        return common(0.0, 255.0, "uint8 as stored (value / 255, as in training)")
    if decl and len(decl) == k and len({d[:2] for d in decl}) == 1:
        return common(decl[0][0], decl[0][1], decl[0][2])
    if all(np.dtype(t).kind == "f" for t in dtypes) and _looks_like_reflectance(data, valid):
        return common(0.0, WHITE_REFLECTANCE,
                      f"float values within {FLOAT_REFLECTANCE[0]:g}..{FLOAT_REFLECTANCE[1]:g}"
                      " read as reflectance")
    lo, hi = estimate_joint(data, valid)
    return common(lo, hi, f"estimated jointly: {REFERENCE_PERCENTILES[0]:g}/"
                          f"{REFERENCE_PERCENTILES[1]:g} % of the per-pixel minimum over the "
                          f"valid inputs, per band → {REFERENCE_TARGET[0]:g}/"
                          f"{REFERENCE_TARGET[1]:g}")


def file_declaration(path: str | os.PathLike, bands: Sequence[int],
                     allow_remote: Sequence[str] = ()) -> tuple[float, float, str] | None:
    """What ``path`` declares about the radiometry of its first network band (see
    :func:`declared_scale`). Opened through the input guard, like every input (remote ones
    under the patterns they were admitted with)."""
    from .input_guard import open_input

    with open_input(path, allow_remote) as src:
        tags = dict(src.tags())
        b = bands[0] if bands else 1
        tags.update(src.tags(b))
        return declared_scale(src.dtypes[b - 1], tags, [src.scales[b - 1]],
                              [src.offsets[b - 1]])


def view_radiometry(readers: list[AlignedReader], bands: tuple[int, ...],
                    spec: ScaleSpec | str | None = None) -> Radiometry:
    """The scale of a fuse run: one decimated read of every input on the output grid (computed
    once before tiling, so every tile sees the same deterministic scaling)."""
    spec = parse_scale(spec)
    data, valid = [], []
    # All-uint8 inputs under ``auto`` are value / 255 (radiometry() looks at no pixels then).
    uint8 = spec.kind == "auto" and all(np.dtype(rd.info.dtype) == np.uint8 for rd in readers)
    needs_pixels = spec.kind == "per-input" or (spec.kind == "auto" and not uint8)
    idx = [b - 1 for b in bands]
    for rd in readers:
        g = rd.grid
        if needs_pixels:
            f = max(1.0, max(g.width, g.height) / SAMPLE_SIDE)
            shape = (max(1, round(g.height / f)), max(1, round(g.width / f)))
            d, v = rd.read(Window(0, 0, g.width, g.height), out_shape=shape)
            data.append(d[idx])
            valid.append(v)
        else:
            data.append(np.zeros((len(idx), 1, 1)))
            valid.append(np.zeros((1, 1), bool))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        declared = ([file_declaration(rd.info.path, bands, rd.info.allow_remote)
                     for rd in readers]
                    if spec.kind == "auto" and not uint8 else None)
    return radiometry(data, valid, [rd.info.dtype for rd in readers], spec,
                      declared=declared, bands=bands)


def network_view(data: np.ndarray, valid: np.ndarray, bands: tuple[int, ...],
                 scales: Sequence[np.ndarray], norm: dict[str, Any]) -> np.ndarray:
    """(K, C, h, W) original values → (K, len(bands), h, W) float32 normalised network input;
    invalid pixels are 0 (their fusion weight is 0 anyway)."""
    k = data.shape[0]
    idx = [b - 1 for b in bands]
    out = np.empty((k, len(idx)) + data.shape[2:], dtype=np.float32)
    # A segmentation-only view reads the image bands of a model with evidence: the first
    # entries of its normalisation.
    mean = np.asarray(norm.get("mean", [0.0] * len(idx)), dtype=np.float32)[:len(idx)]
    std = np.asarray(norm.get("std", [1.0] * len(idx)), dtype=np.float32)[:len(idx)]
    for i in range(k):
        x = to_unit(data[i, idx], scales[i][:, 0], scales[i][:, 1])
        x -= mean[:, None, None]
        x /= std[:, None, None]
        x[:, ~valid[i]] = 0.0
        out[i] = x
    return out
