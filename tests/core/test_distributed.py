"""Chunked and distributed fusion give the local result, byte for byte.

Real parts throughout: GeoTIFFs on disk, a tiny random-weight model saved through the weight
format, a real ``LocalCluster`` of worker processes, and a ``dask scheduler`` with two
``dask worker`` processes started as a real cluster would start them (stopped by PID in a
``finally``). Torch runs at one thread in the local reference and in every worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from wsfusion_core import chunked
from wsfusion_core.api import fuse
from wsfusion_core.chunks import plan_chunks, region_for
from wsfusion_core.errors import Cancelled
from wsfusion_core.parts import parts_folder
from wsfusion_core.windows import plan_windows

pytest.importorskip("distributed")

OUTPUTS = ("fused", "segmentation", "quality")


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def same_outputs(a: dict[str, Path], b: dict[str, Path]) -> None:
    """Pixels, profile, tags and band descriptions of each output are equal."""
    for kind, path in a.items():
        with rasterio.open(path) as x, rasterio.open(b[kind]) as y:
            assert np.array_equal(x.read(), y.read(), equal_nan=True), kind
            px, py = dict(x.profile), dict(y.profile)
            assert {k: v for k, v in px.items() if k != "nodata"} == \
                {k: v for k, v in py.items() if k != "nodata"}, kind
            assert x.tags() == y.tags() and x.descriptions == y.descriptions, kind


def scene(folder: Path, height: int, width: int) -> list[Path]:
    """Three dates: a plain one, one with a nodata gap, one in another CRS (warped) with
    nodata outside its footprint."""
    from helpers import smooth_image, write_raster

    b = smooth_image(height, width, seed=2)
    b[:, height // 4:height // 2, width // 3:2 * width // 3] = 0
    return [write_raster(folder / "a.tif", smooth_image(height, width, seed=1)),
            write_raster(folder / "b.tif", b, nodata=0),
            write_raster(folder / "c.tif", smooth_image(height - 100, width - 100, seed=5),
                         crs="EPSG:32617", transform=from_origin(1039000, 4018000, 13, 13),
                         nodata=0)]


def outputs(folder: Path, stem: str, quality: bool = True) -> dict[str, Path]:
    out = {"fused": folder / f"{stem}.tif", "segmentation": folder / f"{stem}_seg.tif"}
    if quality:
        out["quality"] = folder / f"{stem}_q.tif"
    return out


def run(inputs, outs: dict[str, Path], weights, **kw):
    return fuse(inputs, outs["fused"], segmentation=outs["segmentation"],
                quality=outs.get("quality"), weights=weights, device="cpu", **kw)


# ----------------------------------------------------------------------------- the plan


def _reaches(axis, i: int, a: int, b: int) -> bool:
    s, n = axis.starts[i], axis.sizes[i]
    return bool(np.any(axis.weights[i][max(a - s, 0):max(min(b - s, n), 0)] > 0))


@pytest.mark.parametrize("batch", [1, 4, 5])
def test_regions_hold_every_tile_that_reaches_the_chunk_and_whole_batches(batch):
    plan = plan_windows(2500, 3100, 300, 64)
    for chunk in plan_chunks(2500, 3100, 1000):
        reg = region_for(plan, chunk, batch)
        rows = [r for r in range(plan.rows.count) if _reaches(plan.rows, r, chunk.y0, chunk.y1)]
        assert list(reg.rows) == rows
        cols = [c for c in range(plan.cols.count) if _reaches(plan.cols, c, chunk.x0, chunk.x1)]
        assert reg.cols.start <= cols[0] and reg.cols.stop > cols[-1]
        assert cols[0] - reg.cols.start < batch and reg.cols.stop - 1 - cols[-1] < batch
        assert reg.cols.start % batch == 0
        assert reg.cols.stop % batch == 0 or reg.cols.stop == plan.cols.count
        assert reg.y <= chunk.y0 and reg.y + reg.height >= chunk.y1
        assert reg.x <= chunk.x0 and reg.x + reg.width >= chunk.x1


# ----------------------------------------------------------------------------- in process


def test_odd_chunks_in_one_process_equal_the_local_run(tmp_path, random_weights, one_thread,
                                                        monkeypatch):
    inputs = scene(tmp_path, 1100, 1700)
    local = outputs(tmp_path, "local")
    run(inputs, local, random_weights)
    # 1000: CPU grouping (halo only); 1536: whole global batches, as on a GPU
    for chunk, whole in ((1000, None), (1536, True)):
        monkeypatch.setattr(chunked, "WHOLE_BATCHES", whole)
        outs = outputs(tmp_path, f"chunk{chunk}")
        res = run(inputs, outs, random_weights, chunk=chunk)
        same_outputs(local, outs)
        assert res.chunks.chunks == len(plan_chunks(1100, 1700, chunk))
        assert not parts_folder(outs["fused"]).exists()


def test_wide_learned_runs_go_in_windows_and_equal_the_local_run(tmp_path, random_weights,
                                                                  one_thread, monkeypatch):
    """A learned run wider than api.AUTO_CHUNK_WIDTH runs in AUTO_CHUNK windows by itself
    (bounded memory), with the local result; the thresholds are lowered to fit a test."""
    from wsfusion_core import api

    inputs = scene(tmp_path, 700, 1300)
    local = outputs(tmp_path, "local")
    run(inputs, local, random_weights)
    monkeypatch.setattr(api, "AUTO_CHUNK_WIDTH", 1200)
    monkeypatch.setattr(api, "AUTO_CHUNK", 512)
    said: list[str] = []
    outs = outputs(tmp_path, "auto")
    res = run(inputs, outs, random_weights, log=said.append)
    same_outputs(local, outs)
    assert res.chunks.chunks == len(plan_chunks(700, 1300, 512))
    assert any("windows of 512 px" in m for m in said)
    assert not parts_folder(outs["fused"]).exists()


def test_composites_in_odd_chunks_equal_the_local_run(tmp_path):
    inputs = scene(tmp_path, 700, 1100)
    for method in ("mean", "median"):
        ref = tmp_path / f"{method}.tif"
        fuse(inputs, ref, method=method)
        out = tmp_path / f"{method}_chunked.tif"
        fuse(inputs, out, method=method, chunk=300)
        same_outputs({"fused": ref}, {"fused": out})


def test_composite_pieces_cut_by_odd_chunks_equal_the_local_run(tmp_path, monkeypatch):
    """Composite strips read in column pieces (here 256 wide) that the chunks cut anywhere:
    still the local run's bytes, the per-input weights included."""
    from wsfusion_core import engines

    monkeypatch.setattr(engines, "COMPOSITE_COLUMNS", 256)
    inputs = scene(tmp_path, 700, 1100)
    ref = {"fused": tmp_path / "mean.tif", "quality": tmp_path / "mean_q.tif"}
    fuse(inputs, ref["fused"], quality=ref["quality"], method="mean")
    out = {"fused": tmp_path / "mean_c.tif", "quality": tmp_path / "mean_c_q.tif"}
    fuse(inputs, out["fused"], quality=out["quality"], method="mean", chunk=300)
    same_outputs(ref, out)
    plan = engines.plan(700, 1100, None, 0, 256)
    for chunk in plan_chunks(700, 1100, 300):
        reg = region_for(plan, chunk, None)
        assert reg.plan.disjoint and reg.width == chunk.x1 - chunk.x0
        assert sum(reg.plan.cols.sizes) == reg.width


