"""``inspect()``: what ``wsfusion-raster info`` prints (grids, masks, overlap, and what fuse
would do). It applies fuse's own checks (grid.alignment_problems, options.band_problem,
writers.output_format) and lists the problems instead of raising. No torch is imported."""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Sequence, Union

from . import gdal_errors
from .errors import InputError, WsfusionError, only_wsfusion_errors, quiet_warnings
from .evidence import choose, radiometry_for
from .grid import AlignedReader, RasterInfo, align, alignment_problems, describe
from .masks import MaskRule, mask_share
from .masks import attach as attach_masks
from .masks import mask_rule as parse_mask_rule
from .options import DEFAULT_BANDS, band_problem, index_dtype, selection_problem
from .remote import patterns
from .view import SAMPLE_SIDE, ScaleSpec, parse_scale
from .writers import output_format

PathLike = Union[str, os.PathLike]


@dataclass
class InspectReport:
    """The grids, masks, overlap, and what fuse would do."""

    reference: RasterInfo
    inputs: list[RasterInfo]
    overlaps: list[float]
    warped: list[bool]
    bands: tuple[int, ...]
    problems: list[str] = field(default_factory=list)
    weights: str | None = None
    scale: str | None = None  # the radiometric rule fuse would use for the networks
    networks: str | None = None  # layout, evidence and model (evidence.choose's ``why``)
    method: str = "learned"
    selection: str = "blend"
    # What fuse would do with a segmentation output (the resolution guard, resolution.py)
    segmentation: str | None = None
    # Per input: the share of its own valid pixels its sensor mask removes (None: no mask or
    # not measured because fuse would refuse the inputs)
    mask_shares: list[float | None] = field(default_factory=list)

    def to_text(self) -> str:
        r = self.reference
        lines = [f"reference grid: {r.label}",
                 f"  {_grid_text(r)}"]
        for i, (info, ov, wp) in enumerate(zip(self.inputs, self.overlaps, self.warped), 1):
            lines += [f"input {i}: {info.label}",
                      f"  {_grid_text(info)}",
                      f"  bands: {info.count} x {info.dtype}"
                      + (f" + alpha (band {info.alpha})" if info.alpha else "")
                      + f"; validity: {info.validity_text}",
                      f"  covers {100 * ov:.1f}% of the reference; "
                      + ("warped onto the reference grid (bilinear)" if wp
                         else "on the reference grid (read directly)")]
            if info.sensor_mask is not None:
                m = info.sensor_mask
                share = self.mask_shares[i - 1] if i - 1 < len(self.mask_shares) else None
                lines.append(f"  sensor mask: {m.label} ({m.rule.describe()} invalid; nearest "
                             "neighbour onto the reference)"
                             + (f"; removes {100 * share:.1f}% of its valid pixels"
                                if share is not None else ""))
        lines.append("fuse would:")
        if self.problems:
            lines += [f"  refuse: {p}" for p in self.problems]
        else:
            fmt = output_format(self.inputs, self.reference)
            lines.append(f"  write {fmt.source.count} band(s) {fmt.dtype} on the reference "
                         f"grid, {fmt.text}")
            lines.append(f"  feed bands {','.join(map(str, self.bands))} to the networks"
                         " (output keeps original values)")
            if self.networks:
                lines.append(f"  networks: {self.networks}")
            if self.scale:
                lines.append(f"  network scale: {self.scale}")
            lines.append("  learned method: " + (f"model {self.weights}" if self.weights else
                                                 "no default weights shipped; choose a weights "
                                                 "file or use the mean or median method"))
            lines.append(f"  selection: {selection_text(self.method, self.selection)}")
            if self.selection == "best":
                lines.append(f"  input index (if asked): 1 band {index_dtype(len(self.inputs))}, "
                             f"1..{len(self.inputs)} in input order, 0 where no input is valid")
            if self.segmentation:
                lines.append(f"  segmentation: {self.segmentation}")
        return "\n".join(lines)


