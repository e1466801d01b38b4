"""What ``vectors=`` adds to a run: peak memory and time of streaming a large class map into the
class-map GeoTIFF alone, and into the GeoTIFF and the GeoPackage (vectors.py).

    python bench/bench_vectors.py [--size 16384] [--repeat 2] [--tmp DIR]
    python bench/bench_vectors.py --real --size 2048 [--repeat 2]   # a real learned run

Each measurement runs in a fresh process (peak RSS = that process's ru_maxrss). The class map
is a synthetic town generated band by band, statelessly (its memory is the same in both runs):
a road grid (8 and 6 px wide) with a diagonal road family (staircase edges), and one building
of 6-20 px per 26 px cell in ~75 % of the cells, some touching their neighbours: ~0.4 million
buildings at 16384². Rows are handed over in strips of 300 rows, as the learned engine does.

The baseline is the harshest one: only the class map's GeoTIFF is written (no network, no
inputs), so the time ratio is vectorising against DEFLATE-compressing the class map. A real
learned run spends ~1 s per Mpx in the networks (docs/benchmark.md); the script prints the
vectors' extra seconds against that too.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
STRIP = 300  # rows per hand-over, as the learned engine's strips
CELL = 26  # px per building cell
LEARNED_S_PER_MPX = 1.0  # learned+seg end to end, docs/benchmark.md (order of magnitude)


def _hash(a: np.ndarray, b: np.ndarray, salt: int) -> np.ndarray:
    h = (a.astype(np.uint64) * np.uint64(73856093)) ^ (b.astype(np.uint64) * np.uint64(19349663))
    h ^= np.uint64(salt * 83492791)
    h = (h ^ (h >> np.uint64(13))) * np.uint64(0x5BD1E995)
    return (h ^ (h >> np.uint64(15))) & np.uint64(0xFFFF)


def town_rows(y0: int, h: int, width: int) -> np.ndarray:
    """Rows ``y0 .. y0+h`` of the synthetic town (uint8 classes: 0 background, 1 road,
    2 building), computed from the coordinates alone, 32 rows at a time (small temporaries:
    the generator should not set the peak)."""
    return np.concatenate([_town(y, min(32, y0 + h - y), width) for y in range(y0, y0 + h, 32)])


def _town(y0: int, h: int, width: int) -> np.ndarray:
    y = np.arange(y0, y0 + h)[:, None]
    x = np.arange(width)[None, :]
    cy, cx = y // CELL, x // CELL
    oy, ox = y % CELL, x % CELL
    present = _hash(cy, cx, 1) % 4 != 0
    bh = 6 + _hash(cy, cx, 2) % 15
    bw = 6 + _hash(cy, cx, 3) % 15
    sy = _hash(cy, cx, 4) % (CELL - bh + 1)
    sx = _hash(cy, cx, 5) % (CELL - bw + 1)
    building = present & (oy >= sy) & (oy < sy + bh) & (ox >= sx) & (ox < sx + bw)
    road = (y % 150 < 8) | (x % 170 < 6) | ((x + y) % 900 < 7)
    out = np.zeros((h, width), np.uint8)
    out[building] = 2
    out[road] = 1
    return out


def child(size: int, folder: Path, vectors: bool) -> None:
    """One measured run: the class map streamed into the writers, then published."""
    from affine import Affine
    from rasterio.crs import CRS

    from wsfusion_core.classes import CLASS_COLOURS, CLASS_NAMES
    from wsfusion_core.grid import Grid
    from wsfusion_core.vectors import RowsTo, VectorWriter
    from wsfusion_core.writers import OutputSet, gdal_cache, open_segmentation

    transform = Affine(0.5, 0, 300000, 0, -0.5, 3100000)
    crs = CRS.from_epsg(32645)
    grid = Grid(crs, transform, size, size)
    t0 = time.perf_counter()
    with gdal_cache(size, 1), OutputSet(overwrite=True) as outs:
        seg = outs.add(open_segmentation(folder / "classes.tif", grid, False))
        vec = outs.add(VectorWriter(folder / "vectors.gpkg", size, size, transform, crs,
                                    CLASS_NAMES, CLASS_COLOURS)) if vectors else None
        sink = RowsTo(seg, vec)
        for y in range(0, size, STRIP):
            sink.append(town_rows(y, min(STRIP, size - y), size)[None])
        outs.commit()
    seconds = time.perf_counter() - t0
    use = resource.getrusage(resource.RUSAGE_SELF)
    peak = use.ru_maxrss / 1024
    cpu = use.ru_utime + use.ru_stime  # less sensitive to a busy machine than the wall time
    features = 0
    if vectors:
        import sqlite3

        db = sqlite3.connect(folder / "vectors.gpkg")
        features = sum(db.execute(f"SELECT COUNT(*) FROM {n}").fetchone()[0]
                       for n in ("building", "road"))
        db.close()
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "peak_mb": peak, "features": features}))


def real_inputs(size: int, folder: Path) -> list[Path]:
    """The shipped Banepa sample's three inputs mirrored out to ``size``² (real imagery, so
    the model maps real buildings and roads), on the first input's grid."""
    import rasterio

    sample = ROOT / "wsfusion_core" / "data" / "sample" / "banepa"
    paths = []
    for i in (1, 2):
        src_path = sample / f"input_{i}.tif"
        with rasterio.open(src_path) as src:
            data, profile = src.read(), src.profile
        reps = (size + data.shape[1] - 1) // data.shape[1]
        up = np.concatenate([data, data[:, ::-1]], axis=1)
        up = np.concatenate([up] * reps, axis=1)[:, :size]
        up = np.concatenate([up, up[:, :, ::-1]], axis=2)
        up = np.concatenate([up] * reps, axis=2)[:, :, :size]
        profile.update(width=size, height=size, tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate")
        out = folder / f"in_{i}.tif"
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(up)
        paths.append(out)
    return paths


def real_child(size: int, folder: Path, vectors: bool) -> None:
    """One learned run with the class map (and the vectors) on the mirrored sample."""
    from wsfusion_core.api import fuse

    inputs = [folder / "in_1.tif", folder / "in_2.tif"]
    t0 = time.perf_counter()
    fuse(inputs, folder / "f.tif", segmentation=folder / "s.tif",
         vectors=folder / "v.gpkg" if vectors else None, device="cpu", overwrite=True)
    seconds = time.perf_counter() - t0
    use = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": seconds, "cpu_s": use.ru_utime + use.ru_stime,
                      "peak_mb": use.ru_maxrss / 1024, "features": 0}))


