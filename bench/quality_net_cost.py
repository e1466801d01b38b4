"""CPU cost of the set-aware quality net against the paper's, per 300 px tile, K inputs:
the whole model (quality nets on K inputs, fusion, segmentation), one thread, interleaved
repeats, best of N (the least disturbed by other load). Prints a table with the ratio.

    python bench/quality_net_cost.py --repeats 4
"""

from __future__ import annotations

import argparse
import time

import torch

from wsfusion_core.model import FusionModel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--tile", type=int, default=300)
    p.add_argument("--k", type=int, nargs="+", default=[2, 4, 6])
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    models = {arch: FusionModel(architecture=arch).eval() for arch in ("paper", "set")}
    print("| K | paper (s) | set (s) | set / paper |\n|---|---|---|---|")
    for k in a.k:
        x = torch.rand(1, k, 3, a.tile, a.tile)
        v = torch.ones(1, k, a.tile, a.tile, dtype=torch.bool)
        best = {arch: float("inf") for arch in models}
        with torch.no_grad():
            for _ in range(a.repeats):
                for arch, m in models.items():
                    t = time.perf_counter()
                    m(x, v)
                    best[arch] = min(best[arch], time.perf_counter() - t)
        print(f"| {k} | {best['paper']:.3f} | {best['set']:.3f} | "
              f"{best['set'] / best['paper']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
