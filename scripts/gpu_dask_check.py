"""The Dask path on a GPU (issue 10): the same learned fusion + segmentation run locally on
CUDA and on a dask LocalCluster whose one worker process holds the GPU (one worker per GPU),
outputs compared and both timed. Run on a machine with CUDA and wsfusion[distributed]:

    python scripts/gpu_dask_check.py --size 2048 --k 3 --out /tmp/gdc
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def make_inputs(folder: Path, size: int, k: int, seed: int = 5) -> list[Path]:
    """K uint8 RGB GeoTIFFs: one smooth scene, each copy under its own bright blobs (clouds)."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    small = rng.random((3, size // 64 + 2, size // 64 + 2))
    ground = np.kron(small, np.ones((64, 64)))[:, :size, :size] * 160 + 30
    paths = []
    for i in range(k):
        yy, xx = np.mgrid[0:size, 0:size]
        cloud = np.zeros((size, size))
        for _ in range(6):
            cy, cx, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(size // 16,
                                                                              size // 5))]
            cloud = np.maximum(cloud, np.clip(1 - np.hypot(yy - cy, xx - cx) / r, 0, 1) * 1.5)
        a = np.clip(cloud, 0, 1)[None]
        img = (ground * (1 - a) + 245 * a + rng.normal(0, 3, ground.shape)).clip(0, 255)
        p = folder / f"in{i}.tif"
        with rasterio.open(p, "w", driver="GTiff", width=size, height=size, count=3,
                           dtype="uint8", crs="EPSG:32633",
                           transform=from_origin(500000, 4000000, 0.5, 0.5), tiled=True,
                           compress="deflate") as dst:
            dst.write(img.astype(np.uint8))
        paths.append(p)
    return paths


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--chunk", type=int, default=1024)
    p.add_argument("--out", default="/tmp/gpu_dask_check")
    p.add_argument("--device", default="cuda", help="cpu: check the script itself")
    a = p.parse_args()
    import rasterio

    from wsfusion_core import fuse

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    inputs = make_inputs(out, a.size, a.k)
    times, results = {}, {}
    for name, kw in ((f"local {a.device}", {}),
                     (f"dask, 1 {a.device} worker", {"cluster": 1, "chunk": a.chunk})):
        tag = "local" if not kw else "dask"
        fused, seg = out / f"fused_{tag}.tif", out / f"seg_{tag}.tif"
        t0 = time.perf_counter()
        fuse(inputs, fused, segmentation=seg, device=a.device, overwrite=True, **kw)
        times[name] = time.perf_counter() - t0
        with rasterio.open(fused) as f, rasterio.open(seg) as s:
            results[name] = (f.read().astype(int), s.read(1))
    (fl, sl), (fd, sd) = results.values()
    diff = int(np.abs(fl - fd).max())
    same = float((sl == sd).mean())
    mpx = a.size * a.size / 1e6
    print(f"| run ({a.size}², K={a.k}, learned + segmentation) | seconds | Mpx/s |")
    print("|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {t:.1f} | {mpx / t:.2f} |")
    print(f"\nfused: max difference {diff} grey levels; classes identical: {100 * same:.4f} %")
    ok = diff <= 1 and same >= 0.9999
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