def measure(size: int, folder: Path, vectors: bool, real: bool = False) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", str(size), "--tmp", str(folder)]
                       + (["--vectors"] if vectors else []) + (["--real"] if real else []),
                       capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--tmp", type=Path, default=None)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--vectors", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--real", action="store_true",
                    help="a real learned run (CPU) with the class map, on the shipped Banepa "
                    "sample mirrored out to --size², instead of the synthetic class map")
    args = ap.parse_args()
    if args.child is not None:
        (real_child if args.real else child)(args.child, args.tmp, args.vectors)
        return 0
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        folder = Path(tmp)
        if args.real:
            real_inputs(args.size, folder)
        runs: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(args.repeat):
            for vectors in (False, True):  # alternated: drifts in machine load hit both
                runs[vectors].append(measure(args.size, folder, vectors, args.real))
    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
    peak = {k: max(r["peak_mb"] for r in v) for k, v in runs.items()}
    mpx = args.size * args.size / 1e6
    print(f"| {args.size}² class map | seconds (best of {args.repeat}) | CPU seconds | "
          "peak RSS MiB | features |")
    print("|---|---|---|---|---|")
    labels = ("learned run with the class map", "+ vectors") if args.real else \
        ("class map GeoTIFF only", "+ vectors")
    for k, label in zip((False, True), labels):
        print(f"| {label} | {best[k]['seconds']:.1f} | {best[k]['cpu_s']:.1f} | {peak[k]:.0f} | "
              f"{best[k]['features'] or '-'} |")
    extra = best[True]["seconds"] - best[False]["seconds"]
    print(f"# peak RSS ratio (vectors / without): {peak[True] / peak[False]:.2f}")
    print(f"# time ratio (vectors / without): "
          f"{best[True]['seconds'] / best[False]['seconds']:.2f}")
    learned = LEARNED_S_PER_MPX * mpx
    if not args.real:
        print(f"# vectors: +{extra:.1f} s = {mpx / max(extra, 1e-9):.1f} Mpx/s; against a "
              f"learned run of ~{learned:.0f} s: +{100 * extra / learned:.0f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
