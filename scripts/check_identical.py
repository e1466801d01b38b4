"""Check that a refactor changed no output: run the same fuse cases with an older commit and with
the working tree, and compare every output band with ``numpy.array_equal`` (metadata tags too).

    python scripts/check_identical.py --baseline ccbf702 [--keep DIR] [--weights W.safetensors]
        [--ignore-tags TAG ...]

``--weights`` runs both trees on the same weights file (e.g. the old default after a new model
ships: old weights must still give the same outputs); ``--ignore-tags`` leaves out metadata
tags a change adds on purpose (say so where it is used).

The baseline is exported with ``git archive`` into a temp folder (the working tree is never
touched). Inputs are the shipped sample, plus a uint16 copy of it written here.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "wsfusion_core" / "data" / "sample" / "banepa"

# name → (inputs key, extra CLI arguments, outputs besides the fused one)
CASES = {
    "learned": ("u8", ["--segmentation", "{d}/seg.tif", "--quality", "{d}/q.tif"],
                ["seg.tif", "q.tif"]),
    "mean": ("u8", ["--method", "mean"], []),
    "median": ("u8", ["--method", "median"], []),
    "mean_seg": ("u8", ["--method", "mean", "--segmentation", "{d}/seg.tif",
                        "--quality", "{d}/q.tif"], ["seg.tif", "q.tif"]),
    "learned_u16": ("u16", ["--segmentation", "{d}/seg.tif", "--quality", "{d}/q.tif"],
                    ["seg.tif", "q.tif"]),
    "median_u16": ("u16", ["--method", "median"], []),
}


def make_uint16(folder: Path) -> list[Path]:
    """The sample scaled to 16 bits (x * 257), nodata 0 kept."""
    out = []
    for src_path in sorted(SAMPLE.glob("input_*.tif")):
        with rasterio.open(src_path) as src:
            profile = src.profile | {"dtype": "uint16"}
            data = src.read().astype(np.uint16) * 257
        dst_path = folder / src_path.name
        with rasterio.open(dst_path, "w", **profile) as dst:
            dst.write(data)
        out.append(dst_path)
    return out


def produce(code_root: Path, inputs: dict[str, list[Path]], out: Path,
            weights: Path | None = None) -> None:
    env = {"PYTHONPATH": str(code_root), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"}
    for name, (key, extra, _) in CASES.items():
        d = out / name
        d.mkdir(parents=True)
        args = [a.format(d=d) for a in extra] + (["--weights", str(weights)] if weights else [])
        cmd = [sys.executable, "-m", "wsfusion_core.cli", "fuse", *map(str, inputs[key]),
               "-o", str(d / "fused.tif"), "--device", "cpu", "-q", *args]
        subprocess.run(cmd, check=True, cwd=code_root, env=env, stdout=subprocess.DEVNULL)


IGNORED_TAGS: set[str] = set()


def compare(a: Path, b: Path) -> list[str]:
    problems = []
    for name, (_, _, extra_outputs) in CASES.items():
        for f in ["fused.tif", *extra_outputs]:
            with rasterio.open(a / name / f) as x, rasterio.open(b / name / f) as y:
                same = (_profile(x) == _profile(y)
                        and np.array_equal(x.read(), y.read(), equal_nan=x.dtypes[0][0] == "f")
                        and x.descriptions == y.descriptions
                        and _tags(x) == _tags(y))
            print(f"{name:12s} {f:10s} {'identical' if same else 'DIFFERENT'}")
            if not same:
                problems.append(f"{name}/{f}")
    return problems


def _profile(ds) -> dict:
    """The profile with nodata as text (NaN != NaN would make equal float profiles differ)."""
    return {**ds.profile, "nodata": repr(ds.nodata)}


def _tags(ds) -> list[dict]:
    return [{k: v for k, v in t.items() if k not in IGNORED_TAGS}
            for t in [ds.tags()] + [ds.tags(i) for i in ds.indexes]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="git revision to compare against")
    ap.add_argument("--keep", type=Path, help="keep the outputs in this (new) folder")
    ap.add_argument("--weights", type=Path, help="the same weights file for both trees")
    ap.add_argument("--ignore-tags", nargs="*", default=[], help="metadata tags not compared")
    args = ap.parse_args()
    IGNORED_TAGS.update(args.ignore_tags)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = args.keep or Path(tmp_name)
        base_code = tmp / "baseline_code"
        base_code.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", args.baseline], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base_code)], input=archive, check=True)
        u16 = tmp / "u16"
        u16.mkdir()
        inputs = {"u8": sorted(SAMPLE.glob("input_*.tif")), "u16": make_uint16(u16)}
        w = args.weights.resolve() if args.weights else None
        produce(base_code, inputs, tmp / "before", w)
        produce(ROOT, inputs, tmp / "after", w)
        problems = compare(tmp / "before", tmp / "after")
    print("all outputs bit-identical" if not problems else f"DIFFERENT: {', '.join(problems)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
