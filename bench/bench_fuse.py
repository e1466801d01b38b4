"""Throughput and peak memory of ``wsfusion_core.fuse``, each against a limit measured in the
same run: the FLOP-bound limit of the networks and the I/O floor of the files.

- every configuration runs in a fresh subprocess (its peak RSS is its own; its time includes
  importing torch, as a CLI run's does), on synthetic RGB uint8 rasters with nodata holes;
- **FLOP-bound limit** (learned / segmentation): FLOPs per output Mpx from the plan (tiles ×
  network passes × FLOPs per pass, counted by ``torch.utils.flop_counter``) divided into the
  best GFLOP/s the bare network reaches on this machine in this run (several call shapes and
  layouts are tried, the best one counts);
- **I/O floor**: read the K inputs strip by strip and write one output with GDAL (same
  compression and threads as the engine), no networks;
- **setup**: the seconds before ``fuse``'s loop starts (checks, alignment, importing torch,
  loading the model, a GPU's context and warm-up, choosing the scale, opening the outputs):
  a fixed cost per run; "/ I/O floor after setup" compares the rest (the loop and publishing)
  with the floor, the rate a large raster approaches;
- ``--repeat N`` interleaves N rounds of every measurement and keeps each one's best time, so
  the ratios compare runs taken under the same load.

    python bench/bench_fuse.py                                    # CPU: 2048², K 2 and 6
    python bench/bench_fuse.py --sizes 2048,8192 --configs mean,median,min-blue --repeat 3
    python bench/bench_fuse.py --device cuda --sizes 2048,8192 --k 2,6 --budget 170
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
CONFIGS = {  # name → (method, segmentation[, selection])
    "learned": ("learned", False),
    "learned+seg": ("learned", True),
    "mean": ("mean", False),
    "median": ("median", False),
    "min-blue": ("min-blue", False),
    # best-pixel selection (not run against --baseline: an older tree may not have it)
    "learned+best": ("learned", False, "best"),
    "min-blue+best": ("min-blue", False, "best"),
}
DEFAULT_CONFIGS = ("learned", "learned+seg", "mean", "median", "min-blue")


def write_input(path: Path, size: int, seed: int) -> Path:
    """Smooth-ish RGB content plus noise, nodata 0, one hole per input at a seed-dependent spot."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    low = rng.integers(30, 220, (3, size // 64 + 2, size // 64 + 2)).astype(np.uint8)
    hole = rng.integers(0, size - size // 8, 2)
    prof = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", nodata=0,
                crs="EPSG:32618", transform=from_origin(500000, 4000000, 1.0, 1.0), tiled=True,
                blockxsize=256, blockysize=256, compress="deflate", zlevel=1,
                num_threads="ALL_CPUS", photometric="RGB")
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


# ----------------------------------------------------------------------------- children


def child_fuse(args: argparse.Namespace) -> dict:
    from wsfusion_core.api import fuse

    out = Path(args.out)
    seg = out.with_name("seg_" + out.name) if args.seg else None
    started: list[float] = []  # fuse reports progress 0 once, just before its loop starts
    t0 = time.perf_counter()
    res = fuse(args.inputs, out, segmentation=seg, method=args.method, weights=args.weights,
               device=args.device, batch_size=args.batch_size, overwrite=True,
               progress=lambda _f: started.append(time.perf_counter()) if not started else None,
               **({"compile": True} if args.compile else {}),
               **({"bf16": True} if args.bf16 else {}),
               **({"selection": args.selection} if args.selection != "blend" else {}))
    seconds = time.perf_counter() - t0
    for p in (out, seg):
        if p is not None:
            p.unlink()
    return {"seconds": seconds, "setup": started[0] - t0, "tiles": res.tiles,
            "device": res.device, "rss_mb": _peak_rss_mb()}


def child_io(args: argparse.Namespace) -> dict:
    """The I/O floor: read every input strip by strip, write one output like the engine's."""
    import rasterio
    from rasterio.windows import Window

    from wsfusion_core.grid import describe
    from wsfusion_core.writers import base_profile

    info = describe(args.inputs[0])
    out = Path(args.out)
    t0 = time.perf_counter()
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
        srcs = [rasterio.open(p) for p in args.inputs]
        profile = base_profile(info.grid(), info.count, info.dtype, info.nodata)
        with rasterio.open(out, "w", **profile) as dst:
            for y0 in range(0, info.height, 256):
                win = Window(0, y0, info.width, min(256, info.height - y0))
                strips = [s.read(window=win) for s in srcs]
                dst.write(strips[0], window=win)
        for s in srcs:
            s.close()
    seconds = time.perf_counter() - t0
    out.unlink()
    return {"seconds": seconds, "rss_mb": _peak_rss_mb()}


