"""``fuse()``: the one entry point the CLI and the QGIS plugin share.

Data flows one way: validate → align (grid.py) → plan windows (windows.py) → one loop over
strips: read all inputs → engine (engines.py: networks or composite) blends into the rolling
strip buffer (blend.py) → finished rows go to the writers (writers.py), which publish all
outputs together at the end. Only one strip of inputs and one of accumulators is ever held,
so memory does not grow with raster height. ``inspect`` (the ``info`` report) is in report.py.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

import numpy as np

from . import gdal_errors
from .blend import FinishedRows, blend_device, buffer_for
from .engines import make_engine
from .engines import plan as plan_engine
from .errors import InputError, OutputError, WsfusionError, only_wsfusion_errors, quiet_warnings
from .evidence import choose, radiometry_for
from .grid import AlignedReader, align
from .loop import poll, run_plan
from .masks import MaskRule, with_fallback
from .masks import attach as attach_masks
from .masks import mask_rule as parse_mask_rule
from .options import (
    DEFAULT_MIN_AREA,
    DEFAULT_OVERLAP,
    METHODS,
    SELECTIONS,
    band_problem,
    check_choice,
    index_dtype,
    selection_problem,
)
from .remote import patterns
from .report import InspectReport, inspect
from .selection import Selector
from .view import ScaleSpec, parse_scale
from .writers import (
    BLOCK,
    AtomicGeoTIFF,
    OutputSet,
    check_outputs,
    gdal_cache,
    open_fused,
    open_index,
    open_quality,
    open_segmentation,
    output_format,
    output_path,
)

PathLike = Union[str, os.PathLike]
MIN_CHUNK = 256  # px: a chunk smaller than a tile spends most of its work on the halo
# A learned run holds one strip (300 rows × the raster's width) of every input, its blend
# buffers and class scores: ~34 MiB per 1000 columns at K = 6 with segmentation (571 MiB at
# 2048², 780 MiB at 8192², docs/benchmark.md). Wider rasters run in windows of AUTO_CHUNK px
# (the chunked engine, equal to the local result) so the peak stays under 1 GB at any size.
AUTO_CHUNK_WIDTH, AUTO_CHUNK = 10240, 8192

if TYPE_CHECKING:
    from .runner import ModelRunner


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
    # The model's classes (what the class map's colour table holds), for styling it.
    class_names: tuple[str, ...] = ()
    class_colours: tuple[tuple[int, ...], ...] = ()
    chunks: Any = None  # distributed.RunStats of a chunked or cluster run
    selection: str = "blend"
    selection_index: Path | None = None  # best-pixel selection's input index, when asked
    vectors: Path | None = None  # the GeoPackage of class features
    # One line each: what was asked for and not done, and why (e.g. the segmentation
    # resolution guard). Front ends show them as warnings; the run itself succeeded.
    warnings: tuple[str, ...] = ()


@only_wsfusion_errors
@quiet_warnings  # Python warnings to ``log``, never printed
@gdal_errors.capture()  # GDAL's messages recorded (writers check them), never printed
def fuse(inputs: Sequence[PathLike], output: PathLike, *,
         segmentation: PathLike | None = None,
         quality: PathLike | None = None,
         vectors: PathLike | None = None,
         min_area: float = DEFAULT_MIN_AREA,
         method: str = "learned",
         weights: PathLike | None = None,
         device: str = "auto",
         batch_size: int | None = None,
         overlap: int = DEFAULT_OVERLAP,
         bands: Sequence[int] | None = None,
         scale: str | ScaleSpec | None = None,
         reference: PathLike | None = None,
         cog: bool = False,
         overwrite: bool = False,
         verify: bool = False,
         progress: Callable[[float], None] | None = None,
         cancel: Callable[[], bool] | None = None,
         log: Callable[[str], None] | None = None,
         chunk: int | None = None,
         cluster: Any = None,
         resume: bool = False,
         compile: bool = False,
         bf16: bool = False,
         allow_remote: Sequence[str] | str | None = None,
         evidence_bands: str | Sequence[int] | None = "auto",
         allow_large: bool = False,
         selection: str = "blend",
         selection_index: PathLike | None = None,
         force_segmentation: bool = False,
         masks: Sequence[PathLike | None] | None = None,
         mask_rule: MaskRule | str | None = None,
         mask_fallback: str | None = None,
         ) -> FusionResult:
    """Fuse co-registered (or alignable) rasters into one GeoTIFF on the reference grid.

    ``learned`` weights every input per pixel by the quality net (invalid pixels weigh 0) and
    applies those weights to the original values of all bands; ``mean``/``median`` are per-pixel
    composites over the valid inputs. Optional outputs: the segmentation class map and the
    per-input quality weights, and ``vectors``: a GeoPackage with one polygon layer per mapped
    class of the class map (vectors.py; features under ``min_area`` m² dropped). Nothing is
    written unless the whole run succeeds; ``verify``
    decodes every output block before publishing; ``scale`` (see ``view.parse_scale``) sets
    the one radiometric scale on which the networks see all inputs. Only WsfusionError
    subclasses escape.

    ``chunk`` (pixels) runs the same engine window by window, ``cluster`` (a dask Client, a
    scheduler address or file, or a number of local workers) runs the windows on
    dask.distributed; both give the local result (see chunked.py). ``resume`` reuses the
    finished windows of an interrupted chunked run with the same settings.

    ``compile`` (``torch.compile`` the networks: pays off on large rasters) and ``bf16``
    (bfloat16 networks: faster where supported, outputs move by up to ~12 grey levels) are
    opt-in; the defaults give the float32 model's outputs (on CUDA too, TF32 off).

    ``allow_remote``: host / bucket patterns (``"data.example.org"``, ``"*.example.org"``,
    ``"s3://my-bucket"``, ``"*"``) whose remote inputs (URLs, /vsicurl/, /vsis3/, /vsigs/,
    /vsiaz/) and remote VRT sources are read; default none: local files only (remote.py).

    ``evidence_bands``: bands only the quality net reads (Sentinel-2 cirrus, SWIR, aerosol):
    ``"auto"`` (default: a recognised sensor layout with a shipped model for it uses that
    model and its bands, and sets the default ``bands`` to the layout's true colour),
    ``"none"`` (an RGB model), or 1-based band numbers in the model's order (evidence.py).
    They change only the weights: every output value stays a weighted combination of the
    inputs' values.

    ``allow_large``: run even an output grid far beyond the inputs' data, or one that would not
    fit the disk at 2:1 compression; both are refused by default (size_guard.py).

    ``selection``: ``"blend"`` (default) writes the weighted average; ``"best"`` copies every
    pixel unchanged (all bands, the inputs' own values) from the valid input with the highest
    weight there, the weight the quality output holds (after the tile cross-fade; ties: the
    lowest input number), for methods with per-input weights: learned, mean (equal weights:
    the first valid input, a priority mosaic) and min-blue. ``selection_index`` (needs
    ``"best"``) writes which input each pixel came from: 1..K, 0 where none is valid
    (selection.py, writers.open_index). The segmentation still reads the blended view.

    ``segmentation`` is left out, with a one-line reason in ``FusionResult.warnings``, when
    the output pixels (in metres, from the CRS) are more than 4x outside the ground
    resolutions the model was trained on (resolution.py): a class map there would be
    confident noise. ``force_segmentation`` writes it anyway.

    ``masks``: one sensor-mask raster per input, in input order (None for an input without
    one), on any grid (read with nearest neighbour onto the reference; outside a mask's
    footprint nothing is masked), and ``mask_rule``: a preset name (``"s2-scl"``,
    ``"landsat-qa"``) or a ``masks.MaskRule`` of class values or bits. Flagged pixels are
    invalid, as nodata is: weight exactly 0 for the networks and the composites; where every
    input is invalid the output is nodata (masks.py), unless ``mask_fallback="least-masked"``:
    where only masks make every input invalid, the input with data there that its mask flags
    least over the whole grid is used alone (a decimated estimate of the shares, made once)."""
    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    try:
        check_choice(method, METHODS, "method")
        check_choice(selection, SELECTIONS, "selection")
    except ValueError as exc:
        raise WsfusionError(str(exc)) from None
    if overlap < 0:
        raise WsfusionError(f"overlap must be >= 0 (got {overlap})")
    if batch_size is not None and batch_size < 1:
        raise WsfusionError(f"batch size must be >= 1 (got {batch_size})")
    scale_spec = parse_scale(scale)
    chunked = chunk is not None or cluster is not None
    if chunk is not None and chunk < MIN_CHUNK:
        raise WsfusionError(f"chunk must be >= {MIN_CHUNK} px (got {chunk})")
    if min_area < 0 or min_area != min_area:
        raise WsfusionError(f"minimum area must be >= 0 m² (got {min_area})")
    if vectors is not None and Path(vectors).suffix.lower() != ".gpkg":
        raise OutputError("vectors are written as a GeoPackage; give the file the .gpkg "
                          "extension", path=vectors)
    if quality is not None and method == "median":
        raise WsfusionError("a quality output needs per-input weights",
                            hint="use method learned, mean or min-blue")
    refused = selection_problem(method, selection)
    if refused is not None:
        raise WsfusionError(refused)
    if selection_index is not None and selection != "best":
        raise WsfusionError("an input-index output needs best-pixel selection (selection "
                            "'best'); a blend mixes the inputs, so no pixel comes from one")
    best = selection == "best"

    if isinstance(cluster, (str, os.PathLike)) and "://" not in os.fspath(cluster) \
            and os.path.isfile(cluster):
        from .distributed import check_scheduler_file

        check_scheduler_file(os.fspath(cluster))  # before any work, not after the model

    remote = patterns(allow_remote)
    al = align(inputs, reference, remote)
    rule = parse_mask_rule(preset=mask_rule) if isinstance(mask_rule, str) else mask_rule
    al.inputs = attach_masks(al.inputs, masks, rule, remote)
    out_path = output_path(output)
    seg_path = output_path(segmentation) if segmentation is not None else None
    q_path = output_path(quality) if quality is not None else None
    i_path = output_path(selection_index) if selection_index is not None else None
    vec_path = output_path(vectors) if vectors is not None else None
    classes_wanted = seg_path is not None or vec_path is not None
    targets = [p for p in (out_path, seg_path, q_path, i_path, vec_path) if p is not None]
    sources = [i.path for i in al.inputs] + [al.reference.path] + [
        i.sensor_mask.path for i in al.inputs if i.sensor_mask is not None]
    check_outputs(targets, sources, overwrite)
    if not allow_large:  # before any model is loaded or pixel read
        _check_size(al, {"fused": out_path, "segmentation": seg_path, "quality": q_path,
                         "index": i_path}, method, cog, chunked)
    # ranks the masked inputs for the fallback (a decimated read of every mask)
    al.inputs = with_fallback(al.inputs, al.grid, mask_fallback)

    needs_net = method == "learned" or classes_wanted
    net = choose(al.inputs, evidence_bands if method == "learned" else "none",
                 tuple(int(b) for b in bands) if bands else None,
                 weights, scale_spec.kind, needs_net)
    warnings: list[str] = []
    if classes_wanted and not force_segmentation:
        refusal = _segmentation_refusal(net.weights, al.grid)
        if refusal is not None:  # the vectors are the class map too: neither is written
            warnings.append(refusal)  # shown by the front end, once
            seg_path = vec_path = None
            classes_wanted = False
            needs_net = method == "learned"
    net_bands = net.bands
    bad = band_problem(net_bands, al.count, al.inputs[0].path, explicit=bool(bands)) \
        if (needs_net or bands) else None
    if bad is not None:
        raise bad
    if method == "min-blue":
        from .composite import blue_channel

        blue_channel(net_bands, al.count)  # refused before anything is read or written

    runner = None
    if needs_net:
        purpose = "the learned method" if method == "learned" else "segmentation"
        # A cluster's client runs no tiles: it loads the model on the CPU for the checks and
        # fixes the batch (the grouping of tiles) for the workers' device.
        runner = _checked_runner(net.weights, device, cluster is not None, batch_size, say,
                                 purpose, net.all_bands, overlap, compile, bf16)
        say(f"networks read: bands {','.join(map(str, net_bands))}; {net.why}")

    grid = al.grid
    fmt = output_format(al.inputs, al.reference)
    source, dtype = fmt.source, fmt.dtype
    say(f"grid: {grid.width} x {grid.height} px, "
        f"{grid.crs.to_string() if grid.crs else 'no CRS'}, from {al.reference.label}")
    for info, wp, ov in zip(al.inputs, al.warped, al.overlaps):
        say(f"input {info.path.name}: {'warped (bilinear)' if wp else 'direct'}, "
            f"covers {100 * ov:.1f}%, validity: {info.validity_text}"
            + (f" and mask {info.sensor_mask.path.name} ({info.sensor_mask.rule.describe()})"
               if info.sensor_mask is not None else ""))
    say(f"output: {fmt.text}")
    plan = plan_engine(grid.height, grid.width, runner, overlap, BLOCK)
    if not chunked and runner is not None and grid.width > AUTO_CHUNK_WIDTH:
        chunk, chunked = AUTO_CHUNK, True
        say(f"wide raster: run in windows of {AUTO_CHUNK} px to bound memory (as chunk=)")
    shape = f"tile {runner.info.tile_size}, overlap {overlap}" if runner else "strips"
    say(f"plan: {plan.rows.count} x {plan.cols.count} tiles ({shape})")

    tags = {"WSFUSION_METHOD": method,
            # a JSON list: any separator could be part of a file name
            "WSFUSION_INPUTS": json.dumps([i.path.name for i in al.inputs], ensure_ascii=False)}
    if runner is not None:
        tags["WSFUSION_MODEL"] = runner.describe()
        tags["WSFUSION_EVIDENCE"] = (", ".join(f"{n}=band {b}" for n, b in zip(
            net.evidence_names, net.evidence)) if net.evidence else "none")
    # composites are chosen with evidence "none": their networks read the image bands only
    engine_bands = net.all_bands
    if best:  # blend runs keep their tags (and bytes) as before
        tags["WSFUSION_SELECTION"] = "best"
        say("selection: best pixel (each pixel copied from the input with the highest weight)")
    cb = progress or (lambda _f: None)
    cb(0.0)

    k = len(al.inputs)
    per_px = (al.count * np.dtype(dtype).itemsize + (1 if seg_path else 0)
              + (4 * k if q_path else 0)
              + (np.dtype(index_dtype(k)).itemsize if i_path else 0))
    # best-pixel selection decides on the per-input weights: the buffers keep them
    weighs = q_path is not None or best
    with ExitStack() as stack:
        stack.enter_context(gdal_cache(grid.width, per_px, al.inputs, runner is not None, grid))
        readers = [stack.enter_context(AlignedReader(i, grid)) for i in al.inputs]
        scales = None
        if runner is not None:
            view = radiometry_for(readers, net, scale_spec)
            scales = view.scales()
            tags["WSFUSION_SCALE"] = view.rule
            say(f"network scale: {view.rule}")

        def open_outputs(outs: OutputSet) -> tuple[AtomicGeoTIFF, Any, AtomicGeoTIFF | None,
                                                     AtomicGeoTIFF | None]:
            """The run's writers; the class map's rows go to its GeoTIFF and the vectors."""
            fused_w = outs.add(open_fused(out_path, grid, al.count, dtype, fmt.nodata, cog,
                                          descriptions=source.descriptions, tags=tags,
                                          rgb=source.rgb, mask=fmt.mask))
            seg_w = (outs.add(open_segmentation(seg_path, grid, cog, runner.info.class_names,
                                                runner.info.class_colours, tags))
                     if seg_path is not None and runner is not None else None)
            q_w = (outs.add(open_quality(q_path, grid, [i.path for i in al.inputs], cog, tags))
                   if q_path is not None else None)
            i_w = (outs.add(open_index(i_path, grid, [i.path for i in al.inputs], cog, tags))
                   if i_path is not None else None)
            vec_w = None
            if vec_path is not None and runner is not None:
                from .vectors import VectorWriter

                vec_w = outs.add(VectorWriter(vec_path, grid.height, grid.width, grid.transform,
                                              grid.crs, runner.info.class_names,
                                              runner.info.class_colours, min_area))
            if vec_w is not None:
                from .vectors import RowsTo

                return fused_w, RowsTo(seg_w, vec_w), q_w, i_w
            return fused_w, seg_w, q_w, i_w

        num_classes = runner.info.num_classes if classes_wanted and runner else 0
        total = plan.tile_count  # network tiles, or the pieces of the composite strips
        if chunked:
            from .chunked import ChunkedRun, fuse_chunked

            stats = fuse_chunked(ChunkedRun(
                al.inputs, grid, plan, method, engine_bands, scales, al.count, fmt,
                num_classes, q_path is not None, runner, net.weights, device, out_path,
                chunk, cluster, resume, lambda: OutputSet(overwrite, verify), open_outputs,
                sources, compile, bf16, selection=selection, index=i_path is not None),
                progress=cb, cancel=cancel, say=say)
        else:
            outs = stack.enter_context(OutputSet(overwrite, verify))
            fused_w, seg_w, q_w, i_w = open_outputs(outs)
            engine = make_engine(method, runner, scales, engine_bands, seg_w is not None,
                                 weighs)
            buffer = buffer_for(plan, grid.width, al.count, k, dtype, fmt.fill, num_classes,
                                weighs, device=blend_device(method, runner))
            select = Selector(k, fmt.fill, q_w is not None) if best else None
            done = 0

            def tick(units: int) -> None:
                nonlocal done
                done += units
                cb(min(done / total, 0.99))

            run_plan(plan, readers, engine, buffer,
                     lambda rows: _write(rows, fused_w, seg_w, q_w, i_w), cancel=cancel,
                     tick=tick, pieces=runner is None, select=select)
            poll(cancel)
            outs.commit(lambda: poll(cancel))
            stats = None
    cb(1.0)
    seconds = time.perf_counter() - t0
    say(f"done: {out_path} in {seconds:.1f} s")
    return FusionResult(
        output=out_path, segmentation=seg_path, quality=q_path, method=method,
        device=(runner.device if cluster is None else f"{device} (dask workers)")
        if runner else "cpu",
        model=runner.describe() if runner else None, width=grid.width, height=grid.height,
        crs=grid.crs.to_string() if grid.crs else None, count=al.count,
        tiles=total, seconds=seconds,
        class_names=tuple(runner.info.class_names) if classes_wanted and runner else (),
        class_colours=tuple(tuple(c) for c in runner.info.class_colours)
        if classes_wanted and runner else (),
        chunks=stats, selection=selection, selection_index=i_path, vectors=vec_path,
        warnings=tuple(warnings))


def _segmentation_refusal(weights: PathLike | None, grid: Any) -> str | None:
    """The resolution guard's sentence for this model and grid, or None. A model that cannot
    be read is not judged here: loading it for the run says what is wrong with it."""
    from .resolution import segmentation_refusal
    from .weights import read_info, resolve_weights

    try:
        info = read_info(resolve_weights(weights))
    except WsfusionError:
        return None
    return segmentation_refusal(grid, info)


def _check_size(al: Any, targets: dict[str, Path | None], method: str, cog: bool,
                chunked: bool) -> None:
    """Refuse an output grid far beyond the inputs' data or too large for its disk."""
    from .size_guard import disk_problem, extent_problem, output_bytes

    big = extent_problem(al.inputs, al.reference, al.grid)
    if big is not None:
        raise big
    outs = {k: v for k, v in targets.items() if v is not None}
    needs_net = method == "learned" or "segmentation" in outs
    fmt = output_format(al.inputs, al.reference)
    # A masked output's chunk parts carry the validity as one more band (parts.Layer).
    count = al.count + (1 if fmt.mask and chunked else 0)
    sizes = output_bytes(al.grid, count, fmt.dtype, len(al.inputs), "segmentation" in outs,
                         "quality" in outs)
    if "index" in outs:  # best-pixel selection's input index: one small integer per pixel
        sizes["index"] = (al.grid.width * al.grid.height
                          * np.dtype(index_dtype(len(al.inputs))).itemsize)
    full = disk_problem(outs, sizes, cog,
                        chunked or (needs_net and al.grid.width > AUTO_CHUNK_WIDTH))
    if full is not None:
        raise full


def _checked_runner(weights: PathLike | None, device: str, on_cluster: bool,
                    batch_size: int | None, say: Callable[[str], None], purpose: str,
                    bands: tuple[int, ...], overlap: int, compile: bool, bf16: bool
                    ) -> ModelRunner:
    """The model, refused when it cannot read the chosen bands or the overlap is too large.
    For a cluster it is loaded on the CPU with the batch the workers' device will use."""
    from .runner import default_batch, load_runner  # torch is imported only when a net runs

    if on_cluster:
        batch_size, device = batch_size or default_batch(device), "cpu"
    runner = load_runner(weights, device, batch_size, say, purpose,
                         compile=compile and not on_cluster, bf16=bf16)
    # the image bands, then the evidence bands of a model that reads them (evidence.py)
    want = runner.info.in_channels + runner.evidence_count
    if len(bands) != want:
        raise InputError(f"the model reads {want} bands but "
                         f"{len(bands)} were chosen ({','.join(map(str, bands))})")
    tile = runner.info.tile_size
    if overlap > tile // 2:
        # Beyond half a tile every pixel is computed 4+ times for no visible gain.
        raise WsfusionError(f"overlap {overlap} px is too large for the model's {tile} px "
                            f"tiles (at most {tile // 2})")
    return runner


def _write(rows: FinishedRows, fused_w: AtomicGeoTIFF, seg_w: Any,
           q_w: AtomicGeoTIFF | None, i_w: AtomicGeoTIFF | None) -> None:
    fused_w.append(rows.fused, rows.valid)
    if seg_w is not None and rows.classes is not None:
        seg_w.append(rows.classes)
    if q_w is not None and rows.quality is not None:
        q_w.append(rows.quality)
    if i_w is not None and rows.index is not None:
        i_w.append(rows.index)


__all__ = ["FusionResult", "InspectReport", "fuse", "inspect"]
