"""Distributed fusion: 1 vs 2 Dask workers, the cost of chunking, peak memory per worker.

Three tables:

1. **chunking overhead** (no pixels): network tiles a chunked run evaluates (the chunk's halo
   and the rest of every network batch it touches) relative to the single-process plan, per
   chunk size, for the model's tile and the CPU / GPU batch sizes.
2. **runs**: the same fusion in one process (torch at one thread) and on a ``LocalCluster`` of
   1 and 2 worker processes (one thread each), on synthetic RGB uint8 rasters with nodata holes;
   wall time, speed-up against 1 worker, whether the output equals the local one byte for
   byte, and the peak RSS of each worker process.

On a 2-core machine 2 workers can at best reach parity-times-two of one core; with other load
on the cores expect about parity. Inputs are synthetic (label any number taken from here so).

    .venv/bin/python bench/bench_distributed.py                      # 4096², K 2, learned
    .venv/bin/python bench/bench_distributed.py --size 2048 --method mean --chunk 1024
"""

from __future__ import annotations

import argparse
import os
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
    ap.add_argument("--skip-runs", action="store_true", help="only the overhead table")
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
        if args.skip_runs:
            return
        inputs = [str(write_input(tmp / f"in{i}.tif", args.size, seed=i)) for i in range(args.k)]
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