def test_cancel_leaves_nothing_and_resume_finishes_the_rest(tmp_path):
    inputs = scene(tmp_path, 700, 900)
    ref = tmp_path / "ref.tif"
    fuse(inputs, ref, method="mean")
    out = tmp_path / "out.tif"
    folder = parts_folder(out)
    seen: list[float] = []

    def cancel_midway() -> bool:
        return bool(seen) and seen[-1] >= 0.3

    with pytest.raises(Cancelled):
        fuse(inputs, out, method="mean", chunk=256, progress=seen.append, cancel=cancel_midway)
    assert not out.exists() and not folder.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    seen.clear()
    with pytest.raises(Cancelled):  # with resume, the finished parts stay for the next run
        fuse(inputs, out, method="mean", chunk=256, progress=seen.append, cancel=cancel_midway,
             resume=True)
    kept = sorted(p.name for p in folder.glob("fused_*.tif"))
    assert 0 < len(kept) < 12 and not out.exists()

    log: list[str] = []
    res = fuse(inputs, out, method="mean", chunk=256, resume=True, log=log.append)
    assert res.chunks.reused == len(kept)
    assert any(f"resume: {len(kept)} of 12 chunk(s) already done" in m for m in log)
    same_outputs({"fused": ref}, {"fused": out})
    assert not folder.exists()


def test_resume_ignores_parts_of_another_run(tmp_path):
    inputs = scene(tmp_path, 600, 600)
    out = tmp_path / "out.tif"
    folder = parts_folder(out)
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"fingerprint": "another run"}))
    (folder / "fused_r0000_c0000.tif").write_bytes(b"not a part of this run")
    ref = tmp_path / "ref.tif"
    fuse(inputs, ref, method="mean")
    res = fuse(inputs, out, method="mean", chunk=256, resume=True)
    assert res.chunks.reused == 0
    same_outputs({"fused": ref}, {"fused": out})


# ----------------------------------------------------------------------------- LocalCluster


def test_local_cluster_of_two_processes_equals_the_local_run(tmp_path, random_weights,
                                                             one_thread):
    inputs = scene(tmp_path, 600, 700)
    local = outputs(tmp_path, "local")
    run(inputs, local, random_weights)
    outs = outputs(tmp_path, "cluster")
    from distributed import Client, LocalCluster

    # the caller's own Client (``cluster=N`` makes the same LocalCluster: see the CLI tests)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as lc, Client(lc) as client:
        res = run(inputs, outs, random_weights, cluster=client, chunk=384)
        assert client.status == "running"  # a caller's client is left open
    same_outputs(local, outs)
    assert res.chunks.workers == 2 and res.chunks.chunks == 4
    assert len(res.chunks.peak_mb) >= 1 and all(v > 0 for v in res.chunks.peak_mb.values())
    assert not parts_folder(outs["fused"]).exists()


