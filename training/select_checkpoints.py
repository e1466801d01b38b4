"""Run as `python -m training.select_checkpoints` from the repository root.

Pick best.safetensors vs last.safetensors per run on a larger validation set (tile 6,
validation clouds ukis_landsat7, 16 crops x 3 draws): the per-epoch validation (8 crops, 1 draw)
was too noisy to choose between epochs. Never looks at the test tile or test clouds."""
import json

import numpy as np

from training.evaluate import EvalConfig, Evaluator
from wsfusion_core.weights import load_weights

cfg = EvalConfig(data="../shared/data", crops=16, crop=256, draws=3, test_tiles=(6,),
                 clouds=("ukis_landsat7",), seed=777, threads=2)
out = {}
ev = None
for run in ("ours", "baseline", "clean"):
    scores = {}
    for cand in ("best", "last"):
        model, info = load_weights(f"runs/{run}/{cand}.safetensors")
        if ev is None:
            ev = Evaluator(cfg, model)
        ev.ours = model
        if run == "clean":
            ev.clean = None
            scores[cand] = ev.clean_scores()["ours_on_clean"]["miou"]
        else:
            vals = []
            for k, share in ((2, 0.25), (6, 0.5)):
                r = ev.scenario(k, share, cfg.draws, segment_composites=False)
                vals.append(r["ours"]["miou"]["mean"])
            scores[cand] = float(np.mean(vals))
        print(run, cand, info.provenance.get("epochs_completed"), scores[cand], flush=True)
    choice = max(scores, key=scores.get)
    out[run] = {"scores": scores, "choice": f"runs/{run}/{choice}.safetensors"}
json.dump(out, open("runs/selection.json", "w"), indent=1)
print(json.dumps(out, indent=1))
