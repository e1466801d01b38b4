"""The paper's weakly supervised recipe (§3.5, §4.3) in one script, one call.

Quality net on every input → masked softmax → fused image → segmentation net, trained end to
end from segmentation labels only: class-weighted cross-entropy on the logits (α = 0.5
background, 2 road, 1 building), Adam (lr 1e-4, betas 0.9/0.999), lr halved at each quarter of
the run (the paper: every 5 of 20 epochs). Variants: ``--fusion mean`` (the baseline) and
``--clean`` (the upper bound: the segmentation net on clean single images).

    python -m training.train --out runs/ours --epochs 8 --steps-per-epoch 200 --budget-min 50
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .splits import (
    SCENARIOS,
    TEST_CLOUDS,
    TEST_TILES,
    TRAIN_CLOUDS,
    TRAIN_TILES,
    VAL_CLOUDS,
    VAL_TILES,
)

CLASS_WEIGHTS = (0.5, 2.0, 1.0)  # α: background, road, building
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@dataclass
class TrainConfig:
    data: str = str(DEFAULT_DATA)
    out: str = "runs/ours"
    fusion: str = "learned"  # "learned" | "mean" (baseline)
    clean: bool = False  # the clean upper bound: segmentation net on clean images
    architecture: str = "paper"  # quality net: "paper" (each input alone) | "set" (set-aware)
    artifacts: str = "paper"  # "paper" (clouds / missing data) | "real" (like real) | "mixed"
    banepa: bool = False  # add Banepa buildings (partial labels: only buildings labelled)
    aux_weight: float = 0.0  # auxiliary L1(fused, clean); 0 = the paper's pure weak supervision
    name: str = ""
    epochs: int = 20
    steps_per_epoch: int = 0  # 0 → one pass of `samples_per_epoch / batch_size`
    samples_per_epoch: int = 4000
    batch_size: int = 4
    crop: int = 300
    k: list[int] = field(default_factory=lambda: [2, 3, 4, 5, 6])
    k_probs: list[float] | None = None
    share: list[float] = field(default_factory=lambda: [0.1, 0.6])
    cloud_prob: float = 0.5
    declared_prob: float = 0.5
    scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    jitter: float = 0.0
    joint_gain: list[float] = field(default_factory=lambda: [1.0, 1.0])  # see SampleConfig
    haze_strength: list[float] = field(default_factory=lambda: [0.25, 0.6])  # see ArtifactMix
    haze_whole: float = 0.0  # see ArtifactMix
    lr: float = 1e-4
    lr_halvings: int = 3  # halve the lr this many times, evenly (paper: 20 epochs, every 5)
    lr_step_epochs: int = 0  # halve every this many epochs after warm-up; 0 → from lr_halvings
    warmup_epochs: int = 0  # epochs at warmup_lr before the schedule starts at lr
    warmup_lr: float = 1e-4
    train_tiles: list[int] = field(default_factory=lambda: list(TRAIN_TILES))
    val_tiles: list[int] = field(default_factory=lambda: list(VAL_TILES))
    train_clouds: list[str] = field(default_factory=lambda: list(TRAIN_CLOUDS))
    val_clouds: list[str] = field(default_factory=lambda: list(VAL_CLOUDS))
    val_crops: int = 8
    val_crop: int = 256
    device: str = "auto"
    threads: int = 2
    workers: int = 1
    seed: int = 0
    budget_min: float = 0.0  # wall-clock budget; 0 = none. Stops after the current step.
    # Epochs sized by time: the budget is split evenly over the remaining epochs (validation
    # included), so the whole lr schedule runs whatever the machine's speed (GPU runs).
    time_epochs: bool = False
    recipe_note: str = ""
    # The user's own data instead of the Dubai tiles: IMAGE LABELS pairs (label raster or vector
    # layer); the bottom `user_val_fraction` of every image is kept for validation.
    user_data: list[str] = field(default_factory=list)
    class_field: str = "class"
    line_width: float = 6.0
    user_val_fraction: float = 0.2
    init: str = ""  # start from these weights (e.g. the shipped default) to fine-tune
    # Also write every epoch's weights (OUT/epochs/epoch_NN.safetensors), so that a checkpoint
    # can be chosen afterwards on the real-cloud validation (synthetic mIoU does not track it).
    keep_epochs: bool = False
    # Exponential moving average of the weights (training/ema.py): 0 = off; e.g. 0.998 averages
    # about the last 500 steps. When on, validation and every saved weights file use the average.
    ema: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**d)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _log(path: Path, record: dict[str, Any]) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    with open(path, "a") as f:
        f.write(line + "\n")


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """The lr of a (0-based) epoch: optional warm-up, then halvings at even intervals (the paper:
    1e-4 halved every 5 of 20 epochs). A pure function of the epoch, so --resume is exact."""
    if epoch < cfg.warmup_epochs:
        return cfg.warmup_lr
    span = cfg.epochs - cfg.warmup_epochs
    every = cfg.lr_step_epochs or max(1, math.ceil(span / (cfg.lr_halvings + 1)))
    return cfg.lr * 0.5 ** ((epoch - cfg.warmup_epochs) // every)


def user_items(cfg: TrainConfig) -> tuple[list, list]:
    """(train, validation) items from IMAGE LABELS pairs, split by rows so the two never touch."""
    from .datasets import load_labelled_geotiff

    if len(cfg.user_data) % 2:
        raise ValueError("--user-data takes IMAGE LABELS pairs")
    train, val = [], []
    for img_path, lab_path in zip(cfg.user_data[::2], cfg.user_data[1::2]):
        img, lab = load_labelled_geotiff(img_path, lab_path, class_field=cfg.class_field,
                                         line_width=cfg.line_width)
        cut = int(round(lab.shape[0] * (1 - cfg.user_val_fraction)))
        if min(cut, lab.shape[0] - cut) < max(cfg.crop, cfg.val_crop) or lab.shape[1] < max(
                cfg.crop, cfg.val_crop):
            raise ValueError(f"{img_path}: too small for {cfg.crop} px crops with a "
                             f"{cfg.user_val_fraction:.0%} validation strip")
        train.append((img[:cut], lab[:cut]))
        val.append((img[cut:], lab[cut:]))
    return train, val


def validation_scenarios(cfg: TrainConfig) -> list[tuple[str, int, float]]:
    """The paper's S1/S2 (its artifacts) and R3: K=3 dates spoiled by the realistic mix (the
    share argument is unused there), whatever the run trains on, so ablations compare."""
    return [(n, k, share) for n, (k, share) in SCENARIOS.items()] + [("R3", 3, 0.0)]


_VAL_SAMPLES: dict[tuple, dict] = {}


def validate(model: Any, items: list, cfg: TrainConfig, clouds: Any, device: str) -> dict:
    """mIoU on fixed validation crops with validation clouds (never the test tile or clouds)."""
    import torch

    from .datasets import SampleConfig, fixed_crops, make_sample
    from .metrics import ConfusionMatrix

    model.eval()
    out: dict[str, Any] = {}
    crops = fixed_crops(items, cfg.val_crops, cfg.val_crop)
    scenarios = [("clean", 1, 0.0)] if cfg.clean else validation_scenarios(cfg)
    with torch.no_grad():
        for name, k, share in scenarios:
            cm = ConfusionMatrix()
            scfg = SampleConfig(crop=cfg.val_crop, augment=False, alternate=True,
                                declared_prob=0.0,
                                artifacts="real" if name.startswith("R") else "paper")
            l1s = []
            for j, (i, y, x) in enumerate(crops):
                rng = np.random.default_rng([cfg.seed, 99, j])
                img, lab = items[i]
                if cfg.clean:
                    crop = img[y:y + cfg.val_crop, x:x + cfg.val_crop]
                    inputs = torch.from_numpy(crop.transpose(2, 0, 1).astype(np.float32) / 255
                                              )[None, None]
                    labels = lab[y:y + cfg.val_crop, x:x + cfg.val_crop]
                else:
                    key = (id(items), id(clouds), name, j, cfg.val_crop, cfg.seed)
                    if key not in _VAL_SAMPLES:  # the same fixed samples every epoch: make once
                        _VAL_SAMPLES[key] = make_sample(img, lab, k, scfg, rng, clouds,
                                                        shares=[share] * k, at=(y, x))
                    s = _VAL_SAMPLES[key]
                    inputs, labels = torch.from_numpy(s["inputs"])[None], s["labels"]
                    valid = torch.from_numpy(s["valid"])[None].to(device)
                fused, _, seg = model(inputs.to(device), None if cfg.clean else valid)
                cm.update(labels, seg.argmax(1)[0].cpu().numpy())
                if not cfg.clean:
                    l1s.append(float((fused[0].cpu() - torch.from_numpy(s["clean"])).abs().mean()))
            out[name] = cm.scores()["miou"]
            if l1s:
                out[f"{name}_l1"] = float(np.mean(l1s))
    out["miou"] = float(np.mean([out[n] for n, _, _ in scenarios]))
    model.train()
    return out


def train_step(model: Any, opt: Any, batch: dict, weight: Any, clean: bool = False,
               device: str = "cpu", aux_weight: float = 0.0) -> float:
    """One optimiser step on the weighted cross-entropy of the segmentation *logits*
    (``-Σ α_i S_i log p_i``; no softmax before the loss, unlike the authors' code), generalised
    to partial labels (losses.partial_label_loss), plus the optional auxiliary L1 to the clean
    image (``aux_weight`` > 0)."""
    from .losses import partial_label_loss, reconstruction_loss

    if clean:
        inputs, valid = batch["clean"][:, None].to(device), None
    else:
        inputs, valid = batch["inputs"].to(device), batch["valid"].to(device)
    fused, _, seg = model(inputs, valid)
    loss = partial_label_loss(seg, batch["labels"].to(device), weight)
    if aux_weight > 0 and not clean:
        loss = loss + aux_weight * reconstruction_loss(fused, batch["clean"].to(device), valid)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def model_info(cfg: TrainConfig, history: list[dict], extra: dict[str, Any] | None = None):
    from wsfusion_core.weights import ModelInfo

    return ModelInfo(
        tile_size=300,
        fusion="mean" if (cfg.clean or cfg.fusion == "mean") else "learned",
        architecture=cfg.architecture if not (cfg.clean or cfg.fusion == "mean") else "paper",
        name=cfg.name or ("clean-upper-bound" if cfg.clean else f"wsfusion-{cfg.fusion}"),
        provenance={
            "method": "Rafique, Blanton, Jacobs: weakly supervised fusion of multiple overhead "
                      "images (quality U-Net, softmax fusion, segmentation U-Net, end to end)",
            "variant": "clean upper bound" if cfg.clean else (
                f"fusion={cfg.fusion}, quality net={cfg.architecture}, artifacts={cfg.artifacts}"
                f", aux L1 weight={cfg.aux_weight:g}" + (", +Banepa" if cfg.banepa else "")),
            "data": (f"user data {cfg.user_data} (bottom {cfg.user_val_fraction:.0%} of each "
                     "image for validation)" + (f", fine-tuned from {cfg.init}" if cfg.init else "")
                     ) if cfg.user_data else
                    ("Dubai aerial segmentation (Humans in the Loop / MBRSC, CC0): train tiles "
                     f"{cfg.train_tiles}, validation tiles {cfg.val_tiles}, test tiles "
                     f"{list(TEST_TILES)} held out"
                     + ("; Banepa buildings (OpenAerialMap CC BY 4.0, OSM ODbL; partial "
                        "labels), validation columns held out" if cfg.banepa else "")),
            "clouds": {"train": cfg.train_clouds, "validation": cfg.val_clouds,
                       "test (held out)": list(TEST_CLOUDS)},
            "recipe": asdict(cfg) | {"class_weights_bg_road_building": list(CLASS_WEIGHTS),
                                     "optimiser": "Adam betas (0.9, 0.999)"},
            "recipe_note": cfg.recipe_note,
            "epochs_completed": len(history),
            "steps": history[-1]["step"] if history else 0,
            "validation_history": history,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **(extra or {}),
        },
    )


def adapt_state(src: dict, dst: dict) -> dict:
    """Start a model from another's tensors. A paper quality net seeds a set-aware one: its
    first convolution's weights go to the image channels, the set-statistic channels start at
    zero, so the start is exactly the paper model and training adds the comparison."""
    out = {}
    for k, v in dst.items():
        w = src.get(k)
        if w is None:
            raise ValueError(f"init weights lack {k}")
        if w.shape == v.shape:
            out[k] = w
        elif w.ndim == 4 and w.shape[0] == v.shape[0] and w.shape[1] < v.shape[1]:
            grown = v.new_zeros(v.shape)
            grown[:, :w.shape[1]] = w
            out[k] = grown
        else:
            raise ValueError(f"init weights: {k} has shape {tuple(w.shape)}, need {tuple(v.shape)}")
    return out


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Run the recipe; returns the path of the best (by validation mIoU) weights."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from wsfusion_core.model import FusionModel
    from wsfusion_core.weights import save_weights

    from .artifacts import ArtifactMix, CloudBank
    from .datasets import FusionDataset, SampleConfig, collate, load_dubai, worker_init
    from .ema import WeightAverage

    t_start = time.time()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = _device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.jsonl"
    data = Path(cfg.data)
    if cfg.user_data:
        train_items, val_items = user_items(cfg)
    else:
        train_items = load_dubai(data / "segmentation" / "dubai", cfg.train_tiles)
        val_items = load_dubai(data / "segmentation" / "dubai", cfg.val_tiles)
    if cfg.banepa:
        from .banepa import load_banepa

        train_items += load_banepa(data)[0]  # validation stays on Dubai: all three classes
    clouds = CloudBank.from_sources(data / "clouds", cfg.train_clouds) \
        if (data / "clouds").is_dir() else None  # None: plain white Perlin clouds
    val_clouds = CloudBank.from_sources(data / "clouds", cfg.val_clouds) \
        if (data / "clouds").is_dir() else None

    fusion = "mean" if cfg.clean else cfg.fusion
    model = FusionModel(fusion=fusion,
                        architecture="paper" if fusion == "mean" else cfg.architecture)
    if cfg.init:
        from wsfusion_core.weights import load_weights

        start, info = load_weights(cfg.init)
        if info.fusion != fusion:
            raise ValueError(f"{cfg.init}: fusion {info.fusion!r} does not match {fusion!r}")
        model.load_state_dict(adapt_state(start.state_dict(), model.state_dict()))
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    steps = cfg.steps_per_epoch or max(1, cfg.samples_per_epoch // cfg.batch_size)
    weight = torch.tensor(CLASS_WEIGHTS, device=device)

    average = WeightAverage(model, cfg.ema) if cfg.ema > 0 else None
    history: list[dict] = []
    start_epoch, step, best = 0, 0, -1.0
    ckpt = out / "last.pt"
    if resume and ckpt.is_file():
        # weights_only: tensors, dicts, lists and numbers only; never unpickles code.
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        if average is not None:
            if "ema" not in state:
                raise ValueError(f"{ckpt}: written without --ema; resume it without --ema")
            average.load_state_dict(state["ema"])
        start_epoch, step, best = state["epoch"], state["step"], state["best"]
        history = state["history"]
        _log(log_path, {"event": "resume", "epoch": start_epoch, "step": step})
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")

    scfg = SampleConfig(crop=cfg.crop, k_choices=cfg.k, k_probs=cfg.k_probs,
                        share_range=tuple(cfg.share), cloud_prob=cfg.cloud_prob,
                        declared_prob=cfg.declared_prob, scale_range=tuple(cfg.scale),
                        jitter=cfg.jitter, artifacts=cfg.artifacts,
                        joint_gain=tuple(cfg.joint_gain),
                        mix=ArtifactMix(haze_strength=tuple(cfg.haze_strength),
                                        haze_whole=cfg.haze_whole))
    timed = cfg.time_epochs and cfg.budget_min > 0
    ds = FusionDataset(train_items, (10 ** 8 if timed else steps) * cfg.batch_size,
                       cfg.batch_size, scfg, clouds, seed=cfg.seed,
                       fixed_k=1 if cfg.clean else None)
    deadline = t_start + cfg.budget_min * 60 if cfg.budget_min > 0 else math.inf
    best_path = out / "best.safetensors"
    stopped = False
    stream = None
    if timed:  # one long stream of samples (workers stay up), cut into epochs by the clock
        ds.set_epoch(start_epoch + 1000)  # fresh samples after a resume
        stream = iter(DataLoader(ds, batch_size=cfg.batch_size, shuffle=False,
                                 num_workers=cfg.workers, collate_fn=collate,
                                 worker_init_fn=worker_init,
                                 persistent_workers=cfg.workers > 0,
                                 prefetch_factor=4 if cfg.workers > 0 else None))
    val_s = 0.0
    for epoch in range(start_epoch, cfg.epochs):
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, epoch)
        model.train()
        losses = []
        if stream is not None:
            left = cfg.epochs - epoch
            epoch_end = time.time() + max(0.0, deadline - time.time() - val_s * left) / left
            batches: Any = stream
        else:
            epoch_end = deadline
            ds.set_epoch(epoch)
            batches = DataLoader(ds, batch_size=cfg.batch_size, shuffle=False,
                                 num_workers=cfg.workers, collate_fn=collate,
                                 worker_init_fn=worker_init)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", file=sys.stderr,
                   mininterval=30, total=None if stream is not None else len(batches))
        if stream is not None:
            bar.total = None  # a clock-cut epoch has no fixed length
        for batch in bar:
            losses.append(train_step(model, opt, batch, weight, cfg.clean, device,
                                     cfg.aux_weight))
            if average is not None:
                average.update(model)
            step += 1
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", refresh=False)
            if time.time() > epoch_end:
                stopped = stream is None or time.time() > deadline
                break
        bar.close()
        t_val = time.time()
        kept = average.model if average is not None else model  # what is validated and saved
        val = validate(kept, val_items, cfg, val_clouds, device)
        val_s = time.time() - t_val
        rec = {"event": "epoch", "epoch": epoch + 1, "step": step,
               "loss": float(np.mean(losses)) if losses else None,
               "lr": opt.param_groups[0]["lr"], "val": val, "partial": stopped,
               "minutes": round((time.time() - t_start) / 60, 2)}
        history.append(rec)
        _log(log_path, rec)
        if val["miou"] > best:
            best = val["miou"]
            save_weights(best_path, kept, model_info(cfg, history, {"selected_epoch": epoch + 1}))
        if cfg.keep_epochs:
            (out / "epochs").mkdir(exist_ok=True)
            save_weights(out / "epochs" / f"epoch_{epoch + 1:02d}.safetensors", kept,
                         model_info(cfg, history, {"selected_epoch": epoch + 1}),
                         write_card=False)
        tmp = ckpt.with_name(ckpt.name + ".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                    "epoch": epoch + 1, "step": step,
                    "best": best, "history": history, "config": asdict(cfg),
                    **({"ema": average.state_dict()} if average is not None else {})}, tmp)
        tmp.replace(ckpt)  # a kill mid-write never leaves a torn checkpoint
        if stopped:
            _log(log_path, {"event": "budget reached", "minutes": cfg.budget_min})
            break
    save_weights(out / "last.safetensors", average.model if average is not None else model,
                 model_info(cfg, history))
    _log(log_path, {"event": "done", "best_val_miou": best, "steps": step,
                    "minutes": round((time.time() - t_start) / 60, 2)})
    return best_path


def build_parser() -> argparse.ArgumentParser:
    """Every TrainConfig field is a flag; its help (training/train_flags.py) ends with the
    field's default, so the text and the recipe cannot disagree."""
    from .train_flags import FLAG_HELP

    p = argparse.ArgumentParser(prog="wsfusion-train", description=__doc__.split("\n\n")[0],
                                epilog="Walk-through (fine-tune on your own imagery): "
                                "docs/training.md")
    p.add_argument("--config", help="JSON file with TrainConfig keys (flag names with "
                   "underscores); flags given as well override it")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from OUT/last.pt (same flags)")
    d = TrainConfig()
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(d, f.name)
        shown = ("off" if default is False else "on" if default is True
                 else " ".join(map(str, default)) if isinstance(default, list)
                 else "none" if default in (None, "") else str(default))
        if f.name == "data":
            shown = "../shared/data beside the repository"
        text = f"{FLAG_HELP.get(f.name, '')} (default: {shown})".replace("%", "%%")
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", default=None, help=text)
        elif isinstance(default, list) or f.name == "k_probs":
            kind = int if f.name in ("k", "train_tiles", "val_tiles") else \
                (str if ("clouds" in f.name or f.name == "user_data") else float)
            p.add_argument(flag, nargs="+", type=kind, default=None, help=text)
        else:
            p.add_argument(flag, type=type(default), default=None, help=text)
    return p


def config_from_args(argv: Sequence[str] | None = None) -> tuple[TrainConfig, bool]:
    args = build_parser().parse_args(argv)
    base: dict[str, Any] = {}
    if args.config:
        base = json.loads(Path(args.config).read_text())
    for f in fields(TrainConfig):
        v = getattr(args, f.name)
        if v is not None:
            base[f.name] = v
    return TrainConfig.from_dict(base), bool(args.resume)


def main(argv: Sequence[str] | None = None) -> int:
    cfg, resume = config_from_args(argv)
    path = train(cfg, resume=resume)
    print(f"best weights: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
