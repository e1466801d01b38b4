"""CUDA precision against the CPU path, per network (issue 9): the quality net and the
segmentation net each in fp16 autocast or float32 (TF32 off), on the shipped sample and on a
2048² synthetic stack; prints the largest fused difference in grey levels, the share of equal
classes and the time. The default policy (runner.policy_for) is the row marked "default".

    python scripts/gpu_precision_check.py --out /tmp/gpc
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_dask_check import make_inputs  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="/tmp/gpu_precision_check")
    a = p.parse_args()
    import rasterio

    import wsfusion_core.runner as rn
    from wsfusion_core import fuse

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sample = Path(rn.__file__).parent / "data" / "sample" / "banepa"  # as tests/core/test_runner
    stacks = {"sample": sorted(sample.glob("input_*.tif")),
              "2048² K=3": make_inputs(out, 2048, 3)}
    base = rn.policy_for
    variants = {"fp16 / fp16": (torch.float16, torch.float16),
                "fp16 / float32": (torch.float16, None),
                "float32 / float32 (default)": (None, None)}

    def run(name: str, inputs: list[Path], dev: str, tag: str) -> tuple[np.ndarray, np.ndarray,
                                                                          float]:
        fused, seg = out / f"{tag}.tif", out / f"{tag}_seg.tif"
        t0 = time.perf_counter()
        fuse(inputs, fused, segmentation=seg, device=dev, overwrite=True)
        dt = time.perf_counter() - t0
        with rasterio.open(fused) as f, rasterio.open(seg) as s:
            return f.read().astype(int), s.read(1), dt

    print("| stack | quality / segmentation | max grey diff | classes equal | seconds (CPU ref) |")
    print("|---|---|---|---|---|")
    ok = True
    for sname, inputs in stacks.items():
        rn.policy_for = base
        ref_f, ref_s, t_cpu = run(sname, inputs, "cpu", "cpu")
        for vname, (q, s) in variants.items():
            def patched(device, batch_size=None, bf16=False, compile=False, q=q, s=s):
                pol = base(device, batch_size, bf16, compile)
                if device.startswith("cuda"):
                    pol = dataclasses.replace(pol, amp=q, seg_amp=s)
                return pol
            rn.policy_for = patched
            run(sname, inputs, "cuda", "warm")  # context, kernels
            f, c, t = run(sname, inputs, "cuda", "cuda")
            grey = int(np.abs(f - ref_f).max())
            same = float((c == ref_s).mean())
            if "default" in vname and sname == "sample":
                ok = grey <= 1 and same >= 0.9999
            print(f"| {sname} | {vname} | {grey} | {100 * same:.4f} % | {t:.2f} ({t_cpu:.1f}) |")
    rn.policy_for = base
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
