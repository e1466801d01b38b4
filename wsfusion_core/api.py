"""``fuse()`` and ``inspect()``: the one entry point the CLI and the QGIS plugin share.

Data flows one way: inputs → aligned grid (grid.py) → tile-rows of windows (windows.py) →
networks or composite → blended into a rolling strip buffer → finished rows written (writers.py).
Only one tile-row strip (all inputs, full width) and one strip of accumulators are ever held,
so memory does not grow with raster height.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from rasterio.windows import Window

from .blend import StripBuffer, zero_invalid_tiles
from .composite import composite
from .errors import Cancelled, InputError, WeightsError, WsfusionError
from .grid import AlignedReader, RasterInfo, align, check_compatible, describe
from .grid import overlap_fraction as _overlap_fraction
from .view import ScaleSpec, network_view, parse_scale, view_radiometry
from .windows import WindowPlan, pad_to, plan_windows
from .writers import (
    BLOCK,
    OutputSet,
    check_outputs,
    natural_nodata,
    open_fused,
    open_quality,
    open_segmentation,
)

METHODS = ("learned", "mean", "median")
DEFAULT_BANDS = (1, 2, 3)
COMPOSITE_STRIP = 256  # rows per strip when no network runs (matches the GeoTIFF block height)


@dataclass
class FusionResult:
    output: Path
    segmentation: Path | None
    quality: Path | None
    method: str
    device: str
    model: str | None
    width: int
    height: int
    crs: str | None
    count: int
    tiles: int
    seconds: float


# ----------------------------------------------------------------------------- inspect


@dataclass
class InspectReport:
    """What ``wsfusion-raster info`` prints: the grids, masks, overlap, and what fuse would do."""

    reference: RasterInfo
    inputs: list[RasterInfo]
    overlaps: list[float]
    warped: list[bool]
    bands: tuple[int, ...]
    problems: list[str] = field(default_factory=list)
    weights: str | None = None
    scale: str | None = None  # the radiometric rule fuse would use for the networks

    def to_text(self) -> str:
        r = self.reference
        lines = [f"reference grid: {r.path}",
                 f"  {_grid_text(r)}"]
        for i, (info, ov, wp) in enumerate(zip(self.inputs, self.overlaps, self.warped), 1):
            lines += [f"input {i}: {info.path}",
                      f"  {_grid_text(info)}",
                      f"  bands: {info.count} x {info.dtype}"
                      + (f" + alpha (band {info.alpha})" if info.alpha else "")
                      + f"; validity: {_mask_text(info)}",
                      f"  covers {100 * ov:.1f}% of the reference; "
                      + ("warped onto the reference grid (bilinear)" if wp
                         else "on the reference grid (read directly)")]
        lines.append("fuse would:")
        if self.problems:
            lines += [f"  refuse: {p}" for p in self.problems]
        else:
            first = self.inputs[0]
            nd = first.nodata if first.nodata is not None else natural_nodata(first.dtype)
            lines.append(f"  write {first.count} band(s) {first.dtype} on the reference grid, "
                         f"nodata {nd} where no input is valid")
            lines.append(f"  feed bands {','.join(map(str, self.bands))} to the networks"
                         + " (output keeps original values)")
            if self.scale:
                lines.append(f"  network scale: {self.scale}")
            lines.append("  learned method: " + (f"model {self.weights}" if self.weights else
                                                 "no default weights shipped; pass --weights "
                                                 "or use --method mean/median"))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"reference": str(self.reference.path),
                "inputs": [{"path": str(i.path), "width": i.width, "height": i.height,
                            "bands": i.count, "dtype": i.dtype, "nodata": i.nodata,
                            "crs": i.crs.to_string() if i.crs else None,
                            "validity": i.mask_kind, "overlap": ov, "warped": wp}
                           for i, ov, wp in zip(self.inputs, self.overlaps, self.warped)],
                "problems": list(self.problems), "weights": self.weights, "scale": self.scale}


def _grid_text(info: RasterInfo) -> str:
    crs = info.crs.to_string() if info.crs else "no CRS"
    xres, yres = info.res
    return (f"{info.width} x {info.height} px, {crs}, pixel {xres:g} x {yres:g}, "
            f"origin ({info.transform.c:.10g}, {info.transform.f:.10g})")


def _mask_text(info: RasterInfo) -> str:
    return {"nodata": f"nodata value {info.nodata}", "alpha": f"alpha band {info.alpha}",
            "mask": "internal mask", "none": "all pixels (no nodata or mask)"}[info.mask_kind]


def inspect(inputs: Sequence[str | os.PathLike], reference: str | os.PathLike | None = None,
            bands: Sequence[int] | None = None, scale: str | ScaleSpec | None = None
            ) -> InspectReport:
    """Describe the inputs and what fuse would do; incompatibilities are listed, not raised
    (unreadable files still raise InputError)."""
    if not inputs:
        raise InputError("no input rasters given")
    infos = [describe(p) for p in inputs]
    ref = describe(reference) if reference is not None else infos[0]
    grid = ref.grid()
    bands = tuple(bands) if bands else DEFAULT_BANDS
    problems: list[str] = []
    try:
        check_compatible(infos)
    except InputError as exc:
        problems.append(str(exc))
    overlaps = [_overlap_fraction(i, grid) for i in infos]
    problems += [f"{i.path}: does not overlap the reference grid" for i, ov in zip(infos, overlaps)
                 if ov <= 0]
    bad = [b for b in bands if b < 1 or b > infos[0].count]
    if bad:
        problems.append(f"bands {bands} do not exist in {infos[0].path} "
                        f"({infos[0].count} image bands)")
    try:
        from .weights import default_weights_path, read_info

        wpath = default_weights_path()
        winfo = read_info(wpath)
        weights = f"{winfo.name} ({wpath.name})"
    except WsfusionError:
        weights = None
    spec = parse_scale(scale)
    rule = None
    if not problems:
        al = align(inputs, reference)
        with ExitStack() as stack:
            readers = [stack.enter_context(AlignedReader(i, al.grid)) for i in al.inputs]
            rule = view_radiometry(readers, bands, spec).rule
    return InspectReport(ref, infos, overlaps, [not grid.same_as(i) for i in infos], bands,
                         problems, weights, rule)


# ----------------------------------------------------------------------------- fuse


def fuse(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *,
         segmentation: str | os.PathLike | None = None,
         quality: str | os.PathLike | None = None,
         method: str = "learned",
         weights: str | os.PathLike | None = None,
         device: str = "auto",
         batch_size: int | None = None,
         overlap: int = 64,
         bands: Sequence[int] | None = None,
         scale: str | ScaleSpec | None = None,
         reference: str | os.PathLike | None = None,
         cog: bool = False,
         overwrite: bool = False,
         progress: Callable[[float], None] | None = None,
         cancel: Callable[[], bool] | None = None,
         log: Callable[[str], None] | None = None,
         ) -> FusionResult:
    """Fuse co-registered (or alignable) rasters into one GeoTIFF on the reference grid.

    ``learned`` weights every input per pixel by the quality net (invalid pixels weigh 0) and
    applies those weights to the original values of all bands; ``mean``/``median`` are per-pixel
    composites over the valid inputs. Optional outputs: the segmentation class map and the
    per-input quality weights. ``scale`` (see ``view.parse_scale``) sets the one radiometric
    scale on which the networks see all inputs. Nothing is written unless the whole run
    succeeds."""
    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    if method not in METHODS:
        raise WsfusionError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if overlap < 0:
        raise WsfusionError(f"overlap must be >= 0 (got {overlap})")
    if batch_size is not None and batch_size < 1:
        raise WsfusionError(f"batch size must be >= 1 (got {batch_size})")
    scale_spec = parse_scale(scale)
    if quality is not None and method == "median":
        raise WsfusionError("a quality output needs per-input weights: use method learned or mean")

    al = align(inputs, reference)
    out_path = Path(output)
    seg_path = Path(segmentation) if segmentation is not None else None
    q_path = Path(quality) if quality is not None else None
    targets = [p for p in (out_path, seg_path, q_path) if p is not None]
    sources = [i.path for i in al.inputs] + [al.reference.path]
    check_outputs(targets, sources, overwrite)

    net_bands = tuple(int(b) for b in bands) if bands else DEFAULT_BANDS
    needs_net = method == "learned" or seg_path is not None
    for b in net_bands if (needs_net or bands) else ():
        if b < 1 or b > al.count:
            hint = "" if bands else f" (choose bands, e.g. {','.join(['1'] * len(net_bands))})"
            raise InputError(f"{al.inputs[0].path}: has {al.count} image band(s); band {b} "
                             f"does not exist (bands {','.join(map(str, net_bands))} requested)"
                             + hint)

    runner = None
    if needs_net:
        runner = _load_runner(weights, device, method, seg_path is not None, batch_size, say)
        if len(net_bands) != runner.info.in_channels:
            raise InputError(f"the model reads {runner.info.in_channels} bands but "
                             f"{len(net_bands)} were chosen ({','.join(map(str, net_bands))})")
    dev_name = runner.device if runner else "cpu"

    grid = al.grid
    radiometry = next((i for i in al.inputs if i.path == al.reference.path), al.inputs[0])
    dtype = radiometry.dtype
    nodata = radiometry.nodata if radiometry.nodata is not None else natural_nodata(dtype)
    say(f"grid: {grid.width} x {grid.height} px, "
        f"{grid.crs.to_string() if grid.crs else 'no CRS'}, from {al.reference.path}")
    for info, wp, ov in zip(al.inputs, al.warped, al.overlaps):
        say(f"input {info.path.name}: {'warped (bilinear)' if wp else 'direct'}, "
            f"covers {100 * ov:.1f}%, validity from {info.mask_kind}")

    if runner is not None:
        if overlap > runner.info.tile_size // 2:
            # Beyond half a tile every pixel is computed 4+ times for no visible gain.
            tile = runner.info.tile_size
            raise WsfusionError(f"overlap {overlap} px is too large for the model's {tile} px "
                                f"tiles (at most {tile // 2})")
        plan = plan_windows(grid.height, grid.width, runner.info.tile_size, overlap)
    else:
        plan = plan_windows(grid.height, grid.width, COMPOSITE_STRIP, 0)
        plan = WindowPlan(plan.rows, plan_windows(1, grid.width, grid.width, 0).cols)
    shape = f"tile {runner.info.tile_size}, overlap {overlap}" if runner else "strips"
    say(f"plan: {plan.rows.count} x {plan.cols.count} tiles ({shape})")

    tags = {"WSFUSION_METHOD": method,
            "WSFUSION_INPUTS": ";".join(i.path.name for i in al.inputs)}
    if runner is not None:
        tags["WSFUSION_MODEL"] = runner.describe()
    cb = progress or (lambda _f: None)
    cb(0.0)

    with ExitStack() as stack:
        stack.enter_context(_gdal_cache(grid.width, al.count, dtype, len(al.inputs),
                                        seg_path is not None, q_path is not None))
        readers = [stack.enter_context(AlignedReader(i, grid)) for i in al.inputs]
        scales = None
        if runner is not None:
            view = view_radiometry(readers, net_bands, scale_spec)
            scales = view.scales()
            tags["WSFUSION_SCALE"] = view.rule
            say(f"network scale: {view.rule}")
        outs = stack.enter_context(OutputSet())
        fused_w = outs.add(open_fused(
            out_path, grid, al.count, dtype, nodata, cog, descriptions=_descriptions(radiometry),
            tags=tags, rgb=_is_rgb(radiometry)))
        seg_w = (outs.add(open_segmentation(seg_path, grid, cog, runner.info.class_names,
                                            runner.info.class_colours, tags))
                 if seg_path is not None else None)
        q_w = (outs.add(open_quality(q_path, grid, [i.path for i in al.inputs], cog, tags))
               if q_path is not None else None)
        engine = StripBuffer(plan, grid.width, al.count, len(al.inputs), dtype, nodata,
                         runner.info.num_classes if seg_w else 0, q_w is not None)
        done, total = 0, (plan.tile_count if runner else plan.rows.count)
        for r in range(plan.rows.count):
            _poll(cancel)
            y0, y1 = plan.row_span(r)
            data, valid = _read_strip(readers, Window(0, y0, grid.width, y1 - y0))
            engine.mark_valid(y0, valid.any(axis=0))
            if method == "learned":
                for batch in _batches(plan.tiles_in_row(r), runner.batch_size):
                    _poll(cancel)
                    fused, qual, seg = runner.learned(batch, plan, data, valid, scales,
                                                      net_bands, want_seg=seg_w is not None,
                                                      want_quality=q_w is not None)
                    for i, t in enumerate(batch):
                        engine.add_tile(t, plan.weight(t), fused[i],
                                        qual[i] if qual is not None else None,
                                        seg[i] if seg is not None else None)
                    done += len(batch)
                    cb(min(done / total, 0.99))
            else:
                engine.add_composite(y0, plan.rows.weights[r], data, valid, method,
                                     quality=q_w is not None)
                if seg_w is not None:
                    for batch in _batches(plan.tiles_in_row(r), runner.batch_size):
                        _poll(cancel)
                        seg = runner.segment(batch, plan, data, valid, scales, net_bands,
                                             method)
                        for i, t in enumerate(batch):
                            engine.add_tile(t, plan.weight(t), None, None, seg[i])
                        done += len(batch)
                        cb(min(done / total, 0.99))
                else:
                    done += 1
                    cb(min(done / total, 0.99))
            del data, valid
            engine.flush(plan.finished_before(r), fused_w, seg_w, q_w)
        _poll(cancel)
        outs.commit()
    cb(1.0)
    seconds = time.perf_counter() - t0
    say(f"done: {out_path} in {seconds:.1f} s")
    return FusionResult(
        output=out_path, segmentation=seg_path, quality=q_path, method=method, device=dev_name,
        model=runner.describe() if runner else None, width=grid.width, height=grid.height,
        crs=grid.crs.to_string() if grid.crs else None, count=al.count,
        tiles=plan.tile_count if runner else plan.rows.count, seconds=seconds)


def _gdal_cache(width: int, count: int, dtype: str, k: int, seg: bool, quality: bool):
    """Bound GDAL's block cache (default: 5 % of RAM, filled as the raster streams through) to
    one block row of every output plus room for reads: outputs are written in whole blocks, so
    GDAL never needs to keep a partial block."""
    import rasterio

    per_px = count * np.dtype(dtype).itemsize + (1 if seg else 0) + (4 * k if quality else 0)
    need = BLOCK * width * per_px + 32 * 2**20
    return rasterio.Env(GDAL_CACHEMAX=int(max(need, 64 * 2**20)))


def _poll(cancel: Callable[[], bool] | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled("cancelled by the caller; no output was written")


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _descriptions(info: RasterInfo) -> list[str | None]:
    import rasterio

    with rasterio.open(info.path) as src:
        return [src.descriptions[b - 1] for b in info.image_bands]


def _is_rgb(info: RasterInfo) -> bool:
    import rasterio
    from rasterio.enums import ColorInterp

    with rasterio.open(info.path) as src:
        ci = [src.colorinterp[b - 1] for b in info.image_bands[:3]]
    return ci == [ColorInterp.red, ColorInterp.green, ColorInterp.blue]


def _read_strip(readers: list[AlignedReader], window: Window) -> tuple[np.ndarray, np.ndarray]:
    """All inputs' bands and validity for one strip: (K, C, h, W) and (K, h, W)."""
    parts = [r.read(window) for r in readers]
    dtype = np.result_type(*[p[0].dtype for p in parts])
    data = np.stack([p[0].astype(dtype, copy=False) for p in parts])
    valid = np.stack([p[1] for p in parts])
    return data, valid


