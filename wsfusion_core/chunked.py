"""The same fusion over output windows ("chunks"): one task per chunk, then one publish.

The client (``fuse`` with ``chunk=`` or ``cluster=``) aligns the inputs, makes the global tile
plan and the input scaling once and hands every task the same :class:`Job`. A task reads its
own inputs (halo included), runs the ordinary engine loop (``loop.run_plan``) over the chunk's
sub-plan (chunks.py) and publishes finished parts (parts.py); tasks exchange no pixels. They
run here one after another, or on dask.distributed (distributed.py). Then the parts are
mosaicked into the outputs and published through the same ``OutputSet`` as a local run.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .chunks import Chunk, plan_chunks, region_for
from .errors import WsfusionError, quiet_warnings
from .grid import Grid, RasterInfo
from .loop import poll as _poll
from .parts import (
    Layer,
    PartWriters,
    chunk_done,
    copy_into,
    fingerprint,
    parts_folder,
    prepare_folder,
    remove_folder,
    write_vrt,
)
from .windows import WindowPlan

if TYPE_CHECKING:
    from .distributed import ModelSpec
    from .writers import OutputFormat

DEFAULT_CHUNK = 4096
# Chunks widen to whole network batches only on GPUs: there the kernels may depend on the batch
# shape, while on the CPU a tile's result is the same in any batch (checked: batch 4 vs 1 vs
# other companions, 1 and 2 threads, bit-identical), so a CPU chunk pays for its halo only.
# None: decide by device; True/False force it (the tests force True to cover the GPU path).
WHOLE_BATCHES: bool | None = None


@dataclass(frozen=True)
class Job:
    """Everything a chunk task needs, made once by the client (sent to each worker once)."""

    inputs: tuple[RasterInfo, ...]
    grid: Grid
    plan: WindowPlan
    method: str
    bands: tuple[int, ...]
    scales: tuple[Any, ...] | None
    layers: tuple[Layer, ...]
    num_classes: int  # 0: no segmentation
    batch: int | None  # network batch size; None when no network runs
    folder: str  # the parts folder
    group: int = 1  # >1: chunks take whole batches of this many tiles (see WHOLE_BATCHES)
    selection: str = "blend"  # "best": best-pixel selection (selection.py)

    @property
    def quality(self) -> bool:
        return any(lay.kind == "quality" for lay in self.layers)

    @property
    def weighs(self) -> bool:
        """Whether the buffers keep the per-input weights: for the quality output, and for
        best-pixel selection, which decides on them."""
        return self.quality or self.selection == "best"




@dataclass(frozen=True)
class ChunkStats:
    chunk: str
    tiles: int  # network tiles evaluated (halo and batch padding included)
    seconds: float
    peak_mb: float  # peak resident memory of the worker process so far
    worker: str




@dataclass
class RunStats:
    chunks: int
    reused: int
    tiles: int
    peak_mb: dict[str, float]
    workers: int




@quiet_warnings  # on a dask worker nothing would show them but its raw stderr
def run_chunk(job: Job, chunk: Chunk, model_key: str | None = None, runner: Any = None
              ) -> ChunkStats:
    """One task: compute ``chunk`` with the ordinary engine loop over its sub-plan and publish
    its parts. The model comes from this worker's plugin unless ``runner`` is given."""
    import resource

    from .blend import blend_device, buffer_for
    from .distributed import worker_name
    from .engines import make_engine
    from .grid import AlignedReader
    from .loop import run_plan
    from .selection import Selector
    from .writers import gdal_cache

    t0 = time.perf_counter()
    if job.batch is not None and runner is None:
        from .distributed import worker_runner

        runner = worker_runner(model_key or "")
    region = region_for(job.plan, chunk, job.group if job.batch is not None else None)
    fused = job.layers[0]
    engine = make_engine(job.method, runner, job.scales, job.bands, job.num_classes > 0,
                         job.weighs)
    select = (Selector(len(job.inputs), fused.fill_value, job.quality)
              if job.selection == "best" else None)
    tiles = 0

    def tick(units: int) -> None:
        nonlocal tiles
        tiles += units

    writers = PartWriters(job.folder, job.layers, region, job.grid)
    try:
        with ExitStack() as stack:
            stack.enter_context(gdal_cache(region.width, sum(
                lay.count * np.dtype(lay.dtype).itemsize for lay in job.layers), job.inputs,
                job.batch is not None, job.grid))
            readers = [stack.enter_context(AlignedReader(i, job.grid)) for i in job.inputs]
            buffer = buffer_for(region.plan, region.width, fused.count, len(job.inputs),
                                fused.dtype, fused.fill_value, job.num_classes, job.weighs,
                                device=blend_device(job.method, runner))
            run_plan(region.plan, readers, engine, buffer, writers.sink,
                     origin=(region.y, region.x), tick=tick, pieces=job.batch is None,
                     select=select)
        writers.publish()
    except BaseException as exc:
        writers.abort()
        if isinstance(exc, WsfusionError):  # GDAL's chained errors do not unpickle: dask
            exc.__context__ = exc.__cause__ = None  # would send Exception(repr(exc)) instead
        raise
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return ChunkStats(chunk.name, tiles if job.batch is not None else 0,
                      time.perf_counter() - t0, peak, worker_name())




