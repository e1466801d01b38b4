"""End-to-end throughput and peak memory of ``wsfusion_core.fuse`` vs the bare model.

Each configuration runs in a fresh subprocess (so peak RSS is that run's own), on synthetic
RGB uint8 rasters with nodata holes written once to a temp folder. The bare-model line times
only ``FusionModel.forward`` on pre-made batches of tiles the size the engine uses, for the
same number of tiles as the end-to-end plan; end-to-end / bare shows what I/O, alignment and
blending cost on top of the network.

    .venv/bin/python bench/bench_fuse.py                       # CPU defaults (small)
    .venv/bin/python bench/bench_fuse.py --sizes 1024,2048,4096,8192 --k 2,6 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHUNK = 1024  # rows written per step: the 8k² inputs are never held whole


def write_input(path: Path, size: int, seed: int) -> Path:
    """Smooth-ish RGB content plus noise, nodata 0, one hole per input at a seed-dependent spot."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    low = rng.integers(30, 220, (3, size // 64 + 2, size // 64 + 2)).astype(np.uint8)
    hole = rng.integers(0, size - size // 8, 2)
    prof = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", nodata=0,
                crs="EPSG:32618", transform=from_origin(500000, 4000000, 1.0, 1.0), tiled=True,
                blockxsize=256, blockysize=256, compress="deflate", photometric="RGB")
    with rasterio.open(path, "w", **prof) as dst:
        for y0 in range(0, size, CHUNK):
            h = min(CHUNK, size - y0)
            rows = np.arange(y0, y0 + h) // 64
            block = low[:, rows][:, :, np.arange(size) // 64]
            block = np.clip(block + rng.integers(0, 20, block.shape, dtype=np.uint8), 1, 255)
            ys = slice(max(hole[0] - y0, 0), max(min(hole[0] + size // 8 - y0, h), 0))
            block[:, ys, hole[1]:hole[1] + size // 8] = 0
            dst.write(block.astype(np.uint8), window=((y0, y0 + h), (0, size)))
    return path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child_fuse(args: argparse.Namespace) -> dict:
    from wsfusion_core.api import fuse

    out = Path(args.out)
    res = fuse(args.inputs, out, method=args.method, weights=args.weights, device=args.device,
               overwrite=True)
    out.unlink()
    return {"seconds": res.seconds, "tiles": res.tiles, "device": res.device,
            "rss_mb": _peak_rss_mb()}


def child_bare(args: argparse.Namespace) -> dict:
    """Forward passes only, on random pre-made batches; extrapolated to the plan's tile count."""
    import torch

    from wsfusion_core.runner import BATCH_CPU, BATCH_GPU, resolve_device
    from wsfusion_core.weights import load_weights
    from wsfusion_core.windows import plan_windows

    dev = resolve_device(args.device)
    model, info = load_weights(args.weights, device=dev)
    plan = plan_windows(args.size, args.size, info.tile_size, 64)
    bs = BATCH_GPU if dev.startswith("cuda") else BATCH_CPU
    x = torch.rand(bs, args.k, 3, info.tile_size, info.tile_size, device=dev)
    valid = torch.ones(bs, args.k, info.tile_size, info.tile_size, dtype=torch.bool, device=dev)
    ctx = (torch.autocast("cuda", dtype=torch.float16) if dev.startswith("cuda")
           else torch.autocast("cpu", enabled=False))
    with torch.inference_mode(), ctx:
        model(x, valid)  # warm-up
        n, t0 = 0, time.perf_counter()
        while n < plan.tile_count and time.perf_counter() - t0 < args.max_seconds / 2:
            model(x, valid)
            n += bs
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
    per_tile = (time.perf_counter() - t0) / n
    return {"seconds": per_tile * plan.tile_count, "tiles": plan.tile_count, "measured": n,
            "device": dev, "rss_mb": _peak_rss_mb()}


def run_child(extra: list[str], timeout: float) -> dict | None:
    cmd = [sys.executable, __file__, "--child", *extra]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if p.returncode != 0:
        raise SystemExit(f"child failed: {' '.join(cmd)}\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def pick_weights(path: str | None, tmp: Path) -> tuple[str, str]:
    from wsfusion_core.errors import WeightsError
    from wsfusion_core.weights import resolve_weights

    if path:
        return path, f"given ({path})"
    try:
        return str(resolve_weights(None)), "shipped default weights"
    except WeightsError:
        import torch

        from wsfusion_core.model import FusionModel
        from wsfusion_core.weights import ModelInfo, save_weights

        torch.manual_seed(0)
        widths = [16, 32, 64, 128, 128]
        out = save_weights(tmp / "random.safetensors", FusionModel(widths=widths).eval(),
                           ModelInfo(tile_size=300, widths=widths, name="random-bench"))
        return str(out), "random-initialised weights (no default shipped), same architecture"


def main() -> None:
    from wsfusion_core.options import DEVICES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1024,2048", help="raster sides in px (comma list)")
    ap.add_argument("--k", default="2,6", help="numbers of inputs (comma list)")
    ap.add_argument("--methods", default="learned,mean")
    ap.add_argument("--device", default="auto", choices=list(DEVICES))
    ap.add_argument("--weights", default=None, help="default: shipped, else random init")
    ap.add_argument("--max-seconds", type=float, default=300,
                    help="per configuration; slower ones are reported as 'timeout'")
    ap.add_argument("--tmp", default=None, help="folder for the synthetic inputs")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--one-k", dest="one_k", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.bare:
            args.k = args.one_k
        print(json.dumps(child_bare(args) if args.bare else child_fuse(args)))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    ks = [int(k) for k in args.k.split(",")]
    methods = args.methods.split(",")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmpdir:
        tmp = Path(tmpdir)
        weights, wdesc = pick_weights(args.weights, tmp)
        print(f"# weights: {wdesc}; device {args.device}; {os.cpu_count()} CPUs; "
              f"max {args.max_seconds:g} s per configuration")
        header = (f"| {'size':>6} | {'K':>2} | {'method':<7} | {'tiles':>5} | {'seconds':>8} | "
                  f"{'Mpx/s':>7} | {'peak RSS MB':>11} | {'bare model Mpx/s':>16} | "
                  f"{'e2e / bare':>10} |")
        print(header)
        print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
        rss: dict[tuple[int, int, str], float] = {}
        for size in sizes:
            files = {}
            for k in ks:
                for i in range(k):
                    if i not in files:
                        files[i] = write_input(tmp / f"in_{size}_{i}.tif", size, seed=i)
                inputs = [str(files[i]) for i in range(k)]
                bare = None
                for method in methods:
                    r = run_child(["--inputs", *inputs, "--out", str(tmp / "out.tif"),
                                   "--method", method, "--weights", weights, "--device",
                                   args.device], args.max_seconds)
                    if method == "learned" and bare is None:
                        bare = run_child(["--bare", "--size", str(size), "--one-k", str(k),
                                          "--weights", weights, "--device", args.device,
                                          "--max-seconds", str(args.max_seconds)],
                                         args.max_seconds)
                    mpx = size * size / 1e6
                    if r is None:
                        print(f"| {size:>6} | {k:>2} | {method:<7} | {'':>5} | "
                              f"{'timeout':>8} | {'':>7} | {'':>11} | {'':>16} | {'':>10} |")
                        continue
                    rss[(size, k, method)] = r["rss_mb"]
                    e2e = mpx / r["seconds"]
                    b = (f"{mpx / bare['seconds']:16.3f}" if method == "learned" and bare
                         else f"{'':>16}")
                    ratio = (f"{e2e / (mpx / bare['seconds']):10.2f}"
                             if method == "learned" and bare else f"{'':>10}")
                    print(f"| {size:>6} | {k:>2} | {method:<7} | {r['tiles']:>5} | "
                          f"{r['seconds']:8.1f} | {e2e:7.3f} | {r['rss_mb']:11.0f} | {b} | "
                          f"{ratio} |", flush=True)
            for f in files.values():
                f.unlink()
        printed = False
        for k in ks:
            for method in methods:
                a, b = rss.get((8192, k, method)), rss.get((2048, k, method))
                if a and b:
                    printed = True
                    print(f"# peak RSS 8192² / 2048² (K={k}, {method}): {a / b:.2f} "
                          "(pixels x16)")
        if not printed:
            print("# peak RSS 8192² / 2048²: not measured (needs --sizes with 2048 and 8192, "
                  "both finishing within --max-seconds)")


if __name__ == "__main__":
    main()