def selection_text(method: str, selection: str) -> str:
    """What the selection does with ``method``'s weights, in one line (info, the docs' terms)."""
    if selection != "best":
        return ("blend: each pixel the weighted average of the valid inputs" if method in
                ("learned", "mean") else f"blend: the {method} composite of the valid inputs")
    what = {"learned": "the highest quality weight (after the tile cross-fade); ties: the "
                       "lowest input number",
            "mean": "the highest (equal) weight: the first valid input in input order, a "
                    "priority mosaic",
            "min-blue": "the lowest blue (the min-blue composite's choice; ties: the lower "
                        "other bands, then the lowest input number)"}.get(method, "")
    return f"best pixel: each pixel copied unchanged, all bands, from the valid input with {what}"


def _grid_text(info: RasterInfo) -> str:
    crs = info.crs.to_string() if info.crs else "no CRS"
    xres, yres = info.res
    return (f"{info.width} x {info.height} px, {crs}, pixel {xres:g} x {yres:g}, "
            f"origin ({info.transform.c:.10g}, {info.transform.f:.10g})")


@only_wsfusion_errors
@quiet_warnings
@gdal_errors.capture()
def inspect(inputs: Sequence[PathLike], reference: PathLike | None = None,
            bands: Sequence[int] | None = None, scale: str | ScaleSpec | None = None,
            allow_remote: Sequence[str] | str | None = None,
            evidence_bands: str | Sequence[int] | None = "auto",
            weights: PathLike | None = None,
            allow_large: bool = False, method: str = "learned",
            selection: str = "blend",
            masks: Sequence[PathLike | None] | None = None,
            mask_rule: MaskRule | str | None = None) -> InspectReport:
    """Describe the inputs and what fuse would do for the learned method; incompatibilities
    are listed, not raised (unreadable files still raise InputError). ``allow_remote``,
    ``evidence_bands``, ``weights``, ``allow_large``, ``masks`` and ``mask_rule`` as for
    ``fuse`` (the free disk space is checked by ``fuse`` only: it depends on the output);
    ``method`` and ``selection`` as fuse would be given them (a combination fuse refuses is
    listed); each mask's share of its input's valid pixels is measured on a decimated read
    (as the scale is)."""
    if not inputs:
        raise InputError("no input rasters given")
    remote = patterns(allow_remote)
    mrule = parse_mask_rule(preset=mask_rule) if isinstance(mask_rule, str) else mask_rule
    infos = attach_masks([describe(p, remote) for p in inputs], masks, mrule, remote)
    ref = describe(reference, remote) if reference is not None else infos[0]
    spec = parse_scale(scale)
    errors, overlaps, warped = alignment_problems(infos, ref)
    problems = [str(e) for e in errors]
    if not errors and not allow_large:
        from .size_guard import extent_problem

        big = extent_problem(infos, ref, ref.grid())
        if big is not None:
            problems.append(str(big))
    net = None
    try:  # fuse's own decision: layout, default bands, evidence and model
        net = choose(infos, evidence_bands, tuple(bands) if bands else None, weights,
                     spec.kind)
    except WsfusionError as exc:
        problems.append(str(exc))
    chosen = net.bands if net is not None else (tuple(bands) if bands else DEFAULT_BANDS)
    bad = band_problem(chosen, infos[0].count, infos[0].path, explicit=bands is not None)
    if bad is not None:
        problems.append(str(bad))
    refused = selection_problem(method, selection)
    if refused is not None:
        problems.append(refused)
    wtext: str | None = None
    seg_note: str | None = None
    if net is not None and net.weights is not None:
        from .resolution import resolution_note
        from .weights import read_info

        model = read_info(net.weights)
        wtext = f"{model.name} ({net.weights.name})"
        seg_note = resolution_note(ref.grid(), model)
    rule = None
    shares: list[float | None] = []
    if not problems and net is not None:  # the rule fuse would apply, from the same read
        al = align(inputs, reference, remote)
        al.inputs = infos  # with their sensor masks
        with ExitStack() as stack:
            readers = [stack.enter_context(AlignedReader(i, al.grid)) for i in al.inputs]
            rule = radiometry_for(readers, net, spec).rule
        shares = [mask_share(i, al.grid, SAMPLE_SIDE) for i in al.inputs]
    return InspectReport(ref, infos, overlaps, warped, chosen, problems, wtext, rule,
                         net.why if net is not None else None, method, selection, seg_note, shares)