def execute(job: Job, chunks: Sequence[Chunk], *, runner: Any = None,
            model: ModelSpec | None = None, cluster: Any = None,
            progress: Callable[[float], None] | None = None,
            cancel: Callable[[], bool] | None = None,
            say: Callable[[str], None] | None = None) -> RunStats:
    """Compute every chunk whose parts are missing: in this process with ``runner`` when
    ``cluster`` is None, else as one dask task per chunk with ``model`` loaded per worker."""
    todo = [c for c in chunks if not chunk_done(job.folder, job.layers, c)]
    reused = len(chunks) - len(todo)
    if reused and say:
        say(f"resume: {reused} of {len(chunks)} chunk(s) already done")
    cb = progress or (lambda _f: None)
    stats = RunStats(len(chunks), reused, 0, {}, 1)

    def record(s: ChunkStats, done: int) -> None:
        stats.tiles += s.tiles
        stats.peak_mb[s.worker] = max(stats.peak_mb.get(s.worker, 0.0), s.peak_mb)
        cb(min((reused + done) / len(chunks), 0.99))

    if cluster is None:
        for i, c in enumerate(todo, 1):
            _poll(cancel)
            record(run_chunk(job, c, runner=runner), i)
        return stats
    from .distributed import run_on_cluster

    stats.workers = run_on_cluster(job, todo, model, cluster, record, cancel, say)
    return stats




@dataclass
class ChunkedRun:
    """What ``fuse`` has decided before the first pixel, handed to :func:`fuse_chunked`."""

    inputs: Sequence[RasterInfo]
    grid: Grid
    plan: WindowPlan
    method: str
    bands: tuple[int, ...]
    scales: Any
    count: int
    fmt: OutputFormat  # the fused output's dtype and nodata or mask (writers.output_format)
    num_classes: int
    quality: bool
    runner: Any  # the client's ModelRunner (None when no network runs)
    weights: Any
    device: str
    output: Path
    chunk: int | None
    cluster: Any
    resume: bool
    new_outputs: Callable[[], Any]  # an empty writers.OutputSet as the local run makes it
    open_outputs: Callable[[Any], tuple[Any, Any, Any, Any]]
    sources: Sequence[Path]  # every file the result depends on (for the resume fingerprint)
    compile: bool = False  # the workers' runner options (the client's runner runs no tiles)
    bf16: bool = False
    selection: str = "blend"
    index: bool = False  # write the best-pixel selection's input index


