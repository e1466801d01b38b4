"""The same fusion over output windows ("chunks"), in this process or on dask.distributed.

The client (``fuse`` with ``chunk=`` or ``cluster=``) aligns the inputs, makes the global tile
plan and the input scaling once and hands every task the same :class:`Job`. One task per chunk
reads its own inputs (halo included) from shared storage, runs the ordinary engine over the
chunk's sub-plan (chunks.py) and writes finished parts (parts.py); workers exchange no pixels.
The model is loaded once per worker by a :class:`ModelPlugin`, never inside the task graph.
dask is imported only when a cluster is used, so the local engine does not need it.
"""

from __future__ import annotations

import hashlib
import os
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .chunks import Chunk, plan_chunks, region_for
from .errors import Cancelled, WsfusionError
from .grid import Grid, RasterInfo
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

DEFAULT_CHUNK = 4096
PLUGIN_PREFIX = "wsfusion-model-"
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

    @property
    def quality(self) -> bool:
        return any(lay.kind == "quality" for lay in self.layers)


@dataclass(frozen=True)
class ModelSpec:
    """How each worker loads the model (weights must be readable from every worker)."""

    weights: str
    device: str
    batch_size: int
    method: str
    segmentation: bool
    threads: int = 1  # torch threads per worker

    @property
    def key(self) -> str:
        return PLUGIN_PREFIX + hashlib.sha1(repr(self).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ChunkStats:
    chunk: str
    tiles: int  # network tiles evaluated (halo and batch padding included)
    seconds: float
    peak_mb: float  # peak resident memory of the worker process so far
    worker: str


def load_model(spec: ModelSpec) -> Any:
    """The runner a local run would load, with torch pinned to ``spec.threads``."""
    import torch

    from .runner import load_runner

    purpose = "the learned method" if spec.method == "learned" else "segmentation"
    runner = load_runner(spec.weights, spec.device, spec.batch_size, lambda _msg: None, purpose)
    if runner.device == "cpu":
        torch.set_num_threads(spec.threads)
    return runner


def _plugin_base() -> type:
    from distributed import WorkerPlugin

    return WorkerPlugin


class _LazyPlugin:
    """Builds :class:`ModelPlugin` on first use so importing this module needs no dask."""

    cls: type | None = None

    @classmethod
    def get(cls) -> type:
        if cls.cls is None:
            base = _plugin_base()

            class ModelPlugin(base):  # type: ignore[misc, valid-type]
                """Loads the model once per worker, when the worker starts or joins."""

                def __init__(self, spec: ModelSpec) -> None:
                    self.spec = spec
                    self.name = spec.key
                    self.runner: Any = None

                def setup(self, worker: Any) -> None:
                    self.runner = load_model(self.spec)

                def teardown(self, worker: Any) -> None:
                    self.runner = None

            ModelPlugin.__module__ = __name__
            cls.cls = ModelPlugin
        return cls.cls


def _worker_runner(key: str) -> Any:
    from distributed import get_worker

    runner = getattr(get_worker().plugins.get(key), "runner", None)
    if runner is None:
        raise WsfusionError(f"worker {get_worker().address} has no model loaded ({key})")
    return runner


def run_chunk(job: Job, chunk: Chunk, model_key: str | None = None, runner: Any = None
              ) -> ChunkStats:
    """One task: compute ``chunk`` with the ordinary engine loop over its sub-plan and publish
    its parts. The model comes from this worker's plugin unless ``runner`` is given."""
    import resource

    from .api import run_plan
    from .blend import StripBuffer
    from .engines import make_engine
    from .grid import AlignedReader
    from .writers import gdal_cache

    t0 = time.perf_counter()
    if job.batch is not None and runner is None:
        runner = _worker_runner(model_key or "")
    region = region_for(job.plan, chunk, job.group if job.batch is not None else None)
    fused = job.layers[0]
    engine = make_engine(job.method, runner, job.scales, job.bands, job.num_classes > 0,
                         job.quality)
    tiles = 0

    def tick(units: int) -> None:
        nonlocal tiles
        tiles += units

    writers = PartWriters(job.folder, job.layers, region, job.grid)
    try:
        with ExitStack() as stack:
            stack.enter_context(gdal_cache(region.width, sum(
                lay.count * np.dtype(lay.dtype).itemsize for lay in job.layers)))
            readers = [stack.enter_context(AlignedReader(i, job.grid)) for i in job.inputs]
            buffer = StripBuffer(region.plan, region.width, fused.count, len(job.inputs),
                                 fused.dtype, fused.nodata, job.num_classes, job.quality)
            run_plan(region.plan, readers, engine, buffer, writers.sink,
                     origin=(region.y, region.x), tick=tick)
        writers.publish()
    except BaseException:
        writers.abort()
        raise
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return ChunkStats(chunk.name, tiles if job.batch is not None else 0,
                      time.perf_counter() - t0, peak, _worker_name())


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


# ----------------------------------------------------------------------------- client


@dataclass
class RunStats:
    chunks: int
    reused: int
    tiles: int
    peak_mb: dict[str, float]
    workers: int


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
    with ExitStack() as stack:
        client = connect(cluster, stack)
        stats.workers = len(client.scheduler_info().get("workers", {}))
        if say:
            say(f"cluster: {client.scheduler.address}, {stats.workers} worker(s)")
        key = None
        if job.batch is not None:
            if model is None:
                raise WsfusionError("a cluster run with a network needs a model spec")
            plugin = _LazyPlugin.get()(model)
            client.register_plugin(plugin, name=model.key)
            key = model.key
        _run_on_cluster(client, job, todo, key, record, cancel)
    return stats


def _run_on_cluster(client: Any, job: Job, todo: Sequence[Chunk], key: str | None,
                    record: Callable[[ChunkStats, int], None],
                    cancel: Callable[[], bool] | None) -> None:
    from distributed import wait

    token = hashlib.sha1(f"{job.folder}{time.time_ns()}".encode()).hexdigest()[:10]
    job_f = client.scatter(job, broadcast=True, hash=False)
    futures = {client.submit(run_chunk, job_f, c, key, pure=False,
                             key=f"wsfusion-{c.name}-{token}", retries=0): c for c in todo}
    pending = set(futures)
    done = 0
    try:
        while pending:
            _poll(cancel)
            try:
                finished, pending = wait(pending, timeout=0.5, return_when="FIRST_COMPLETED")
            except TimeoutError:  # nothing finished in this half second: poll cancel again
                continue
            for f in finished:
                if f.status == "error":
                    exc = f.exception()
                    raise _one_line_error(futures[f], exc) from None
                if f.status == "cancelled":
                    raise WsfusionError(f"chunk {futures[f].name}: cancelled by the cluster")
                done += 1
                record(f.result(), done)
    except BaseException:
        client.cancel(list(futures), force=True)
        raise
    finally:
        with suppress(Exception):  # the client may already be closing
            client.cancel([job_f], force=True)


def _one_line_error(chunk: Chunk, exc: BaseException | None) -> BaseException:
    if isinstance(exc, WsfusionError):
        return exc
    name = type(exc).__name__ if exc is not None else "error"
    text = " ".join(str(exc).split()) if exc is not None else ""
    if name == "KilledWorker":
        return WsfusionError(f"chunk {chunk.name}: the workers running it died repeatedly "
                             "(out of memory or killed); see the worker logs")
    return WsfusionError(f"chunk {chunk.name}: {name}: {text}")


def connect(cluster: Any, stack: ExitStack) -> Any:
    """A dask ``Client`` for ``cluster``: a Client (used as is), an int (that many local
    worker processes, one thread each), a scheduler address (``tcp://host:8786``) or the path
    of a scheduler file (``dask scheduler --scheduler-file``)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise WsfusionError("running on a cluster needs dask.distributed; install "
                            "wsfusion[distributed]") from None
    if isinstance(cluster, Client):
        return cluster
    if isinstance(cluster, bool):
        raise WsfusionError(f"cluster must be a client, an address or a worker count, "
                            f"not {cluster!r}")
    if isinstance(cluster, int):
        if cluster < 1:
            raise WsfusionError(f"workers must be >= 1 (got {cluster})")
        import logging

        lc = stack.enter_context(LocalCluster(n_workers=cluster, threads_per_worker=1,
                                              processes=True, dashboard_address=None,
                                              silence_logs=logging.CRITICAL))
        return stack.enter_context(Client(lc))
    text = os.fspath(cluster)
    try:
        if "://" in text:
            return stack.enter_context(Client(text, timeout="30s"))
        if not os.path.isfile(text):
            raise WsfusionError(f"{text}: scheduler file not found")
        return stack.enter_context(Client(scheduler_file=text, timeout="30s"))
    except WsfusionError:
        raise
    except (OSError, TimeoutError) as exc:
        raise WsfusionError(f"{text}: cannot reach the dask scheduler ({exc})") from None


def _poll(cancel: Callable[[], bool] | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled("cancelled by the caller; no output was written")


# ----------------------------------------------------------------------------- fuse


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
    dtype: str
    nodata: float | int | None
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
    open_outputs: Callable[[Any], tuple[Any, Any, Any]]
    sources: Sequence[Path]  # every file the result depends on (for the resume fingerprint)


def fuse_chunked(run: ChunkedRun, progress: Callable[[float], None],
                 cancel: Callable[[], bool] | None, say: Callable[[str], None]) -> RunStats:
    """Compute every chunk (here or on the cluster), then mosaic the parts into the outputs and
    publish them together. Parts are removed on success, and on failure unless ``resume``."""
    from .classes import SEGMENTATION_NODATA

    size = run.chunk or DEFAULT_CHUNK
    layers = [Layer("fused", run.count, run.dtype, run.nodata)]
    if run.num_classes:
        layers.append(Layer("segmentation", 1, "uint8", SEGMENTATION_NODATA, predictor=False))
    if run.quality:
        layers.append(Layer("quality", len(run.inputs), "float32", float("nan")))
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
                "model": model_path, "device": run.device,
                "scales": [np.asarray(s).tolist() for s in run.scales or []]}
    files = list(run.sources) + ([model_path] if model_path else [])
    reused = prepare_folder(folder, fingerprint(settings, files), run.resume)
    if run.resume and not reused:
        say(f"resume: no parts of this run in {folder}; starting from scratch")
    whole = WHOLE_BATCHES if WHOLE_BATCHES is not None else _on_gpu(run)
    job = Job(tuple(run.inputs), run.grid, run.plan, run.method, run.bands,
              tuple(run.scales) if run.scales is not None else None, tuple(layers),
              run.num_classes, batch, str(folder), group=batch if batch and whole else 1)
    chunks = plan_chunks(run.grid.height, run.grid.width, size)
    say(f"chunks: {len(chunks)} of {size} px, parts in {folder}")
    model = None
    if runner is not None and run.cluster is not None:
        model = ModelSpec(model_path or "", run.device, batch or 1, run.method,
                          run.num_classes > 0)
    try:
        stats = execute(job, chunks, runner=runner if run.cluster is None else None,
                        model=model, cluster=run.cluster, progress=progress, cancel=cancel,
                        say=say)
        _poll(cancel)
        with run.new_outputs() as outs:
            writers = dict(zip(("fused", "segmentation", "quality"), run.open_outputs(outs)))
            for lay in layers:
                vrt = write_vrt(folder / f"{lay.kind}.vrt", run.grid, lay, chunks)
                copy_into(vrt, writers[lay.kind], run.grid.height)
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
