"""The issue-12 recipe end to end on a tiny Dubai-layout folder (Pillow only, as on the GPU
machine): set-aware net, realistic artifacts, aux loss, time-free epochs; the checkpoint
resumes without unpickling code, and the best weights load through the inference loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wsfusion_core.weights import load_weights


def _dubai_like(root: Path) -> None:
    rng = np.random.default_rng(0)
    colours = {0: (0x84, 0x29, 0xF6), 1: (0x6E, 0xC1, 0xE4), 2: (0x3C, 0x10, 0x98)}
    for t in (1, 6):
        (root / f"tile_{t}" / "images").mkdir(parents=True)
        (root / f"tile_{t}" / "masks").mkdir(parents=True)
        lab = np.zeros((160, 200), np.uint8)
        lab[:, 90:100] = 1
        lab[20:70, 20:70] = 2
        img = (np.array([[90, 140, 60], [200, 200, 200], [180, 60, 50]], np.uint8)[lab]
               + rng.integers(0, 20, (160, 200, 3)).astype(np.uint8))
        Image.fromarray(img).save(root / f"tile_{t}" / "images" / "image_part_001.jpg")
        mask = np.zeros((160, 200, 3), np.uint8)
        for c, rgb in colours.items():
            mask[lab == c] = rgb
        Image.fromarray(mask).save(root / f"tile_{t}" / "masks" / "image_part_001.png")


def test_set_recipe_checkpoints_and_resumes_safely(tmp_path: Path) -> None:
    from training.train import main

    data = tmp_path / "data"
    _dubai_like(data / "segmentation" / "dubai")
    out = tmp_path / "run"
    args = ["--data", str(data), "--out", str(out), "--train-tiles", "1", "--val-tiles", "6",
            "--architecture", "set", "--artifacts", "real", "--aux-weight", "1.0",
            "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "64",
            "--val-crop", "64", "--val-crops", "1", "--k", "1", "3", "--scale", "1", "2",
            "--workers", "0", "--threads", "1"]
    assert main([*args, "--epochs", "1"]) == 0
    state = torch.load(out / "last.pt", weights_only=True)  # plain data only
    assert state["epoch"] == 1
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r["event"] == "epoch"] == [1, 2]
    assert any(r["event"] == "resume" and r["epoch"] == 1 for r in log)
    assert "R3" in [r for r in log if r["event"] == "epoch"][-1]["val"]
    model, info = load_weights(out / "best.safetensors")
    assert info.architecture == "set" and model.architecture == "set"
    assert info.provenance["recipe"]["aux_weight"] == 1.0


def test_run_with_ema_saves_and_resumes_the_average(tmp_path: Path) -> None:
    from training.train import main

    data = tmp_path / "data"
    _dubai_like(data / "segmentation" / "dubai")
    out = tmp_path / "run"
    args = ["--data", str(data), "--out", str(out), "--train-tiles", "1", "--val-tiles", "6",
            "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "64", "--val-crop", "64",
            "--val-crops", "1", "--k", "2", "--workers", "0", "--threads", "1",
            "--ema", "0.5", "--keep-epochs"]
    assert main([*args, "--epochs", "1"]) == 0
    state = torch.load(out / "last.pt", weights_only=True)
    assert set(state["ema"]) == set(state["model"])
    changed = [k for k, v in state["model"].items()
               if v.dtype.is_floating_point and not torch.equal(v, state["ema"][k])]
    assert changed, "after two steps the average differs from the last iterate"
    kept, info = load_weights(out / "epochs" / "epoch_01.safetensors")
    assert info.provenance["recipe"]["ema"] == 0.5
    saved = kept.state_dict()
    for key in changed:  # the file holds the average, not the iterate
        torch.testing.assert_close(saved[key], state["ema"][key])
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 2
    state = torch.load(out / "last.pt", weights_only=True)
    state.pop("ema")  # a checkpoint of a run without --ema cannot resume one with it
    torch.save(state, out / "last.pt")
    with pytest.raises(ValueError, match="without --ema"):
        main([*args, "--epochs", "3", "--resume"])


class _Evil:
    def __reduce__(self):  # what a tampered checkpoint would carry
        return (print, ("code ran",))


def test_resume_refuses_a_checkpoint_that_carries_code(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    torch.save({"model": {}, "payload": _Evil()}, path)
    with pytest.raises(Exception, match="(?i)weights.only|unsupported|global"):
        torch.load(path, weights_only=True)
