"""What the networks read in a run: the image bands, the evidence bands, and which model.

``fuse`` and ``info`` both call :func:`choose` with the inputs' headers, so ``info`` says exactly
what ``fuse`` will do. The rule:

- Each input's layout is recognised (sensors.recognise). When all inputs share one, its true
  colour is the default image bands (Sentinel-2 and Landsat 8/9: 4,3,2), not 1,2,3.
- ``evidence="auto"`` (the default): where the shared layout is recognised and a shipped model
  was trained for it (its evidence contract names the layout), that model runs with its
  evidence bands found by name in the layout; otherwise the RGB model, and the reason is said.
- ``evidence="none"``: an RGB model (the shipped default unless weights are given).
- Among RGB models, ``auto`` and ``none`` take the shipped model trained on real satellite
  clouds for inputs of the data types its card names (uint16, int16, float: radiometric
  satellite products), and the default (aerial) model for 8-bit imagery: the satellite model
  wins on real Sentinel-2 and Landsat clouds but treats an undeclared black fill as the
  darkest, best input, which 8-bit aerial mosaics often hold.
- ``evidence=(b1, b2, ...)``: these 1-based band numbers are the model's evidence bands, in
  the model's order; the model is the given weights, or the shipped model of the recognised
  layout.

Evidence bands reach the quality net as reflectance clipped to 0..1 (the layout's rule, or the
file's declared scale/offset or Sentinel-2 offset tags), then normalised by the model's
``normalisation``: in the engine they are just more network bands with their own scale, so
every path that carries the bands and scales (local, chunked, Dask, CUDA) carries them too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

from .errors import InputError, WeightsError, WsfusionError
from .options import DEFAULT_BANDS
from .sensors import LAYOUTS, Layout, recognise

if TYPE_CHECKING:
    from .grid import AlignedReader, RasterInfo
    from .view import Radiometry, ScaleSpec
    from .weights import ModelInfo

PathLike = Union[str, os.PathLike]
EvidenceRequest = Union[str, Sequence[int], None]
REFLECTANCE_WHITE = 0.3  # the image bands of an evidence model: reflectance / 0.3 (``s2``)


@dataclass(frozen=True)
class NetworkInput:
    """The networks' bands and model for one run, decided before any pixel is read."""

    bands: tuple[int, ...]  # image (RGB) bands, 1-based
    evidence: tuple[int, ...]  # evidence bands, 1-based, in the model's order
    evidence_names: tuple[str, ...]
    layout: Layout | None
    weights: Path | None  # None: no model needed / none shipped
    # stored value -> reflectance for the evidence bands (and the image bands of a model
    # trained on reflectance): gain, offset, and where they come from
    reflectance: tuple[float, float, str] | None
    image_reflectance: bool  # the image bands are seen as reflectance / 0.3
    why: str  # one line: the layout, the evidence, the model, and why

    @property
    def all_bands(self) -> tuple[int, ...]:
        """The bands the networks read, image then evidence (the engine's ``bands``)."""
        return self.bands + self.evidence


def parse_evidence(text: EvidenceRequest) -> str | tuple[int, ...]:
    """``auto`` / ``none`` / ``"11,12,1"`` (or a sequence of ints) → "auto", "none" or bands."""
    if text is None:
        return "auto"
    if not isinstance(text, str):
        bands = tuple(int(b) for b in text)
    else:
        t = text.strip().lower()
        if t in ("", "auto"):
            return "auto"
        if t == "none":
            return "none"
        from .options import parse_bands

        try:
            parsed = parse_bands(t)
        except ValueError as exc:
            raise WsfusionError(f"evidence bands: {exc}; or auto, none") from None
        bands = parsed or ()
    if not bands or min(bands) < 1:
        raise WsfusionError("evidence bands are 1-based band numbers, e.g. 11,12,1")
    return bands


def shipped_models() -> list[tuple[Path, ModelInfo]]:
    """The weights files shipped in the package, with their metadata (headers only)."""
    from .weights import default_weights_path, read_info

    folder = default_weights_path().parent
    out = []
    for path in sorted(folder.glob("*.safetensors")):
        try:
            out.append((path, read_info(path)))
        except WsfusionError:
            continue
    return out


def shipped_for(layout: Layout, models: Sequence[tuple[Path, ModelInfo]] | None = None
                ) -> tuple[Path, ModelInfo] | None:
    """The shipped model trained for this layout (its evidence contract names it), if any;
    ``models``: :func:`shipped_models` when the caller has read them already."""
    for path, info in shipped_models() if models is None else models:
        if layout.key in info.layouts and info.evidence_bands and \
                layout.bands_of(info.evidence_bands) is not None:
            return path, info
    return None