# ----------------------------------------------------------------------------- networks


class _Runner:
    """The loaded model on its device, run tile batch by tile batch."""

    def __init__(self, model, info, device: str, batch_size: int, path: Path) -> None:
        self.model, self.info, self.device, self.batch_size, self.path = (
            model, info, device, batch_size, path)

    def describe(self) -> str:
        prov = self.info.provenance or {}
        short = prov.get("summary") or ", ".join(
            f"{k}={v}" for k, v in list(prov.items())[:2] if isinstance(v, (str, int, float)))
        return f"{self.info.name} ({short})" if short else self.info.name

    def _tiles(self, batch, plan: WindowPlan, data: np.ndarray, valid: np.ndarray):
        """Cut the batch's tiles out of the strip, padded to the network tile:
        (B, K, C, T, T) original values and (B, K, T, T) validity."""
        th, tw = plan.rows.tile, plan.cols.tile
        d = np.stack([pad_to(data[..., t.x:t.x + t.width], th, tw) for t in batch])
        v = np.stack([pad_to(valid[..., t.x:t.x + t.width], th, tw) for t in batch])
        return d, v

    def _view(self, d: np.ndarray, v: np.ndarray, scales, bands) -> np.ndarray:
        return np.stack([network_view(di, vi, bands, scales, self.info.normalisation)
                         for di, vi in zip(d, v)])

    def _autocast(self):
        import contextlib

        import torch

        if self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def learned(self, batch, plan, data, valid, scales, bands, want_seg: bool,
                want_quality: bool):
        """Quality weights per input, applied to the original values of every band; the
        segmentation net reads the fused network view."""
        import torch

        from .model import fuse_by_quality

        d, v = self._tiles(batch, plan, data, valid)
        view = self._view(d, v, scales, bands)
        d = zero_invalid_tiles(d, v)
        with torch.inference_mode():
            dev = self.device
            img = torch.from_numpy(view).to(dev)
            val = torch.from_numpy(v).to(dev)
            with self._autocast():
                logits = self.model.quality_logits(img, val)  # set nets: valid only
            fused_view, w = fuse_by_quality(img, logits.float(), val)
            work = torch.float64 if d.dtype.itemsize > 2 else torch.float32
            orig = torch.from_numpy(d).to(dev, dtype=work)
            fused = (orig * w.to(work).unsqueeze(2)).sum(dim=1)
            seg = None
            if want_seg:
                with self._autocast():
                    seg_logits = self.model.segmentation(fused_view)
                seg = torch.softmax(seg_logits.float(), dim=1).cpu().numpy()
            return (fused.cpu().numpy(), w.cpu().numpy() if want_quality else None, seg)

    def segment(self, batch, plan, data, valid, scales, bands, method: str) -> np.ndarray:
        """Segmentation of a mean/median composite: its view is the composite of the inputs'
        network views (for mean, exactly the view of the composite)."""
        import torch

        d, v = self._tiles(batch, plan, data, valid)
        view = self._view(d, v, scales, bands)
        comp = np.stack([composite(vw, vi, method)[0] for vw, vi in zip(view, v)])
        with torch.inference_mode():
            x = torch.from_numpy(comp.astype(np.float32)).to(self.device)
            with self._autocast():
                logits = self.model.segmentation(x)
            return torch.softmax(logits.float(), dim=1).cpu().numpy()