def fuse_chunked(run: ChunkedRun, progress: Callable[[float], None],
                 cancel: Callable[[], bool] | None, say: Callable[[str], None]) -> RunStats:
    """Compute every chunk (here or on the cluster), then mosaic the parts into the outputs and
    publish them together. Parts are removed on success, and on failure unless ``resume``."""
    from .classes import SEGMENTATION_NODATA

    size = run.chunk or DEFAULT_CHUNK
    layers = [Layer("fused", run.count, run.fmt.dtype, run.fmt.nodata, mask=run.fmt.mask,
                    fill=run.fmt.fill)]
    if run.num_classes:
        layers.append(Layer("segmentation", 1, "uint8", SEGMENTATION_NODATA, predictor=False))
    if run.quality:
        layers.append(Layer("quality", len(run.inputs), "float32", float("nan")))
    if run.index:
        from .options import index_dtype
        from .writers import INDEX_NODATA

        layers.append(Layer("index", 1, index_dtype(len(run.inputs)), INDEX_NODATA,
                            predictor=False))
    folder = parts_folder(run.output)
    runner = run.runner
    batch = runner.batch_size if runner is not None else None
    model_path = None
    if runner is not None:
        from .weights import resolve_weights

        model_path = str(resolve_weights(run.weights))
    settings = {"method": run.method, "bands": run.bands, "chunk": size, "batch": batch,
                "whole_batches": WHOLE_BATCHES,
                "layers": [repr(lay) for lay in layers], "grid": repr(run.grid),
                "tiles": [run.plan.rows.starts, run.plan.cols.starts, run.plan.rows.tile],
                "model": model_path, "device": run.device, "bf16": run.bf16,
                "scales": [np.asarray(s).tolist() for s in run.scales or []],
                "masks": [repr(i.sensor_mask) for i in run.inputs]}
    if run.selection != "blend":  # a blend's fingerprint stays what it was (resume)
        settings["selection"] = run.selection
    files = list(run.sources) + ([model_path] if model_path else [])
    reused = prepare_folder(folder, fingerprint(settings, files), run.resume)
    if run.resume and not reused:
        say(f"resume: no parts of this run in {folder}; starting from scratch")
    whole = WHOLE_BATCHES if WHOLE_BATCHES is not None else _on_gpu(run)
    job = Job(tuple(run.inputs), run.grid, run.plan, run.method, run.bands,
              tuple(run.scales) if run.scales is not None else None, tuple(layers),
              run.num_classes, batch, str(folder), group=batch if batch and whole else 1,
              selection=run.selection)
    chunks = plan_chunks(run.grid.height, run.grid.width, size)
    say(f"chunks: {len(chunks)} of {size} px, parts in {folder}")
    model = None
    if runner is not None and run.cluster is not None:
        from .distributed import ModelSpec

        model = ModelSpec(model_path or "", run.device, batch or 1, run.method,
                          run.num_classes > 0, compile=run.compile, bf16=run.bf16)
    try:
        stats = execute(job, chunks, runner=runner if run.cluster is None else None,
                        model=model, cluster=run.cluster, progress=progress, cancel=cancel,
                        say=say)
        _poll(cancel)
        with run.new_outputs() as outs:
            writers = dict(zip(("fused", "segmentation", "quality", "index"),
                               run.open_outputs(outs)))
            for lay in layers:
                vrt = write_vrt(folder / f"{lay.kind}.vrt", run.grid, lay, chunks)
                copy_into(vrt, writers[lay.kind], run.grid.height, lay.mask)
                _poll(cancel)
            outs.commit(lambda: _poll(cancel))
    except BaseException:
        if not run.resume:
            remove_folder(folder)
        raise
    remove_folder(folder)
    return stats


def _on_gpu(run: ChunkedRun) -> bool:
    """Whether the tiles run on a GPU: the local runner's device, or the workers' as asked."""
    if run.runner is None:
        return False
    if run.cluster is None:
        return str(run.runner.device).startswith("cuda")
    from .runner import resolve_device

    dev = resolve_device(run.device) if run.device == "auto" else run.device
    return dev.startswith("cuda")
