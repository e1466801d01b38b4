"""CPU cost of the quality-net variants against the paper's, per 300 px tile, K inputs: the
whole model (quality nets on K inputs, fusion, segmentation), one thread, interleaved repeats,
best of N (the least disturbed by other load). Variants: ``paper``, ``set``, ``rank`` (the
cross-input net, issue 18) and ``rank+evidence`` (three evidence bands, issue 24). Prints a
table with each variant's time and its ratio to the paper net's (and rank+evidence to rank).

    python bench/quality_net_cost.py --repeats 4
"""

from __future__ import annotations

import argparse
import time

import torch

from wsfusion_core.model import FusionModel

VARIANTS = {"paper": ("paper", 0), "set": ("set", 0), "rank": ("rank", 0),
            "rank+evidence": ("rank", 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--tile", type=int, default=300)
    p.add_argument("--k", type=int, nargs="+", default=[2, 4, 6])
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    models = {name: FusionModel(architecture=arch, evidence_channels=e).eval()
              for name, (arch, e) in VARIANTS.items()}
    names = list(models)
    print("| K | " + " | ".join(f"{n} (s)" for n in names)
          + " | " + " | ".join(f"{n} / paper" for n in names[1:])
          + " | rank+evidence / rank |")
    print("|---" * (2 * len(names) + 1) + "|")
    for k in a.k:
        x = torch.rand(1, k, 3, a.tile, a.tile)
        ev = torch.randn(1, k, 3, a.tile, a.tile)
        v = torch.ones(1, k, a.tile, a.tile, dtype=torch.bool)
        best = {n: float("inf") for n in models}
        with torch.no_grad():
            for _ in range(a.repeats):
                for n, m in models.items():
                    t = time.perf_counter()
                    m(x, v, ev if m.evidence_channels else None)
                    best[n] = min(best[n], time.perf_counter() - t)
        print(f"| {k} | " + " | ".join(f"{best[n]:.3f}" for n in names) + " | "
              + " | ".join(f"{best[n] / best['paper']:.2f}" for n in names[1:])
              + f" | {best['rank+evidence'] / best['rank']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
