"""The per-pixel work around the networks, measured without them: the learned engine loop
(read → tiles → network view → weighting → blend → finished rows) with both U-Nets replaced by
zeros of their output shape (zero-cost networks), for the numpy path
(the CPU's) and the device path (view, weights and blending in torch: device_blend, what a CUDA
run uses) run here on the CPU. On a GPU the networks take milliseconds, so this overhead is what
limits learned fusion there (docs/benchmark.md, GPU). Synthetic inputs (bench_fuse.write_input).
"kernel ops" counts the computing torch operations a run dispatches (one extra, untimed run; views
apart): on a GPU each is a kernel launch, host time that no faster GPU removes, so the count
says what a CPU timing cannot.

    python bench/bench_overhead.py --size 2048 --k 6 [--device cpu|cuda] [--repeat 1]
        [--tiles 32] [--plain-gdal] [--no-ops]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_fuse import write_input  # noqa: E402


def zero_cost(runner):  # noqa: ANN001, ANN201 - bench helper
    """The runner with both networks replaced by a module that returns zeros of the network's
    output shape (its only cost: allocating them)."""
    import torch
    from torch import nn

    class Zeros(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.channels = channels

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros((x.shape[0], self.channels) + x.shape[2:], device=x.device)

    model = runner.model
    for name in ("quality", "segmentation"):
        net = getattr(model, name, None)
        if net is not None:
            convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
            setattr(model, name, Zeros(convs[-1].out_channels))
    return runner


def host_share(runner, tiles: int | None):  # noqa: ANN001, ANN201 - bench helper
    """The device path on torch's ``meta`` device: every device operation costs only its
    dispatch (shapes, no data), as if the GPU were infinitely fast; the strip's upload keeps
    its host copy (the pinned staging copy a CUDA upload makes) and results come back as
    uninitialised host tensors (a GPU's copies back are DMA). What remains is the host's share
    of a CUDA run — reading, Python, dispatch, staging, nodata on the host — measured on any
    machine. Patches this process's runner and device_blend modules."""
    import dataclasses as dc

    import torch

    from wsfusion_core import device_blend as db
    from wsfusion_core import runner as rn

    real_upload = rn.upload

    def upload(a, device: str):  # noqa: ANN001, ANN202
        t = real_upload(a, "cpu")
        return t.clone().to(device) if device == "meta" else t

    rn.upload = db.upload = upload
    db.to_host = lambda parts: {k: torch.empty(v.shape, dtype=v.dtype)
                                for k, v in parts.items()}
    runner.model.to("meta")
    return rn.ModelRunner(runner.model, runner.info, dc.replace(
        runner.policy, device="meta", tiles=tiles or rn.TILES_GPU, images_per_call=None,
        device_side=True))


def read_once(inputs: list[str], tile: int, gdal_env: bool = True) -> float:
    """The loop's reading alone: every strip of the plan read (one ahead, in the reader
    thread, as the engine loop does), nothing computed; the floor of any learned run here."""
    from wsfusion_core.grid import AlignedReader, align
    from wsfusion_core.strips import strips
    from wsfusion_core.windows import plan_windows

    al = align(inputs)
    g = al.grid
    plan = plan_windows(g.height, g.width, tile, 64)
    with gdal_settings(al, al.count, gdal_env):
        readers = [AlignedReader(i, g) for i in al.inputs]
        try:
            t0 = time.perf_counter()
            with strips(readers, plan, g.width) as ahead:
                n = sum(1 for _ in ahead)
            assert n == plan.rows.count
            return time.perf_counter() - t0
        finally:
            for rd in readers:
                rd.close()


def gdal_settings(al, bytes_per_pixel: int, gdal_env: bool):  # noqa: ANN001, ANN201
    """The GDAL settings ``fuse`` runs with (writers.gdal_cache: all cores decode, a cache for
    one strip's block rows), or GDAL's defaults without ``gdal_env``."""
    import contextlib

    from wsfusion_core.writers import gdal_cache

    if not gdal_env:
        return contextlib.nullcontext()
    return gdal_cache(al.grid.width, bytes_per_pixel, al.inputs, True, al.grid)


def count_ops(runner, inputs: list[str], seg: bool, quality: bool,  # noqa: ANN001
              gdal_env: bool) -> tuple[int, int]:
    """torch operations one run dispatches: (computing ones, in-place included: a kernel
    launch each on a GPU; views: dispatcher work only)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    counts = [0, 0]

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            view = any(r.alias_info is not None and not r.alias_info.is_write
                       for r in func._schema.returns)
            counts[view] += 1
            return func(*args, **(kwargs or {}))

    with Count():
        run_once(runner, inputs, seg, quality, gdal_env)
    return counts[0], counts[1]


def run_once(runner, inputs: list[str], seg: bool, quality: bool,  # noqa: ANN001
             gdal_env: bool = True) -> float:
    """One timed run of the engine loop, in ``gdal_settings``."""
    from wsfusion_core.grid import align

    al = align(inputs)
    per_px = al.count + (1 if seg else 0) + (4 * len(inputs) if quality else 0)
    with gdal_settings(al, per_px, gdal_env):
        return _run_once(runner, al, seg, quality)


def _run_once(runner, al, seg: bool, quality: bool) -> float:  # noqa: ANN001
    from wsfusion_core.blend import blend_device, buffer_for
    from wsfusion_core.engines import make_engine
    from wsfusion_core.grid import AlignedReader
    from wsfusion_core.loop import run_plan
    from wsfusion_core.view import view_radiometry
    from wsfusion_core.windows import plan_windows

    g = al.grid
    plan = plan_windows(g.height, g.width, runner.info.tile_size, 64)
    readers = [AlignedReader(i, g) for i in al.inputs]
    bands = (1, 2, 3)
    try:
        scales = view_radiometry(readers, bands).scales()
        engine = make_engine("learned", runner, scales, bands, seg, quality)
        buffer = buffer_for(plan, g.width, al.count, len(al.inputs), "uint8", 0,
                            runner.info.num_classes if seg else 0, quality,
                            device=blend_device("learned", runner))
        rows: list[int] = []
        t0 = time.perf_counter()
        run_plan(plan, readers, engine, buffer, lambda r: rows.append(r.fused.shape[1]))
        if runner.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        assert sum(rows) == g.height
        return seconds
    finally:
        for rd in readers:
            rd.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--device", default="cpu",
                    help="cpu, cuda, or meta: the device path with the device's work free")
    ap.add_argument("--repeat", type=int, default=1, help="interleaved rounds: median and best")
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--tiles", type=int, default=None,
                    help="tiles per network batch (default: the device's; CUDA's is 32)")
    ap.add_argument("--no-ops", action="store_true",
                    help="skip the untimed run that counts torch ops (the same on every device)")
    ap.add_argument("--plain-gdal", action="store_true",
                    help="GDAL's defaults (one decoding thread) instead of fuse's settings")
    args = ap.parse_args()

    from wsfusion_core import runner as rn
    from wsfusion_core.weights import resolve_weights

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        inputs = [str(write_input(Path(tmp) / f"in_{i}.tif", args.size, i)) for i in range(args.k)]
        meta = args.device == "meta"
        base = zero_cost(rn.load_runner(resolve_weights(None), "cpu" if meta else args.device,
                                        args.tiles, lambda _m: None, "bench"))
        paths: dict[str, Any] = {}
        if not meta:
            cpu_policy = dataclasses.replace(base.policy, device_side=False)
            paths["numpy path"] = rn.ModelRunner(base.model, base.info, cpu_policy)
        else:
            base = host_share(base, args.tiles)
        whole = getattr(rn, "ROW_TILES", None)  # None: the code before whole-row steps
        steps = ({"device path, per batch": None, "device path, whole rows": whole} if whole
                 else {"device path": None})
        for name, rows in steps.items():
            extra = {"row_tiles": rows} if whole else {}
            paths[name] = rn.ModelRunner(base.model, base.info, dataclasses.replace(
                base.policy, device_side=True, **extra))
        times: dict[tuple[str, str], list[float]] = {}
        configs = {"learned": (False, False), "learned+seg+quality": (True, True)}
        # the op count's run also warms each path up (lazy initialisation, first allocations)
        ops = {(c, p): (("-", "-") if args.no_ops else
                        count_ops(r, inputs, *configs[c], not args.plain_gdal))
               for c in configs for p, r in paths.items()}
        if args.no_ops:
            for r in paths.values():
                run_once(r, inputs, True, True, not args.plain_gdal)
        for _ in range(args.repeat):
            times.setdefault(("-", "reading alone"), []).append(
                read_once(inputs, base.info.tile_size, not args.plain_gdal))
            for cname, (seg, q) in configs.items():
                for pname, runner in paths.items():
                    times.setdefault((cname, pname), []).append(
                        run_once(runner, inputs, seg, q, not args.plain_gdal))
        ops["-", "reading alone"] = ("-", "-")
    mpx = args.size ** 2 / 1e6
    where = ("meta (device work free: the host's share of a GPU run)" if args.device == "meta"
             else args.device)
    print(f"# zero-cost networks (zeros of the output shape), synthetic RGB uint8 {args.size}², "
          f"K={args.k}, device {where}, {base.batch_size} tiles per batch, "
          f"{args.repeat} round(s); no output written; GDAL "
          f"{'defaults' if args.plain_gdal else 'settings as in fuse (gdal_cache)'}")
    read = min(times["-", "reading alone"])
    print("| config | path | median s | best s | Mpx/s (best) | reading / this | kernel ops | "
          "views |")
    print("|---|---|---|---|---|---|---|---|")
    for (cname, pname), ts in times.items():
        print(f"| {cname} | {pname} | {statistics.median(ts):.2f} | {min(ts):.2f} | "
              f"{mpx / min(ts):.2f} | {read / min(ts):.2f} | {ops[cname, pname][0]} | "
              f"{ops[cname, pname][1]} |")


if __name__ == "__main__":
    main()