def test_ctrl_c_cancels_the_cluster_run_and_leaves_nothing(tmp_path, random_weights):
    """SIGINT to the CLI during a --workers run: exit 130, no output, no parts, no workers."""
    import psutil

    inputs = scene(tmp_path, 600, 700)
    out = tmp_path / "out.tif"
    folder = parts_folder(out)
    proc = subprocess.Popen(cli(*inputs, "-o", out, "--weights", random_weights, "--device",
                                "cpu", "--workers", "1", "--chunk", "256", "-q"),
                            env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not list(folder.glob("fused_*.tif")) and time.time() < deadline \
                and proc.poll() is None:
            time.sleep(0.1)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "the local cluster's worker processes"
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Cancelled" in err and "Traceback" not in err
    assert not out.exists() and not folder.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive


def test_a_model_that_fails_to_load_on_the_workers_is_one_line(tmp_path, random_weights):
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs workers without a GPU")
    inputs = scene(tmp_path, 300, 300)
    out = tmp_path / "out.tif"
    proc = subprocess.run(cli(*inputs, "-o", out, "--weights", random_weights, "--device",
                              "cuda", "--workers", "1", "-q"), capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "Error: device 'cuda' requested but torch finds no CUDA GPU; use device auto or cpu"]
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- real processes


class Cluster:
    """``dask scheduler`` + ``dask worker`` processes, as on a real cluster."""

    def __init__(self, folder: Path, workers: int) -> None:
        self.folder = folder
        self.file = folder / "scheduler.json"
        self.env = dict(os.environ, OMP_NUM_THREADS="1")
        self.procs: list[subprocess.Popen] = []
        self.logs = []
        self._start("scheduler", ["scheduler", "--scheduler-file", str(self.file), "--port",
                                  "0", "--host", "127.0.0.1", "--no-dashboard"])
        self.workers = [self._start(f"worker{i}", [
            "worker", "--scheduler-file", str(self.file), "--nthreads", "1", "--no-nanny",
            "--no-dashboard", "--name", f"w{i}", "--local-directory", str(folder / f"w{i}")])
            for i in range(workers)]
        self.wait_for(workers)

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
        self.logs.append(log)
        if name != "scheduler":
            deadline = time.time() + 60
            while not self.file.exists() and time.time() < deadline:
                time.sleep(0.2)
        proc = subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log,
                                stderr=subprocess.STDOUT, env=self.env)
        self.procs.append(proc)
        return proc

    @property
    def address(self) -> str:
        return json.loads(self.file.read_text())["address"]

    def wait_for(self, n: int) -> None:
        from distributed import Client

        with Client(scheduler_file=str(self.file), timeout="60s") as client:
            client.wait_for_workers(n, timeout=120)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)
        for log in self.logs:
            log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster")
    c = None
    try:
        c = Cluster(folder, 2)
        yield c
    finally:
        if c is not None:
            c.stop()
        assert all(p.poll() is not None for p in (c.procs if c else []))


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "wsfusion_core.cli", "fuse", *[str(a) for a in args]]


def test_cli_on_a_scheduler_and_two_worker_processes(tmp_path, cluster, random_weights,
                                                      one_thread):
    inputs = scene(tmp_path, 600, 700)
    local = outputs(tmp_path, "local", quality=False)
    run(inputs, local, random_weights)
    outs = outputs(tmp_path, "remote", quality=False)
    proc = subprocess.run(cli(*inputs, "-o", outs["fused"], "--segmentation",
                              outs["segmentation"], "--weights", random_weights, "--device",
                              "cpu", "--cluster", cluster.address, "--chunk", "256", "-q"),
                          env=cluster.env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "9 (0 reused) on 2 worker(s)" in proc.stdout, proc.stdout
    same_outputs(local, outs)
    assert not parts_folder(outs["fused"]).exists()


def test_a_worker_killed_mid_run(tmp_path, cluster, random_weights, one_thread):
    """The run completes on the other worker (same result), or fails with one line; either
    way no parts are left behind (no --resume)."""
    inputs = scene(tmp_path, 600, 700)
    local = outputs(tmp_path, "local", quality=False)
    run(inputs, local, random_weights)
    outs = outputs(tmp_path, "remote", quality=False)
    folder = parts_folder(outs["fused"])
    proc = subprocess.Popen(cli(*inputs, "-o", outs["fused"], "--segmentation",
                                outs["segmentation"], "--weights", random_weights, "--device",
                                "cpu", "--scheduler-file", cluster.file, "--chunk", "256",
                                "-q"),
                            env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.time() + 300
        while not list(folder.glob("fused_*.tif")) and time.time() < deadline \
                and proc.poll() is None:
            time.sleep(0.1)
        victim = cluster.workers[1]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"killed worker mid-run: exit {proc.returncode}")  # which outcome, with -s
    if proc.returncode == 0:
        same_outputs(local, outs)
    else:
        lines = [ln for ln in err.splitlines() if ln.startswith("Error:")]
        assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in err, err
        assert not outs["fused"].exists()
    assert not folder.exists()