def shipped_rgb_for(dtypes: Sequence[str],
                    models: Sequence[tuple[Path, ModelInfo]] | None = None
                    ) -> tuple[Path, ModelInfo] | None:
    """The shipped RGB model (no evidence) trained for inputs of these data types, if any: the
    satellite model for uint16 / int16 / float reflectance, where 8-bit display imagery
    (aerial orthophotos, true-colour products) keeps the default model."""
    for path, info in shipped_models() if models is None else models:
        if not info.evidence_bands and info.dtypes and set(dtypes) <= set(info.dtypes):
            return path, info
    return None


def common_layout(infos: Sequence[RasterInfo]) -> tuple[Layout | None, str]:
    """The layout every input shares, or None and why not (one line)."""
    recs = [recognise(i.count, i.dtype, i.descriptions) for i in infos]
    first = recs[0].layout
    if first is None:
        return None, f"{infos[0].path.name}: {recs[0].how}"
    for info, rec in zip(infos[1:], recs[1:]):
        if rec.layout is None or rec.layout.key != first.key:
            what = rec.layout.title if rec.layout else rec.how
            return None, (f"inputs differ: {infos[0].path.name} is {first.title}, "
                          f"{info.path.name} {what}")
    return first, f"{first.title}, recognised from {recs[0].how}"


def reflectance_rule(info: RasterInfo, layout: Layout | None, scale_kind: str,
                     band: int) -> tuple[float, float, str] | None:
    """Stored value → reflectance (gain, offset, why) for ``band`` of ``info``: a declared
    band scale/offset or Sentinel-2 quantification/offset tags, else the layout's rule, else a
    reflectance ``scale`` (s2, landsat-c2, reflectance), else None."""
    import numpy as np

    from .view import LANDSAT_C2, file_declaration

    decl = (file_declaration(info.path, (band,), info.allow_remote)
            if np.dtype(info.dtype) != np.uint8 else None)  # uint8 declares value / 255 only
    if decl is not None:  # lo..hi are the stored values of reflectance 0..0.3
        lo, hi, why = decl
        gain = REFLECTANCE_WHITE / (hi - lo)
        return gain, -lo * gain, why
    if layout is not None:
        return layout.gain, layout.offset, f"{layout.title} convention"
    if scale_kind == "s2":
        return 1e-4, 0.0, "scale s2 (reflectance x 10000)"
    if scale_kind == "landsat-c2":
        return LANDSAT_C2[0], LANDSAT_C2[1], "scale landsat-c2"
    if scale_kind == "reflectance":
        return 1.0, 0.0, "scale reflectance"
    return None