def _resolve_device(device: str) -> str:
    import torch

    d = (device or "auto").lower()
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise WsfusionError(f"device {device!r} requested but torch finds no CUDA GPU "
                                "(use device auto or cpu)")
        return d
    if d == "cpu":
        return d
    raise WsfusionError(f"unknown device {device!r}; choose auto, cpu or cuda")


def _load_runner(weights, device: str, method: str, want_seg: bool, batch_size: int | None,
                 say) -> _Runner:
    try:
        import torch
    except ImportError:
        raise WsfusionError("the learned method and segmentation need PyTorch; install torch "
                            "or use --method mean / --method median") from None
    from .weights import default_weights_path, load_weights

    if weights is None:
        try:
            path = default_weights_path()
        except WeightsError as exc:
            if method != "learned" and want_seg:
                raise WeightsError(f"{exc.args[0].split(':')[0]}: segmentation needs a model and "
                                   "none is shipped; pass --weights PATH or drop --segmentation"
                                   ) from None
            raise
    else:
        path = Path(weights)
    dev = _resolve_device(device)
    if dev == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(os.cpu_count() or 1)
    model, info = load_weights(path, device=dev)
    bs = batch_size or (16 if dev.startswith("cuda") else 4)
    runner = _Runner(model, info, dev, bs, path)
    threads = f", {torch.get_num_threads()} threads" if dev == "cpu" else ""
    amp = ", mixed precision" if dev.startswith("cuda") else ""
    say(f"device: {dev}{threads}{amp}; batch {bs}")
    say(f"model: {runner.describe()} from {path}")
    return runner


__all__ = ["FusionResult", "InspectReport", "fuse", "inspect"]
