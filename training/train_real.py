"""``wsfusion-train real-pairs``: the quality net trained on real clouds (issues 18 and 24).

The paper's recipe learns from segmentation labels alone, on synthetic artifacts; on real
Sentinel-2 scenes it never saw, that model lost to the one-line minimum-blue composite. This
recipe adds what the synthetic data cannot give:

- **real clouds**: the real cloudy/clear Sentinel-2 pairs (training/real_pairs.py), K = 2..6
  inputs per sample; a reconstruction loss pulls the fused image toward the clear one where
  an input is degraded, and a confidence term (``-log`` of the weight on the inputs that are
  not degraded there) asks for weights near 1, not 0.84: a cloud is 3-8x brighter than the
  ground, so even 0.05 of it is a visible veil;
- **a quality net that compares the inputs** (architecture ``rank``: each input with the
  per-pixel min / median / max over the valid inputs and its rank in blue and brightness), so
  "the darkest-blue input here" is one feature away;
- **evidence bands** (``--evidence-bands coastal,cirrus,swir16``): reflectance bands only the
  quality net reads (Sentinel-2 cirrus, SWIR, aerosol), normalised by their statistics over the
  training pairs, recorded in the weights' evidence contract;
- **the synthetic aerial recipe mixed in** (RGB models, ``--aerial-every``): Dubai crops with
  synthetic artifacts, segmentation loss through the (frozen) segmentation net plus the
  auxiliary L1, so aerial imagery does not get worse.

The segmentation net is the initial model's, frozen: the fused image only gets cleaner, and
nothing about segmentation is retrained on 10 m imagery it cannot read.

Models are chosen on held-out places (``--holdout g1``): the validation scores those pairs
with the real-cloud yardstick's definitions (s2cloudless clouds plus the NIR shadow rule), and
a model is never scored on a scene it trained on. ``--resume`` continues from the last
checkpoint (loaded with ``weights_only=True``).

    wsfusion-train real-pairs --out runs/rgb_g1 --holdout g1 --steps 3000
    wsfusion-train real-pairs --out runs/l1c --evidence-bands coastal,cirrus,swir16 --layouts s2-l1c
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .train import CLASS_WEIGHTS, DEFAULT_DATA, _log

WHITE = 0.3  # reflectance shown as white: the ``s2`` scale rule (wsfusion_core.view)
TIE = 0.01


@dataclass
class RealConfig:
    """Every setting of a real-pair run (recorded in the weights' provenance)."""

    data: str = str(DEFAULT_DATA)
    out: str = "runs/real"
    name: str = ""
    init: str = ""  # start from these weights; "" = the shipped default
    architecture: str = "rank"
    evidence_bands: list[str] = field(default_factory=list)  # common names, e.g. cirrus
    layouts: list[str] = field(default_factory=list)  # sensors.LAYOUTS keys the model is for
    holdout: list[str] = field(default_factory=list)  # folds kept out of training (validation)
    steps: int = 3000
    batch_size: int = 4
    crop: int = 128
    k_min: int = 2
    k_max: int = 6
    lr: float = 3e-4
    lr_final: float = 3e-5  # cosine decay to this
    confidence: float = 0.1  # weight of the -log(weight on non-degraded inputs) term
    joint_scale: float = 0.7  # share of samples on the auto rule's jointly estimated scale
    veil_prob: float = 0.0  # synthetic cirrus / haze veils (real_pairs.veil); 0: none
    veil_from: int = 0  # the step from which veils are drawn (a run resumed with them)
    aerial_every: int = 3  # one synthetic aerial batch every N steps (0: none)
    aerial_crop: int = 128
    checkpoint_every: int = 250
    val_every: int = 500
    threads: int = 1
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RealConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# ------------------------------------------------------------------------- views

def image_view(inputs: np.ndarray, valid: np.ndarray, joint: bool) -> np.ndarray:
    """(K, 13, h, w) reflectance → (K, 3, h, w) RGB network view, as inference makes it: the
    ``s2`` rule (reflectance / 0.3), or the ``auto`` rule's scale estimated jointly from the
    inputs (what an undeclared uint16 file gets)."""
    from wsfusion_core.view import estimate_joint, to_unit

    rgb = inputs[:, [3, 2, 1]]
    if joint:
        lo, hi = estimate_joint(list(rgb), list(valid))
    else:
        lo, hi = np.zeros(3), np.full(3, WHITE)
    out = np.stack([to_unit(x, lo, hi) for x in rgb])
    out *= valid[:, None]
    return out


def evidence_view(inputs: np.ndarray, valid: np.ndarray, bands: Sequence[int],
                  mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(K, 13, h, w) reflectance → (K, E, h, w): (reflectance clipped to 0..1 - mean) / std,
    0 where invalid: what inference computes (evidence.radiometry_for, then the network view
    with the model's normalisation)."""
    m = np.asarray(mean, np.float32)[:, None, None]
    s = np.asarray(std, np.float32)[:, None, None]
    ev = (np.clip(inputs[:, list(bands)], 0.0, 1.0) - m) / s
    return (ev * valid[:, None]).astype(np.float32)


# ------------------------------------------------------------------------- validation

def _cloud_masks(pairs: Sequence[Any], cache: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(cloud, shadow) per pair, as the real-cloud yardstick defines them (s2cloudless on all
    13 bands, threshold 0.4, average 4, dilation 2; cloud on the cloudy image and not on the
    clear one; NIR shadow rule), cached: s2cloudless is slow."""
    from .real_pairs import shadow_rule

    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    det = None
    for p in pairs:
        f = cache / (p.name.replace("/", "_") + ".npz")
        if f.exists():
            z = np.load(f)
            out[p.name] = (z["cloud"], z["shadow"])
            continue
        if det is None:
            from s2cloudless import S2PixelCloudDetector

            det = S2PixelCloudDetector(threshold=0.4, average_over=4, dilation_size=2,
                                       all_bands=True)
        m = det.get_cloud_masks(np.stack([p.cloudy, p.clear]).transpose(0, 2, 3, 1)
                                .astype(np.float64)).astype(bool)
        cloud = m[0] & ~m[1]
        shadow = ~m[0] & ~m[1] & shadow_rule(p.cloudy, p.clear)
        np.savez_compressed(f, cloud=cloud, shadow=shadow)
        out[p.name] = (cloud, shadow)
    return out


def _l1(fused: np.ndarray, clear: np.ndarray, scored: np.ndarray) -> float:
    """Mean absolute RGB difference to the clear image over the scored pixels."""
    return float(np.abs(fused - clear).mean(0)[scored].mean())


def validate(model: Any, pairs: Sequence[Any], masks: dict, cfg: RealConfig,
             ev_idx: Sequence[int], ev_mean: Sequence[float], ev_std: Sequence[float]
             ) -> dict[str, Any]:
    """The yardstick's numbers for held-out pairs, in process: gap captured (ours vs
    min-blue), level-or-ahead count, weight on the clear input in cloud and shadow."""
    import torch

    from wsfusion_core.model import quality_weights

    rows = {}
    model.eval()
    with torch.no_grad():
        for p in pairs:
            cloud, shadow = masks[p.name]
            scored = cloud | shadow
            if scored.sum() < 500:
                continue
            ins = np.stack([p.cloudy, p.clear])
            val = np.ones((2,) + ins.shape[2:], bool)
            view = image_view(ins, val, joint=cfg.joint_scale >= 0.5 and not ev_idx)
            ev = evidence_view(ins, val, ev_idx, ev_mean, ev_std) if ev_idx else None
            lg = model.quality_logits(torch.from_numpy(view)[None], torch.from_numpy(val)[None],
                                      None if ev is None else torch.from_numpy(ev)[None])
            w = quality_weights(lg, torch.from_numpy(val)[None])[0].numpy()
            rgb = ins[:, [3, 2, 1]]
            fused = (rgb * w[:, None]).sum(0)
            cr, yr = rgb[1], rgb[0]
            mean_l1 = _l1((cr + yr) / 2, cr, scored)
            mb = _l1(np.where(cr[2] <= yr[2], cr, yr), cr, scored)
            rows[p.name] = {
                "gap": (mean_l1 - _l1(fused, cr, scored)) / mean_l1,
                "gap_minblue": (mean_l1 - mb) / mean_l1,
                "w_cloud": float(w[1][cloud].mean()) if cloud.any() else float("nan"),
                "w_shadow": float(w[1][shadow].mean()) if shadow.sum() >= 50 else float("nan")}
    model.train()
    model.segmentation.eval()
    if not rows:
        return {"pairs": 0}
    r = np.array([[v["gap"], v["gap_minblue"], v["w_cloud"], v["w_shadow"]]
                  for v in rows.values()])
    return {"pairs": len(rows), "gap": float(r[:, 0].mean()),
            "gap_minblue": float(r[:, 1].mean()),
            "level": int((r[:, 0] >= r[:, 1] - TIE).sum()),
            "w_cloud": float(np.nanmean(r[:, 2])), "w_shadow": float(np.nanmean(r[:, 3])),
            "per_pair": rows}


# ------------------------------------------------------------------------- training

def _lr(cfg: RealConfig, step: int) -> float:
    t = min(step / max(cfg.steps, 1), 1.0)
    return float(cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + np.cos(np.pi * t)))


def real_batch(samples: Sequence[dict[str, np.ndarray]], joint: Sequence[bool],
               ev_idx: Sequence[int], ev_mean: Sequence[float], ev_std: Sequence[float]
               ) -> dict[str, Any]:
    """Real-pair samples as the network sees them: image views (and the clear target's view
    on the same scale), validity, evidence, the loss pixels and the non-degraded inputs."""
    import torch

    from wsfusion_core.view import estimate_joint, to_unit

    views, targets = [], []
    for s, j in zip(samples, joint):
        views.append(image_view(s["inputs"], s["valid"], j))
        if j:
            lo, hi = estimate_joint(list(s["inputs"][:, [3, 2, 1]]), list(s["valid"]))
        else:
            lo, hi = np.zeros(3), np.full(3, WHITE)
        targets.append(to_unit(s["target"][[3, 2, 1]], lo, hi))
    return {
        "x": torch.from_numpy(np.stack(views)),
        "valid": torch.from_numpy(np.stack([s["valid"] for s in samples])),
        "evidence": (torch.from_numpy(np.stack([evidence_view(s["inputs"], s["valid"], ev_idx,
                                                              ev_mean, ev_std)
                                                for s in samples])) if ev_idx else None),
        "target": torch.from_numpy(np.stack(targets)),
        "loss": torch.from_numpy(np.stack([s["loss"] for s in samples])).float(),
        "good": torch.from_numpy(np.stack([~s["degraded"] & s["valid"] for s in samples])),
    }


def real_pair_loss(model: Any, batch: dict[str, Any], confidence: float) -> tuple[Any, Any]:
    """The real-cloud loss: L1 between the fused view and the clear one over the pixels where
    some input is degraded, plus ``confidence`` x -log(total weight on the inputs that are not
    degraded there). Returns (loss, weights)."""
    import torch

    from wsfusion_core.model import quality_weights, weighted_sum

    w = quality_weights(model.quality_logits(batch["x"], batch["valid"], batch["evidence"]),
                        batch["valid"])
    fused = weighted_sum(batch["x"], w)
    m = batch["loss"]
    n = m.sum().clamp_min(1.0)
    err = (fused - batch["target"]).abs().mean(dim=1)
    w_good = (w * batch["good"]).sum(dim=1).clamp_min(1e-6)
    loss = (err * m).sum() / n + confidence * (-torch.log(w_good) * m).sum() / n
    return loss, w


def model_info(cfg: RealConfig, init_info: Any, ev_mean: Sequence[float],
               ev_std: Sequence[float], history: list[dict], step: int) -> Any:
    """The weights' metadata: the initial model's classes and segmentation, this recipe's
    quality net and evidence contract, the data and the measured numbers."""
    from dataclasses import replace

    evidence: dict[str, Any] = {}
    norm = dict(init_info.normalisation)
    if cfg.evidence_bands:
        evidence = {"bands": list(cfg.evidence_bands), "layouts": list(cfg.layouts),
                    "image_scale": "reflectance",
                    "reflectance_rule": "the layout's stored value -> reflectance (Sentinel-2: "
                                        "value x 1e-4 plus a declared offset), clipped to 0..1"}
        # The evidence bands' normalisation follows the image channels' (weights_schema).
        norm = {"mean": list(norm["mean"]) + list(ev_mean),
                "std": list(norm["std"]) + list(ev_std)}
    prov = {
        "method": "wsfusion quality net trained on real cloudy/clear Sentinel-2 pairs (issue "
                  "18/24 recipe) with the synthetic aerial recipe mixed in; segmentation net "
                  "from the initial model, frozen",
        "summary": f"real-pairs {cfg.architecture}"
                   + (f" + {','.join(cfg.evidence_bands)}" if cfg.evidence_bands else " RGB")
                   + (f", held out {','.join(cfg.holdout)}" if cfg.holdout else ", all folds"),
        "data": "SEN12MS-CR Sentinel-2 L1C pairs (Ebel et al., CC BY 4.0; contains modified "
                "Copernicus Sentinel data): ../shared/data/real_clouds/sen12mscr_pairs and "
                "sen12mscr_train" + (f" except folds {cfg.holdout}" if cfg.holdout else "")
                + ("; Dubai aerial (CC0) tiles 1-5 with synthetic artifacts"
                   if cfg.aerial_every and not cfg.evidence_bands else ""),
        "init": cfg.init or "the shipped default",
        "recipe": asdict(cfg),
        "steps": step,
        "validation_history": history,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return replace(init_info, architecture=cfg.architecture, evidence=evidence,
                   normalisation=norm,
                   name=cfg.name or ("wsfusion-" + ("-".join(cfg.layouts) or "rgb")),
                   provenance=prov, metrics={})


def train(cfg: RealConfig, resume: bool = False) -> Path:
    """Run the recipe; returns the path of the final weights (OUT/last.safetensors)."""
    import torch

    from wsfusion_core.model import FusionModel
    from wsfusion_core.sensors import LAYOUTS
    from wsfusion_core.weights import load_weights, resolve_weights, save_weights

    from .losses import partial_label_loss, reconstruction_loss
    from .real_pairs import evidence_stats, load_pairs, make_real_sample
    from .train import adapt_state

    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(cfg.data)
    s2 = LAYOUTS["s2-l1c"]
    ev_idx = [s2.bands.index(b) for b in cfg.evidence_bands]  # 0-based in the 13-band stack
    train_pairs = load_pairs(data, exclude=cfg.holdout)
    val_pairs = load_pairs(data, folds=cfg.holdout) if cfg.holdout else []
    if not train_pairs:
        raise SystemExit(f"no real pairs under {data / 'real_clouds'}")
    ev_mean, ev_std = evidence_stats(train_pairs, ev_idx)
    masks = _cloud_masks(val_pairs, out / "masks") if val_pairs else {}

    init_model, init_info = load_weights(resolve_weights(cfg.init or None))
    model = FusionModel(num_classes=init_info.num_classes, in_channels=init_info.in_channels,
                        widths=init_info.widths, architecture=cfg.architecture,
                        evidence_channels=len(ev_idx))
    model.load_state_dict(adapt_state(init_model.state_dict(), model.state_dict()))
    model.segmentation.requires_grad_(False)
    model.train()
    model.segmentation.eval()  # frozen: BatchNorm statistics too
    assert model.quality is not None
    opt = torch.optim.Adam(model.quality.parameters(), lr=cfg.lr)
    step, history = 0, []
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, history = int(state["step"]), json.loads(state["history"])
        print(f"resumed at step {step}", flush=True)

    aerial = None
    if cfg.aerial_every and not ev_idx:
        from .artifacts import CloudBank
        from .datasets import SampleConfig, load_dubai, make_sample
        from .splits import TRAIN_CLOUDS, TRAIN_TILES

        items = load_dubai(data / "segmentation" / "dubai", TRAIN_TILES)
        clouds = CloudBank.from_sources(data / "clouds", TRAIN_CLOUDS)
        scfg = SampleConfig(crop=cfg.aerial_crop, artifacts="mixed", joint_gain=(0.4, 2.0),
                            k_choices=(2, 3, 4, 5, 6), k_probs=None)
        aerial = (items, clouds, scfg, make_sample)
    weight = torch.tensor(CLASS_WEIGHTS)
    log_path = out / "log.jsonl"
    t0, losses = time.time(), []

    def save(path: Path) -> Path:
        return save_weights(path, model, model_info(cfg, init_info, ev_mean, ev_std, history,
                                                    step))

    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, step])
        for g in opt.param_groups:
            g["lr"] = _lr(cfg, step)
        k = int(rng.integers(cfg.k_min, cfg.k_max + 1))
        if aerial is not None and step % cfg.aerial_every == cfg.aerial_every - 1:
            items, clouds, scfg, make = aerial
            ss = [make(*items[int(rng.integers(len(items)))], k, scfg, rng, clouds)
                  for _ in range(cfg.batch_size)]
            x = torch.from_numpy(np.stack([s["inputs"] for s in ss]))
            v = torch.from_numpy(np.stack([s["valid"] for s in ss]))
            fused, _, seg = model(x, v)
            loss = partial_label_loss(seg, torch.from_numpy(np.stack([s["labels"] for s in ss])),
                                      weight) + reconstruction_loss(
                fused, torch.from_numpy(np.stack([s["clean"] for s in ss])), v)
        else:
            idx = rng.integers(len(train_pairs), size=cfg.batch_size)
            vp = cfg.veil_prob if step >= cfg.veil_from else 0.0
            ss = [make_real_sample(train_pairs, int(i), k, cfg.crop, rng, vp) for i in idx]
            joint = [bool(rng.random() < cfg.joint_scale) and not ev_idx for _ in ss]
            batch = real_batch(ss, joint, ev_idx, ev_mean, ev_std)
            loss, _ = real_pair_loss(model, batch, cfg.confidence)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % 50 == 0:
            _log(log_path, {"step": step, "loss": float(np.mean(losses[-50:])),
                            "lr": _lr(cfg, step), "s": round(time.time() - t0, 1)})
        if val_pairs and (step % cfg.val_every == 0 or step == cfg.steps):
            r = validate(model, val_pairs, masks, cfg, ev_idx, ev_mean, ev_std)
            rec = {"step": step, **{k2: v2 for k2, v2 in r.items() if k2 != "per_pair"}}
            history.append(rec)
            _log(log_path, {"val": rec})
            (out / "steps").mkdir(exist_ok=True)
            save(out / "steps" / f"step_{step:05d}.safetensors")
            (out / "steps" / f"step_{step:05d}.val.json").write_text(json.dumps(r, indent=1))
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "history": json.dumps(history)}, tmp)
            tmp.replace(ckpt)
    return save(out / "last.safetensors")


def parser() -> argparse.ArgumentParser:
    d = RealConfig()
    p = argparse.ArgumentParser(
        prog="wsfusion-train real-pairs",
        description="Train the quality net on real cloudy/clear Sentinel-2 pairs (and, for RGB "
                    "models, the synthetic aerial recipe), optionally with evidence bands; "
                    "choose by held-out places.")
    p.add_argument("--data", default=d.data, help=f"the shared data folder (default {d.data})")
    p.add_argument("--out", default=d.out, help="run folder: log.jsonl, checkpoint.pt, "
                   f"steps/, last.safetensors (default {d.out})")
    p.add_argument("--name", default="", help="model name in the metadata")
    p.add_argument("--init", default="", help="initial weights (default: the shipped model); "
                   "its segmentation net is kept, frozen")
    p.add_argument("--architecture", default=d.architecture, choices=("paper", "set", "rank"),
                   help=f"quality net (default {d.architecture}: compares the inputs)")
    p.add_argument("--evidence-bands", default="",
                   help="comma-separated common names the quality net also reads, e.g. "
                        "coastal,cirrus,swir16 (default none: an RGB model)")
    p.add_argument("--layouts", default="", help="sensor layouts the model is for, e.g. "
                   "s2-l1c or s2-l2a (recorded in the evidence contract)")
    p.add_argument("--holdout", default="", help="comma-separated folds kept out of training "
                   "and validated on: roi136, roi85, g1..g4 (default none)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps "
                   f"(default {d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"samples per step (default {d.batch_size})")
    p.add_argument("--crop", type=int, default=d.crop, help=f"crop side in px (default {d.crop})")
    p.add_argument("--k-max", type=int, default=d.k_max, help=f"most inputs per sample "
                   f"(2..K; default {d.k_max})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate, cosine decay "
                   f"(default {d.lr:g})")
    p.add_argument("--confidence", type=float, default=d.confidence,
                   help=f"weight of the confidence term (default {d.confidence:g})")
    p.add_argument("--aerial-every", type=int, default=d.aerial_every,
                   help="one synthetic aerial batch every N steps for RGB models (0: none; "
                        f"default {d.aerial_every})")
    p.add_argument("--veil", type=float, default=d.veil_prob,
                   help="probability of synthetic cirrus / haze veils per sample (default "
                        f"{d.veil_prob:g}: none)")
    p.add_argument("--veil-from", type=int, default=d.veil_from,
                   help="first step that draws veils (default 0; a resumed run may add them "
                        "from its current step)")
    p.add_argument("--val-every", type=int, default=d.val_every,
                   help=f"validate and save weights every N steps (default {d.val_every})")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help=f"checkpoint every N steps for --resume (default {d.checkpoint_every})")
    p.add_argument("--threads", type=int, default=d.threads,
                   help=f"torch CPU threads (default {d.threads})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = parser().parse_args(argv)
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    cfg = RealConfig(data=a.data, out=a.out, name=a.name, init=a.init,
                     architecture=a.architecture, evidence_bands=split(a.evidence_bands),
                     layouts=split(a.layouts), holdout=split(a.holdout), steps=a.steps,
                     batch_size=a.batch_size, crop=a.crop, k_max=a.k_max, lr=a.lr,
                     confidence=a.confidence, aerial_every=a.aerial_every,
                     veil_prob=a.veil, veil_from=a.veil_from,
                     val_every=a.val_every, checkpoint_every=a.checkpoint_every,
                     threads=a.threads, seed=a.seed)
    path = train(cfg, resume=a.resume)
    print(f"weights: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
