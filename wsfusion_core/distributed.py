"""Running the chunk tasks (chunked.py) on dask.distributed.

One task per chunk, no pixels between workers. The model is loaded once per worker by a
``WorkerPlugin`` (registered with the client, so workers that join later load it too), never
inside the task graph; workers run torch at one thread by default. dask is imported only here,
and only when a cluster is used, so the local engine does not need it.
"""

from __future__ import annotations

import hashlib
import os
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .chunked import ChunkStats, Job, run_chunk
from .chunks import Chunk
from .errors import WsfusionError, first_line
from .loop import poll as _poll

PLUGIN_PREFIX = "wsfusion-model-"


@dataclass(frozen=True)
class ModelSpec:
    """How each worker loads the model (weights must be readable from every worker)."""

    weights: str
    device: str
    batch_size: int
    method: str
    segmentation: bool
    threads: int = 1  # torch threads per worker
    compile: bool = False
    bf16: bool = False

    @property
    def key(self) -> str:
        return PLUGIN_PREFIX + hashlib.sha1(repr(self).encode()).hexdigest()[:16]




def load_model(spec: ModelSpec) -> Any:
    """The runner a local run would load, with torch pinned to ``spec.threads``."""
    import torch

    from .runner import load_runner

    purpose = "the learned method" if spec.method == "learned" else "segmentation"
    runner = load_runner(spec.weights, spec.device, spec.batch_size, lambda _msg: None, purpose,
                         compile=spec.compile, bf16=spec.bf16)
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




def worker_runner(key: str) -> Any:
    from distributed import get_worker

    runner = getattr(get_worker().plugins.get(key), "runner", None)
    if runner is None:
        raise WsfusionError(f"worker {get_worker().address} has no model loaded ({key})")
    return runner




def worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"




def run_on_cluster(job: Job, todo: Sequence[Chunk], model: ModelSpec | None, cluster: Any,
                   record: Callable[[ChunkStats, int], None],
                   cancel: Callable[[], bool] | None,
                   say: Callable[[str], None] | None) -> int:
    """One task per chunk on the cluster, the model registered as a worker plugin first;
    returns the number of workers."""
    with ExitStack() as stack:
        client = connect(cluster, stack)
        workers = len(client.scheduler_info().get("workers", {}))
        if say:
            say(f"cluster: {client.scheduler.address}, {workers} worker(s)")
        key = None
        if job.batch is not None:
            if model is None:
                raise WsfusionError("a cluster run with a network needs a model spec")
            plugin = _LazyPlugin.get()(model)
            client.register_plugin(plugin, name=model.key)
            key = model.key
        _submit_all(client, job, todo, key, record, cancel)
    return workers


def _submit_all(client: Any, job: Job, todo: Sequence[Chunk], key: str | None,
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
        check_scheduler_file(text)
        return stack.enter_context(Client(scheduler_file=text, timeout="30s"))
    except WsfusionError:
        raise
    except (OSError, TimeoutError) as exc:
        raise WsfusionError(f"{text}: cannot reach the dask scheduler ({exc})") from None


def check_scheduler_file(path: str) -> None:
    """A scheduler file is the JSON ``dask scheduler --scheduler-file`` writes, with the
    scheduler's ``address``; anything else is refused in one line naming the file (dask itself
    fails with a bare AssertionError or JSONDecodeError)."""
    import json

    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(2**20).decode("utf-8"))
    except OSError as exc:
        raise WsfusionError(f"cannot read the scheduler file ({exc.strerror or exc})",
                            path=path) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise WsfusionError(f"not a dask scheduler file: invalid JSON ({first_line(exc)})",
                            path=path) from None
    if not isinstance(data, dict) or not isinstance(data.get("address"), str):
        raise WsfusionError("not a dask scheduler file: it holds no scheduler \"address\"",
                            path=path)
