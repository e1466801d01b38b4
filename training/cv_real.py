"""Region-held-out cross-validation of real-pair runs, and the model built from them.

Each fold run (``wsfusion-train real-pairs --holdout ...``) validated its saved steps on the
places it never saw (``OUT/steps/step_NNNNN.val.json``). Together the folds cover every scored
pair once, each scored by a model that did not train on it. One step is chosen for all folds
(the best mean cross-validated gap: the recipe's length, not a per-fold pick), and the shipped
model is the element-wise mean of the folds' weights at that step (a "soup" of models that
start from the same weights and together saw every pair). The cross-validated numbers estimate
it; it is never scored on a pair as if unseen.

    python -m training.cv_real --runs runs/rgb_A runs/rgb_B --soup out.safetensors \\
        --json docs/results/cv_rgb.json --markdown docs/results/cv_rgb.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

TIE = 0.01


def fold_scores(runs: Sequence[Path]) -> dict[int, dict[str, dict[str, float]]]:
    """step → pair → its held-out scores, over every run's saved steps (steps every run has)."""
    per_run = []
    for run in runs:
        steps = {}
        for f in sorted((run / "steps").glob("step_*.val.json")):
            steps[int(f.stem.split("_")[1].split(".")[0])] = json.loads(f.read_text())
        per_run.append(steps)
    common = set.intersection(*(set(s) for s in per_run)) if per_run else set()
    out: dict[int, dict[str, dict[str, float]]] = {}
    for step in sorted(common):
        merged: dict[str, dict[str, float]] = {}
        for steps in per_run:
            merged.update(steps[step].get("per_pair", {}))
        out[step] = merged
    return out


def summary(pairs: dict[str, dict[str, float]]) -> dict[str, Any]:
    r = np.array([[v["gap"], v["gap_minblue"], v["w_cloud"], v["w_shadow"]]
                  for v in pairs.values()], dtype=float)
    level = int((r[:, 0] >= r[:, 1] - TIE).sum())
    ahead = int((r[:, 0] > r[:, 1]).sum())
    return {"pairs": len(r), "gap": float(r[:, 0].mean()), "gap_minblue": float(r[:, 1].mean()),
            "level_or_ahead": level, "strictly_ahead": ahead,
            "w_cloud": float(np.nanmean(r[:, 2])), "w_shadow": float(np.nanmean(r[:, 3]))}


def choose_step(scores: dict[int, dict[str, dict[str, float]]]) -> int:
    """The step with the best mean cross-validated gap (ties: the later step)."""
    return max(scores, key=lambda s: (round(summary(scores[s])["gap"], 4), s))


def markdown(scores: dict[int, dict[str, dict[str, float]]], step: int, label: str) -> str:
    pairs = scores[step]
    lines = [f"Region-held-out cross-validation, {label}, step {step} (each pair scored by the "
             "fold model that never saw its place). gap: share of the mean→clear L1 gap on the "
             "clouded pixels (s2cloudless + NIR shadow rule); the mean and the median of K = 2 "
             "capture 0 by definition, the oracle (the clear image) 1.", "",
             "| pair | ours | min-blue | ours − min-blue | weight on clear: cloud | shadow |",
             "|---|---|---|---|---|---|"]
    for name, v in sorted(pairs.items()):
        ws = "–" if not np.isfinite(v["w_shadow"]) else f"{v['w_shadow']:.2f}"
        lines.append(f"| {name} | {v['gap']:.3f} | {v['gap_minblue']:.3f} | "
                     f"{v['gap'] - v['gap_minblue']:+.3f} | {v['w_cloud']:.2f} | {ws} |")
    s = summary(pairs)
    lines += ["", f"**{s['pairs']} pairs: gap {s['gap']:.3f} (min-blue {s['gap_minblue']:.3f}); "
              f"level or ahead of min-blue (within {TIE}) in {s['level_or_ahead']}/{s['pairs']}, "
              f"strictly ahead in {s['strictly_ahead']}; weight on the clear input "
              f"{s['w_cloud']:.2f} under cloud, {s['w_shadow']:.2f} under shadow.**", "",
              "By step (mean over all held-out pairs):", "",
              "| step | gap | level or ahead | weight cloud | weight shadow |",
              "|---|---|---|---|---|"]
    for st in sorted(scores):
        t = summary(scores[st])
        lines.append(f"| {st} | {t['gap']:.3f} | {t['level_or_ahead']}/{t['pairs']} | "
                     f"{t['w_cloud']:.2f} | {t['w_shadow']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", nargs="+", type=Path, required=True,
                   help="fold run folders (each held out other places)")
    p.add_argument("--label", default="", help="model label for the tables")
    p.add_argument("--step", type=int, default=0, help="use this step (default: the best)")
    p.add_argument("--soup", type=Path, help="write the mean of the folds' weights here")
    p.add_argument("--json", type=Path, help="write the scores here")
    p.add_argument("--markdown", type=Path, help="write the table here")
    a = p.parse_args(argv)
    scores = fold_scores(a.runs)
    if not scores:
        raise SystemExit("no step validated by every run")
    step = a.step or choose_step(scores)
    s = summary(scores[step])
    print(json.dumps({"step": step, **s}))
    if a.json:
        a.json.write_text(json.dumps({"step": step, "summary": s, "per_pair": scores[step],
                                      "by_step": {st: summary(v) for st, v in scores.items()}},
                                     indent=1) + "\n")
    if a.markdown:
        a.markdown.write_text(markdown(scores, step, a.label or str(a.runs[0].name)))
    if a.soup:
        files = [r / "steps" / f"step_{step:05d}.safetensors" for r in a.runs]
        from .select_real import soup

        soup(files, a.soup, {"soup_of": [str(f) for f in files], "cv_step": step,
                             "cross_validation": s,
                             "summary": f"real-pairs soup of {len(files)} region folds, step "
                                        f"{step}",
                             "data": "every real pair: each fold model held out one group of "
                                     "places, the soup averages them (soup_of)"},
             write_card=True)
        print(f"soup: {a.soup}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