def choose(infos: Sequence[RasterInfo], request: EvidenceRequest = "auto",
           bands: Sequence[int] | None = None, weights: PathLike | None = None,
           scale_kind: str = "auto", needs_model: bool = True) -> NetworkInput:
    """Decide the networks' bands and model (see the module docstring). Raises a one-line
    WsfusionError naming the file where the request cannot be met."""
    req = parse_evidence(request)
    layout, how = common_layout(infos)
    image = tuple(bands) if bands else (layout.rgb if layout else DEFAULT_BANDS)
    first = infos[0]
    if not needs_model:  # composites: no weights read (they run without safetensors/torch)
        return NetworkInput(image, (), (), layout, None, None, False,
                            f"layout: {how}" if layout else f"layout not recognised ({how})")
    from .weights import read_info, resolve_weights

    models = shipped_models() if weights is None else []  # each header read once
    shipped = shipped_for(layout, models) if layout is not None and req != "none" else None
    by_type = (shipped_rgb_for([i.dtype for i in infos], models)
               if not isinstance(req, tuple) else None)
    try:
        path = Path(weights) if weights is not None else (
            shipped[0] if shipped is not None else
            by_type[0] if by_type is not None else resolve_weights(None))
    except WeightsError:
        path = None
    if path is None:
        return NetworkInput(image, (), (), layout, None, None, False, "no model shipped")
    info = read_info(path)
    names = tuple(info.evidence_bands)
    lay_text = f"layout: {how}" if layout else f"layout not recognised ({how})"
    if not names:
        if isinstance(req, tuple):
            raise InputError(f"the model {info.name} ({path.name}) reads no evidence bands, "
                             f"but evidence bands {','.join(map(str, req))} were given",
                             path=path, hint="give no evidence bands, or a model that reads "
                                             "them")
        why = "RGB model"
        if req == "auto" and weights is None:
            why += (" (no shipped model reads evidence for this layout)" if layout else
                    " (no evidence: the layout is not recognised)")
        if weights is None and by_type is not None and path == by_type[0]:
            why += (f" for {'/'.join(sorted({i.dtype for i in infos}))} inputs (trained on "
                    "real satellite clouds; 8-bit imagery gets the aerial default)")
        return NetworkInput(image, (), (), layout, path, None, False,
                            f"{lay_text}; evidence: none; {why} {info.name}")
    # An evidence model.
    if req == "none":
        raise InputError(f"the model {info.name} reads evidence bands ({', '.join(names)}) "
                         "and cannot run without them", path=path,
                         hint="give its evidence bands, or an RGB model")
    if isinstance(req, tuple):
        bad = next((b for b in req if b > first.count), None)
        if bad is not None:
            raise InputError(f"has {first.count} band(s); evidence band {bad} does not exist",
                             path=first.path)
        if len(req) != len(names):
            raise InputError(f"{len(req)} evidence band(s) given ({','.join(map(str, req))}) "
                             f"but the model reads {len(names)} ({', '.join(names)})",
                             path=path)
        ev = req
        src = "as given"
    else:
        found = layout.bands_of(names) if layout is not None else None
        if found is None:
            raise InputError(f"the model {info.name} reads evidence bands "
                             f"({', '.join(names)}) that this input's layout does not name "
                             f"({how})", path=first.path,
                             hint="give the evidence band numbers, or evidence none with an "
                                  "RGB model")
        ev, src = found, "by name"
    bad = next((b for b in ev if b > first.count), None)
    if bad is not None:
        raise InputError(f"has {first.count} band(s); evidence band {bad} does not exist",
                         path=first.path)
    rule = reflectance_rule(first, layout, scale_kind, ev[0])
    if rule is None:
        raise InputError("cannot tell the reflectance of the evidence bands (no recognised "
                         "layout, no declared scale/offset)", path=first.path,
                         hint="give the scale: s2, landsat-c2 or reflectance")
    image_refl = info.evidence.get("image_scale") == "reflectance"
    listed = ", ".join(f"{n} (band {b})" for n, b in zip(names, ev))
    return NetworkInput(image, tuple(ev), names, layout, path, rule, image_refl,
                        f"{lay_text}; evidence {src}: {listed}; reflectance: {rule[2]}; "
                        f"model {info.name} ({path.name})")


def radiometry_for(readers: Sequence[AlignedReader], net: NetworkInput,
                   spec: ScaleSpec | str | None = None) -> Radiometry:
    """The run's scale for all network bands: the image bands by the ``scale`` rule (under
    ``auto``, reflectance / 0.3 for a model trained on reflectance), then the evidence bands
    as reflectance 0..1 (the model's normalisation follows in the network view)."""
    import numpy as np

    from .view import Radiometry, ScaleSpec, parse_scale, view_radiometry

    spec = parse_scale(spec)
    if net.image_reflectance and spec.kind == "auto" and net.reflectance is not None:
        gain, off, why = net.reflectance
        spec = ScaleSpec("range", (0.0 - off) / gain, (REFLECTANCE_WHITE - off) / gain,
                         f"reflectance / {REFLECTANCE_WHITE:g} ({why}), as the model was "
                         "trained")
        image = view_radiometry(list(readers), net.bands, spec)
        rule = image.rule.replace(f"--scale {spec.text}", spec.text)
    else:
        image = view_radiometry(list(readers), net.bands, spec)
        rule = image.rule
    if not net.evidence or net.reflectance is None:
        return image
    gain, off, why = net.reflectance
    k, e = len(readers), len(net.evidence)
    lo = np.full((k, e), (0.0 - off) / gain)
    hi = np.full((k, e), (1.0 - off) / gain)
    return Radiometry(f"{rule}; evidence {', '.join(net.evidence_names)}: reflectance 0..1 "
                      f"({why}), normalised as the model says",
                      np.concatenate([image.lo, lo], axis=1),
                      np.concatenate([image.hi, hi], axis=1))


def layouts_help() -> str:
    """The recognised layouts, for help texts."""
    return "; ".join(f"{k}: {v.title}" for k, v in LAYOUTS.items())


__all__ = ["NetworkInput", "choose", "common_layout", "layouts_help", "parse_evidence",
           "radiometry_for", "reflectance_rule", "shipped_for", "shipped_models",
           "shipped_rgb_for"]
