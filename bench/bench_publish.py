"""What the fault-proof publishing costs: the checks after closing, against the whole run.

For each size, on synthetic RGB uint8 inputs (bench_fuse.write_input), times in one process:
``fuse(method="mean")`` as shipped (structural read-back check: every block present), the same
with ``verify=True`` (every block decoded), and the structural check and ``fsync`` alone on the
published file. Ratios are against the shipped run of the same size, measured in the same run.

    .venv/bin/python bench/bench_publish.py                    # 2048 and 4096 px, 3 inputs
    .venv/bin/python bench/bench_publish.py --sizes 8192 --repeat 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fuse import write_input  # noqa: E402


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2048,4096")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import rasterio

    from wsfusion_core.api import fuse
    from wsfusion_core.output_checks import verify_geotiff
    from wsfusion_core.publish import fsync_file

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for size in (int(s) for s in args.sizes.split(",")):
            ins = [write_input(folder / f"in{size}_{i}.tif", size, i) for i in range(args.k)]
            out = folder / f"out{size}.tif"

            def run(verify: bool, ins=ins, out=out) -> None:
                fuse(ins, out, method="mean", overwrite=True, verify=verify)

            shipped = best(lambda: run(False), args.repeat)
            full = best(lambda: run(True), args.repeat)
            with rasterio.open(out) as src:
                profile = {"width": src.width, "height": src.height, "count": src.count,
                           "dtype": src.dtypes[0]}
            check = best(lambda out=out, p=profile: verify_geotiff(out, p), args.repeat)
            sync = best(lambda out=out: fsync_file(out), args.repeat)
            rows.append((size, shipped, full, check, sync))
    print(f"mean fusion of {args.k} synthetic RGB uint8 inputs (best of {args.repeat})")
    print(f"{'size':>6} {'fuse s':>8} {'--verify s':>11} {'ratio':>6} {'block check s':>14} "
          f"{'share':>6} {'fsync s':>8}")
    for size, shipped, full, check, sync in rows:
        print(f"{size:>6} {shipped:8.2f} {full:11.2f} {full / shipped:6.2f} {check:14.4f} "
              f"{check / shipped:6.1%} {sync:8.4f}")


if __name__ == "__main__":
    main()