def child_bare(args: argparse.Namespace) -> dict:
    """FLOPs per network pass and the best GFLOP/s of the bare networks on this machine."""
    import copy

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from wsfusion_core import runner as rn
    from wsfusion_core.weights import load_weights

    dev = rn.resolve_device(args.device)
    if dev == "cpu":  # the threads load_runner gives the end-to-end run
        if "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(len(os.sched_getaffinity(0)))
        rn.keep_freed_memory()
    model, info = load_weights(args.weights, device="cpu")
    t = info.tile_size
    counted = {}
    for name in ("quality", "segmentation"):
        net = getattr(model, name, None)
        if net is not None:
            cin = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
            with FlopCounterMode(display=False) as fc, torch.inference_mode():
                net(torch.rand(1, cin, t, t))
            counted[name] = (fc.get_total_flops(), cin)
    # Speed is measured on the quality net (K passes per tile), else the segmentation net.
    which = "quality" if "quality" in counted else "segmentation"
    flops, cin = counted[which]
    policy = rn.policy_for(dev, compile=args.compile, bf16=args.bf16)
    prepared = getattr(rn.prepare(copy.deepcopy(model).to(dev), policy, t), which)
    plain = copy.deepcopy(getattr(model, which)).to(dev)
    cl = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    if dev == "cpu":
        variants = {"runner form, 2 img/call": (prepared, 2, False),
                    "channels_last, 1 img/call": (cl, 1, True),
                    "default layout, 1 img/call": (plain, 1, False)}
    else:
        variants = {"runner form, 128 img/call": (prepared, 128, False),
                    "runner form, 32 img/call": (prepared, 32, False)}
    amp = (torch.autocast(dev.split(":")[0], dtype=policy.amp) if policy.amp is not None
           else torch.autocast("cpu", enabled=False))
    seen: dict[str, list[float]] = {}
    with torch.inference_mode(), amp:
        for _round in range(3):
            for name, (net, n, to_cl) in variants.items():
                x = torch.rand(n, cin, t, t, device=dev)
                if to_cl:
                    x = x.contiguous(memory_format=torch.channels_last)
                net(x)  # warm-up (and, with --compile, compilation)
                if dev != "cpu":
                    torch.cuda.synchronize()
                reps, t0 = 0, time.perf_counter()
                while reps < 2 or time.perf_counter() - t0 < args.bare_seconds:
                    net(x)
                    reps += 1
                if dev != "cpu":
                    torch.cuda.synchronize()
                g = flops * n * reps / (time.perf_counter() - t0) / 1e9
                seen.setdefault(name, []).append(g)
    best = {name: max(gs) for name, gs in seen.items()}
    top = max(best, key=lambda name: best[name])
    return {"flops_quality": counted.get("quality", (0, 0))[0],
            "flops_segmentation": counted["segmentation"][0], "measured_on": which,
            "gflops": best[top], "gflops_median": float(np.median(seen[top])),
            "variants": best,
            "device": dev, "threads": torch.get_num_threads()}


def child_peer(args: argparse.Namespace) -> dict:
    """What a user would write by hand: read the whole rasters with rasterio, np.nanmedian or
    gdal_calc.py for the mean."""
    import rasterio

    t0 = time.perf_counter()
    if args.method == "median":
        stack = []
        for p in args.inputs:
            with rasterio.open(p) as src:
                a = src.read().astype(np.float32)
                a[a == src.nodata] = np.nan
                stack.append(a)
                profile = src.profile
        med = np.nanmedian(np.stack(stack), axis=0)
        with rasterio.open(args.out, "w", **profile) as dst:
            dst.write(np.nan_to_num(med).round().astype(np.uint8))
        rss = _peak_rss_mb()
    else:
        letters = "ABCDEFGHIJ"[:len(args.inputs)]
        calc = f"numpy.mean([{','.join(letters)}], axis=0)"
        cmd = ["gdal_calc.py", "--quiet", "--overwrite", "--allBands=A", f"--calc={calc}",
               f"--outfile={args.out}", "--co=COMPRESS=DEFLATE", "--co=TILED=YES"]
        for letter, p in zip(letters, args.inputs):
            cmd += [f"-{letter}", p]
        subprocess.run(cmd, check=True, capture_output=True)
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    seconds = time.perf_counter() - t0
    Path(args.out).unlink()
    return {"seconds": seconds, "rss_mb": rss}


def run_child(kind: str, extra: list[str], timeout: float, tree: str | None = None
              ) -> dict | None:
    """One measurement in a fresh process; ``tree``: import wsfusion_core from that checkout."""
    cmd = [sys.executable, __file__, "--child", kind, *extra]
    env = dict(os.environ, PYTHONPATH=tree) if tree else None
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None
    if p.returncode != 0:
        print(f"# child failed: {' '.join(cmd)}\n{p.stderr.strip()[-2000:]}", file=sys.stderr)
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- parent


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


