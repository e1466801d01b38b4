"""Distributed fusion: 1 vs 2 Dask workers, the cost of chunking, peak memory per worker.

Three tables:

1. **chunking overhead** (no pixels): network tiles a chunked run evaluates (the chunk's halo
   and the rest of every network batch it touches) relative to the single-process plan, per
   chunk size, for the model's tile and the CPU / GPU batch sizes.
2. **runs**: the same fusion in one process (torch at one thread) and on a ``LocalCluster`` of
   1 and 2 worker processes (one thread each), on synthetic RGB uint8 rasters with nodata holes;
   wall time, speed-up against 1 worker, whether the output equals the local one byte for
   byte, and the peak RSS of each worker process.
3. **assembly** (``--assembly``): the client's final step (parts → VRT → output GeoTIFF) timed
   alone on the parts of a chunked run, serial against read-ahead (parts.READ_AHEAD: the next
   block row decoded while this one compresses), beside the whole run and what dominates
   (decoding the parts, compressing the output). Outputs compared byte for byte.

On a 2-core machine 2 workers can at best reach parity-times-two of one core; with other load
on the cores expect about parity. Inputs are synthetic (label any number taken from here so).

    .venv/bin/python bench/bench_distributed.py                      # 4096², K 2, learned
    .venv/bin/python bench/bench_distributed.py --size 2048 --method mean --chunk 1024
    .venv/bin/python bench/bench_distributed.py --method mean --assembly --skip-runs
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from wsfusion_core.options import METHODS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fuse import pick_weights, write_input  # noqa: E402 (one synthetic-input source)


def overhead_rows(side: int, tile: int, overlap: int, chunks: list[int],
                  batches: list[int]) -> list[str]:
    from wsfusion_core.chunks import plan_chunks, region_for
    from wsfusion_core.windows import plan_windows

    plan = plan_windows(side, side, tile, overlap)
    rows = []
    for bs in batches:
        for c in chunks:
            if c > side:
                continue
            regions = [region_for(plan, ch, bs) for ch in plan_chunks(side, side, c)]
            evaluated = sum(r.tile_count for r in regions)
            label = f"whole batches of {bs} (GPU)" if bs > 1 else "halo only (CPU)"
            rows.append(f"| {side:6d} | {c:5d} | {label:26s} | {len(regions):6d} | "
                        f"{plan.tile_count:8d} | {evaluated:9d} | "
                        f"{100 * (evaluated / plan.tile_count - 1):7.1f} % |")
    return rows


def run(inputs: list[str], out: Path, weights: str, method: str, cluster: object,
        chunk: int | None) -> tuple[float, Path | None, Any]:
    from wsfusion_core.api import fuse

    for p in out.parent.glob(out.name + "*"):
        p.unlink()
    seg = out.with_name(out.stem + "_seg.tif") if method == "learned" else None
    t0 = time.perf_counter()
    res = fuse(inputs, out, method=method, weights=weights, device="cpu", cluster=cluster,
               chunk=chunk, segmentation=seg, overwrite=True)
    return time.perf_counter() - t0, seg, res.chunks


def _assemble(inputs: list[str], out: Path, weights: str, method: str, chunk: int,
              backup: Path) -> tuple[float, float]:
    """A resumed run on a fresh copy of the parts (all reused): (seconds from the resume line
    to the end, i.e. assembly and publish; seconds of the whole call)."""
    from wsfusion_core.api import fuse
    from wsfusion_core.parts import parts_folder

    folder = parts_folder(out)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(backup, folder)
    marks: dict[str, float] = {}

    def log(msg: str) -> None:
        if msg.startswith("resume:"):
            marks["start"] = time.perf_counter()

    seg = out.with_name(out.stem + "_seg.tif") if method == "learned" else None
    t0 = time.perf_counter()
    fuse(inputs, out, method=method, weights=weights, device="cpu", chunk=chunk,
         segmentation=seg, overwrite=True, resume=True, log=log)
    end = time.perf_counter()
    return end - marks["start"], end - t0


def assembly_rows(inputs: list[str], tmp: Path, weights: str, method: str, chunk: int,
                  size: int, repeats: int = 3) -> list[str]:
    import rasterio
    from rasterio.windows import Window

    from wsfusion_core import parts
    from wsfusion_core.api import fuse
    from wsfusion_core.chunks import plan_chunks
    from wsfusion_core.errors import Cancelled
    from wsfusion_core.grid import align
    from wsfusion_core.writers import OutputSet, gdal_cache, open_fused

    out = tmp / "asm.tif"
    seg = out.with_name(out.stem + "_seg.tif") if method == "learned" else None
    t0 = time.perf_counter()
    fuse(inputs, out, method=method, weights=weights, device="cpu", chunk=chunk,
         segmentation=seg, overwrite=True)
    whole = time.perf_counter() - t0
    frac = [0.0]
    try:  # the same run stopped after its last chunk: the parts stay for resume
        fuse(inputs, out, method=method, weights=weights, device="cpu", chunk=chunk,
             segmentation=seg, overwrite=True, resume=True,
             progress=lambda f: frac.__setitem__(0, f), cancel=lambda: frac[0] >= 0.99)
    except Cancelled:
        pass
    backup = tmp / "parts_backup"
    shutil.copytree(parts.parts_folder(out), backup)
    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    files: dict[bool, bytes] = {}
    for _ in range(repeats):  # alternate, keep the best: the cores are shared
        for ahead in (False, True):
            parts.READ_AHEAD = ahead
            times[ahead].append(_assemble(inputs, out, weights, method, chunk, backup))
            files[ahead] = out.read_bytes()
    parts.READ_AHEAD = True
    # what dominates: decoding the fused parts vs compressing the fused output (from memory)
    al = align(inputs)
    lay = parts.Layer("fused", al.count, al.inputs[0].dtype, al.inputs[0].nodata)
    folder = parts.parts_folder(out)
    shutil.copytree(backup, folder)
    vrt = parts.write_vrt(folder / "fused.vrt", al.grid, lay,
                          plan_chunks(size, size, chunk))
    with gdal_cache(size, al.count):
        t0 = time.perf_counter()
        with rasterio.open(vrt) as src:
            rows = [src.read(window=Window(0, y, size, min(256, size - y)))
                    for y in range(0, size, 256)]
        decode = time.perf_counter() - t0
        t0 = time.perf_counter()
        with OutputSet(True, False) as outs:
            w = outs.add(open_fused(tmp / "enc.tif", al.grid, al.count, lay.dtype, lay.nodata,
                                    False, descriptions=(None,) * al.count, tags={}, rgb=True))
            for r in rows:
                w.append(r)
            outs.commit(lambda: None)
        encode = time.perf_counter() - t0
    shutil.rmtree(folder)
    serial = min(t[0] for t in times[False])
    ahead = min(t[0] for t in times[True])
    same = files[False] == files[True]
    return [f"| whole chunked run, 1 process | {whole:.2f} | 100 % | |",
            f"| assembly + publish, serial (before) | {serial:.2f} | {100 * serial / whole:.0f} %"
            " | 1.00x |",
            f"| assembly + publish, read-ahead (after) | {ahead:.2f} | "
            f"{100 * ahead / whole:.0f} % | {serial / ahead:.2f}x |",
            f"| of which: decoding the fused parts | {decode:.2f} | "
            f"{100 * decode / whole:.0f} % | |",
            f"| of which: compressing the fused output | {encode:.2f} | "
            f"{100 * encode / whole:.0f} % | |",
            f"| outputs before/after byte-identical | {same} | | |"]


def read(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--method", default="learned", choices=list(METHODS))
    ap.add_argument("--weights", default=None, help="default: shipped, else random init")
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--skip-runs", action="store_true", help="no worker runs (table 2)")
    ap.add_argument("--assembly", action="store_true", help="also time the final assembly")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the local reference at one torch thread

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmpdir:
        tmp = Path(tmpdir)
        weights, wdesc = pick_weights(args.weights, tmp)
        from wsfusion_core.weights import read_info

        info = read_info(weights)
        print(f"# weights: {wdesc}; tile {info.tile_size}; {os.cpu_count()} CPUs; "
              "synthetic inputs")
        print("\n## chunking overhead (tile evaluations; overlap 64)\n")
        print("|   side | chunk | tiles a chunk takes        | chunks | plan tiles | evaluated "
              "| overhead |")
        print("|--------|-------|----------------------------|--------|------------|-----------"
              "|----------|")
        for side in (args.size, 16384):
            for line in overhead_rows(side, info.tile_size, 64, [1024, 2048, 4096, 8192],
                                      [1, 16]):
                print(line)
        inputs = [str(write_input(tmp / f"in{i}.tif", args.size, seed=i)) for i in range(args.k)]
        if args.assembly:
            print(f"\n## assembly: {args.size}² x K={args.k}, {args.method}, chunk {args.chunk}"
                  f" (best of 3, synthetic)\n")
            print("| step | seconds | of the whole run | speed-up |")
            print("|------|---------|------------------|----------|")
            for line in assembly_rows(inputs, tmp, weights, args.method, args.chunk, args.size):
                print(line, flush=True)
        if args.skip_runs:
            return
        print(f"\n## runs: {args.size}² x K={args.k}, {args.method}, chunk {args.chunk}\n")
        print("| run | workers | seconds | vs 1 worker | equal to local | peak RSS MB per "
              "worker |")
        print("|-----|---------|---------|-------------|----------------|"
              "-----------------------|")
        local_t, local_seg, _none = run(inputs, tmp / "local.tif", weights, args.method, None, None)
        ref = read(tmp / "local.tif")
        print(f"| local, 1 process, 1 thread | - | {local_t:.1f} | | | |", flush=True)
        one = None
        for n in (1, 2):
            out = tmp / f"dask{n}.tif"
            t, seg, stats = run(inputs, out, weights, args.method, n, args.chunk)
            equal = np.array_equal(read(out), ref) and (
                seg is None or np.array_equal(read(seg), read(local_seg)))
            one = one or t
            peaks = ", ".join(f"{v:.0f}" for v in sorted(stats.peak_mb.values()))
            print(f"| LocalCluster | {n} | {t:.1f} | {one / t:.2f}x | {equal} | {peaks} |",
                  flush=True)


if __name__ == "__main__":
    main()
