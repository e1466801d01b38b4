"""Synthetic evaluation of one or more weight files on the held-out Dubai test tile with the
held-out test clouds: the paper's scenarios (S1, S2) and realistic-artifact ones (R3, R6: K
dates spoiled by training/artifacts.spoil_input; O3: K=3 with one wholly overcast date).

Every number here is SYNTHETIC (synthetic artifacts on real imagery); whether the fusion works
on real clouds is decided by the real-cloud validation in wsfusion-evaluate.

    python -m training.synthetic_eval --weights A.safetensors B.safetensors --crops 12 --draws 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from wsfusion_core.composite import composite

from .artifacts import ArtifactMix
from .metrics import ConfusionMatrix
from .splits import SCENARIOS, TEST_CLOUDS, TEST_TILES

# name → (K, share for the paper's artifacts or None for the realistic mix, overcast first)
EVAL_SCENARIOS: dict[str, tuple[int, float | None, bool]] = {
    **{n: (k, s, False) for n, (k, s) in SCENARIOS.items()},
    "R3": (3, None, False), "R6": (6, None, False), "O3": (3, None, True)}


def composites(inputs: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """The product's per-pixel composites over the valid inputs (``wsfusion-raster fuse
    --method mean|median|min-blue``; blue is the third channel). inputs (B, K, 3, H, W), valid
    (B, K, H, W) → {name: (B, 3, H, W)}."""
    return {name: np.stack([composite(x, v, method)[0] for x, v in zip(inputs, valid)])
            for name, method in (("mean", "mean"), ("median", "median"), ("minblue", "min-blue"))}


def evaluate(weights: Sequence[str], data: Path, crops: int, crop: int, draws: int,
             seed: int = 2024, gain: float = 1.0, scenarios: Sequence[str] | None = None
             ) -> dict[str, Any]:
    """``gain`` multiplies every input and the clean image (clipped to 0..1): the same scene
    reaching the nets darker (< 1) or brighter, as a different common scale would make it."""
    import torch

    from wsfusion_core.weights import load_weights

    from .artifacts import CloudBank
    from .datasets import SampleConfig, fixed_crops, load_dubai, make_sample

    items = load_dubai(data / "segmentation" / "dubai", TEST_TILES)
    clouds = CloudBank.from_sources(data / "clouds", TEST_CLOUDS)
    pos = fixed_crops(items, crops, crop)
    models = {w: load_weights(w)[0] for w in weights}
    out: dict[str, Any] = {w: {} for w in weights}
    mix = ArtifactMix()
    with torch.no_grad():
        for w, m in models.items():  # clean upper bound: our segmentation net on clean crops
            cm = ConfusionMatrix()
            for i, y, x in pos:
                img, lab = items[i]
                c = torch.from_numpy(img[y:y + crop, x:x + crop].transpose(2, 0, 1)
                                     .astype(np.float32) / 255)[None]
                cm.update(lab[y:y + crop, x:x + crop], m.segmentation(c).argmax(1)[0].numpy())
            out[w]["clean_miou"] = cm.scores()["miou"]
        for name, (k, share, overcast_first) in EVAL_SCENARIOS.items():
            if scenarios and name not in scenarios:
                continue
            scfg = SampleConfig(crop=crop, augment=False, alternate=True, declared_prob=0.0,
                                artifacts="paper" if share is not None else "real", mix=mix)
            acc: dict[str, dict[str, list]] = {w: {} for w in weights}
            for d in range(draws):
                for j, (i, y, x) in enumerate(pos):
                    rng = np.random.default_rng([seed, d, j, k, 0 if share is None else 1])
                    img, lab = items[i]
                    s = make_sample(img, lab, k, scfg, rng, clouds,
                                    shares=[share or 0.0] * k, at=(y, x))
                    if overcast_first:
                        from .artifacts import overcast

                        o, _ = overcast(s["clean"].transpose(1, 2, 0), rng, clouds)
                        s["inputs"][0] = o.transpose(2, 0, 1)
                        s["affected"][0] = True
                        s["valid"][0] = True
                    inputs, valid = s["inputs"][None], s["valid"][None]
                    clean = s["clean"][None]
                    if gain != 1.0:
                        inputs = np.clip(inputs * gain, 0, 1).astype(np.float32)
                        clean = np.clip(clean * gain, 0, 1).astype(np.float32)
                    err = np.abs(inputs - clean[:, None]).mean(axis=2)
                    err = np.where(valid, err, np.inf)
                    pick = err.argmin(axis=1)[:, None, None]
                    oracle = np.take_along_axis(inputs, np.broadcast_to(
                        pick, (1, 1) + inputs.shape[2:]), axis=1)[:, 0]
                    comp = composites(inputs, valid) | {"oracle": oracle}
                    clear_somewhere = (~s["affected"] & s["valid"]).any(axis=0)
                    for w, m in models.items():
                        fused, wts, seg = m(torch.from_numpy(inputs), torch.from_numpy(valid))
                        a = acc[w]
                        a.setdefault("cm", ConfusionMatrix()).update(
                            s["labels"][None], seg.argmax(1).numpy())
                        for cname, img_ in (comp | {"ours": fused.numpy()}).items():
                            a.setdefault(f"l1_{cname}", []).append(
                                float(np.abs(img_ - clean).mean()))
                        wt = wts[0].numpy()
                        leak = (wt * s["affected"]).sum(axis=0)[clear_somewhere]
                        a.setdefault("leakage", []).append(float(leak.mean()) if leak.size
                                                           else 0.0)
                        if overcast_first:
                            a.setdefault("overcast_weight", []).append(
                                float(wt[0][clear_somewhere].mean()))
            for w in weights:
                a = acc[w]
                r = {"miou": a.pop("cm").scores()["miou"]}
                r |= {key: float(np.mean(v)) for key, v in a.items()}
                lm, lo, lq = r["l1_mean"], r["l1_ours"], r["l1_oracle"]
                r["gap_captured"] = (lm - lo) / (lm - lq) if lm > lq else float("nan")
                r["l1_ratio_to_median"] = lo / r["l1_median"]
                r["miou_ratio_to_clean"] = r["miou"] / out[w]["clean_miou"]
                out[w][name] = r
    return out


def markdown(res: dict[str, Any]) -> str:
    lines = ["| weights | scen. | mIoU/clean | L1 ours | mean | median | min-blue | oracle "
             "| gap captured | ours/median | leakage | overcast w |", "|" + "---|" * 12]
    for w, r in res.items():
        for name in EVAL_SCENARIOS:
            if name not in r:
                continue
            s = r[name]
            ow = f"{s['overcast_weight']:.3f}" if "overcast_weight" in s else "–"
            lines.append(
                f"| {Path(w).parent.name}/{Path(w).name} | {name} | "
                f"{s['miou_ratio_to_clean']:.3f} | {s['l1_ours']:.4f} | {s['l1_mean']:.4f} | "
                f"{s['l1_median']:.4f} | {s['l1_minblue']:.4f} | {s['l1_oracle']:.4f} | "
                f"{s['gap_captured']:.3f} | {s['l1_ratio_to_median']:.3f} | {s['leakage']:.3f} "
                f"| {ow} |")
    return "\n".join(lines) + "\n\nAll numbers synthetic (synthetic artifacts, Dubai test tile " \
        "7, held-out cloud38 textures). Targets: mIoU/clean ≥ 0.97, ours/median ≤ 0.8 (K ≥ 3), " \
        "gap captured ≥ 0.9, overcast weight ≤ 0.02.\n"


def main(argv: Sequence[str] | None = None) -> int:
    from .train import DEFAULT_DATA

    p = argparse.ArgumentParser(prog="python -m training.synthetic_eval",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", nargs="+", required=True)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--crops", type=int, default=12)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--draws", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--gain", type=float, default=1.0,
                   help="scale every input and the clean image (e.g. 0.4: a darker common scale)")
    p.add_argument("--scenarios", nargs="+", choices=list(EVAL_SCENARIOS))
    p.add_argument("--json", help="also write the numbers here")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    res = evaluate(a.weights, Path(a.data), a.crops, a.crop, a.draws, gain=a.gain,
                   scenarios=a.scenarios)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