def _best(old: dict | None, new: dict | None) -> dict | None:
    if new is None:
        return old
    if old is None:
        return new
    keep = dict(old if old["seconds"] <= new["seconds"] else new)
    keep["rss_mb"] = max(old["rss_mb"], new["rss_mb"])  # the worst peak seen
    return keep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2048", help="raster sides in px (comma list)")
    ap.add_argument("--k", default="2,6", help="numbers of inputs (comma list)")
    ap.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                    help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--weights", default=None, help="default: shipped, else random init")
    ap.add_argument("--batch-size", type=int, default=None, help="tiles per runner call")
    ap.add_argument("--compile", action="store_true", help="fuse(compile=True)")
    ap.add_argument("--bf16", action="store_true", help="fuse(bf16=True)")
    ap.add_argument("--repeat", type=int, default=1, help="interleaved rounds, best time kept")
    ap.add_argument("--baseline", default=None, metavar="TREE",
                    help="also run every fuse configuration with wsfusion_core imported from "
                         "this checkout (an A/B in the same run), rows marked '(baseline)'")
    ap.add_argument("--peers", action="store_true",
                    help="also time rasterio+np.nanmedian and gdal_calc.py (largest size, K)")
    ap.add_argument("--max-seconds", type=float, default=600, help="per child; then 'timeout'")
    ap.add_argument("--budget", type=float, default=None,
                    help="total seconds; measurements not started by then print 'skipped'")
    ap.add_argument("--bare-seconds", type=float, default=2.0, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", default=None, help="folder for the synthetic inputs")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--inputs", nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--seg", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--selection", default="blend", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        fn = {"fuse": child_fuse, "io": child_io, "bare": child_bare, "peer": child_peer}
        print(json.dumps(fn[args.child](args)))
        return

    t_start = time.perf_counter()
    sizes = [int(s) for s in args.sizes.split(",")]
    ks = [int(k) for k in args.k.split(",")]
    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown configs {unknown}; choose from {', '.join(CONFIGS)}")
    nets = any(CONFIGS[c][0] == "learned" or CONFIGS[c][1] for c in configs)
    common = ["--device", args.device] + (["--compile"] if args.compile else []) + (
        ["--bf16"] if args.bf16 else [])
    if args.batch_size:
        common += ["--batch-size", str(args.batch_size)]

    def over_budget() -> bool:
        return args.budget is not None and time.perf_counter() - t_start > args.budget

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmpdir:
        tmp = Path(tmpdir)
        weights, wdesc = pick_weights(args.weights, tmp)
        files: dict[tuple[int, int], Path] = {}
        for size in sizes:
            for i in range(max(ks)):
                files[(size, i)] = write_input(tmp / f"in_{size}_{i}.tif", size, seed=i)
        t_inputs = time.perf_counter() - t_start
        out = str(tmp / "out.tif")
        results: dict[tuple, dict | None] = {}
        bare: dict | None = None
        for rnd in range(args.repeat):
            if nets and not over_budget():
                b = run_child("bare", ["--weights", weights, "--bare-seconds",
                                       str(args.bare_seconds), *common], args.max_seconds)
                if b and (bare is None or b["gflops"] > bare["gflops"]):
                    bare = b
            for size in sizes:
                for k in ks:
                    ins = [str(files[(size, i)]) for i in range(k)]
                    jobs: list[tuple[tuple, str, list[str], str | None]] = [
                        (("io", size, k), "io", [], None)]
                    for c in configs:
                        method, seg, *sel = CONFIGS[c]
                        extra = ["--method", method, "--seg", str(int(seg)),
                                 "--selection", sel[0] if sel else "blend",
                                 "--weights", weights, *common]
                        jobs.append(((c, size, k), "fuse", extra, None))
                        if args.baseline and not sel:
                            jobs.append(((c + " (baseline)", size, k), "fuse", extra,
                                         args.baseline))
                    for key, kind, extra, tree in jobs:
                        if over_budget():
                            results.setdefault(key, None)
                            continue
                        r = run_child(kind, ["--inputs", *ins, "--out", out, *extra],
                                      args.max_seconds, tree)
                        results[key] = _best(results.get(key), r)
                        took = "failed/timeout" if r is None else f"{r['seconds']:.2f} s"
                        print(f"# round {rnd + 1}: {key} {took}", file=sys.stderr, flush=True)
        peers = {}
        if args.peers and not over_budget():
            size, k = max(sizes), max(ks)
            ins = [str(files[(size, i)]) for i in range(k)]
            for m in ("median", "mean"):
                peers[m] = run_child("peer", ["--inputs", *ins, "--out", out, "--method", m],
                                     args.max_seconds)
                peers[m + "-ours"] = results.get((m, size, k))
        import torch

        dev = bare["device"] if bare else args.device
        print(f"# weights: {wdesc}; device {dev}"
              + (f" ({torch.cuda.get_device_name()})" if dev.startswith("cuda") else
                 f" ({len(os.sched_getaffinity(0))} CPUs, torch {torch.__version__})")
              + f"; {args.repeat} interleaved round(s), best time kept"
              + (", torch.compile" if args.compile else "") + (", bf16" if args.bf16 else ""))
        print("# synthetic inputs: RGB uint8, blocky content + noise, nodata holes; "
              f"written in {t_inputs:.0f} s")
        if bare:
            print(f"# bare networks: quality {bare['flops_quality'] / 1e9:.2f}, segmentation "
                  f"{bare['flops_segmentation'] / 1e9:.2f} GFLOP per pass; best "
                  f"{bare['gflops']:.0f} GFLOP/s (median of its rounds "
                  f"{bare.get('gflops_median', bare['gflops']):.0f}, {bare['threads']} threads) "
                  f"on the {bare['measured_on']} net ("
                  + ", ".join(f"{n}: {g:.0f}" for n, g in bare["variants"].items()) + ")")
        shown = [x for c in configs for x in ([c, c + " (baseline)"]
                                              if args.baseline and len(CONFIGS[c]) == 2 else [c])]
        _table(results, sizes, ks, shown, bare, weights)
        for name, r in peers.items():
            if r is not None and not name.endswith("-ours"):
                ours = peers.get(name + "-ours")
                peer = ("rasterio + np.nanmedian (whole rasters)" if name == "median"
                        else "gdal_calc.py numpy.mean")
                vs = (f"; ours {r['seconds'] / ours['seconds']:.2f}x faster, "
                      f"{ours['rss_mb']:.0f} MiB" if ours else "")
                print(f"# peer {peer}, {max(sizes)}², K={max(ks)}: {r['seconds']:.1f} s, "
                      f"{r['rss_mb']:.0f} MiB peak{vs}")
        print(f"# total {time.perf_counter() - t_start:.0f} s")


def _table(results: dict, sizes: list[int], ks: list[int], configs: list[str],
           bare: dict | None, weights: str) -> None:
    from wsfusion_core.weights import read_info
    from wsfusion_core.windows import plan_windows

    tile = read_info(weights).tile_size
    cols = ["size", "K", "config", "tiles", "seconds", "setup s", "Mpx/s", "peak RSS MiB",
            "FLOP-bound Mpx/s", "/ FLOP-bound", "I/O floor Mpx/s", "/ I/O floor",
            "/ I/O floor after setup"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("-" * (len(c) + 2) for c in cols) + "|")
    for size in sizes:
        mpx = size * size / 1e6
        tiles = plan_windows(size, size, tile, 64).tile_count
        for k in ks:
            io = results.get(("io", size, k))
            io_mpx = mpx / io["seconds"] if io else None
            for c in configs:
                r = results.get((c, size, k))
                method, seg = CONFIGS[c.split(" ")[0]][:2]
                passes = (k if method == "learned" else 0) + (1 if seg else 0)
                limit = None
                if passes and bare:
                    per_tile = ((k * bare["flops_quality"] if method == "learned" else 0)
                                + (bare["flops_segmentation"] if seg else 0))
                    flops_per_mpx = tiles * per_tile / mpx
                    limit = bare["gflops"] * 1e9 / flops_per_mpx
                cells = [str(size), str(k), c, str(tiles if passes else "-")]
                if r is None:
                    cells += ["timeout/skipped"] + [""] * 8
                else:
                    e2e = mpx / r["seconds"]
                    setup = r.get("setup")  # absent in a baseline tree's older child
                    loop = mpx / (r["seconds"] - setup) if setup is not None else None
                    cells += [f"{r['seconds']:.1f}",
                              f"{setup:.1f}" if setup is not None else "-",
                              f"{e2e:.3f}", f"{r['rss_mb']:.0f}",
                              f"{limit:.3f}" if limit else "-",
                              f"{e2e / limit:.2f}" if limit else "-",
                              f"{io_mpx:.2f}" if io_mpx else "-",
                              f"{e2e / io_mpx:.2f}" if io_mpx else "-",
                              f"{loop / io_mpx:.2f}" if io_mpx and loop else "-"]
                print("| " + " | ".join(cells) + " |", flush=True)
    for k in ks:
        for c in configs:
            a, b = results.get((c, 8192, k)), results.get((c, 2048, k))
            if a and b:
                print(f"# peak RSS 8192² / 2048² (K={k}, {c}): {a['rss_mb'] / b['rss_mb']:.2f}")


if __name__ == "__main__":
    main()
