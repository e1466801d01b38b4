"""The partial-label loss: a source that labels only buildings never teaches background vs
road; with full labels it is the paper's weighted cross-entropy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.banepa import BUILDING, NOT_BUILDING
from training.losses import IGNORE, partial_label_loss

WEIGHTS = torch.tensor([0.5, 2.0, 1.0])
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def test_full_labels_equal_weighted_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 9, generator=g)
    labels = torch.randint(0, 3, (2, 8, 9), generator=g)
    labels[0, 0, :4] = IGNORE
    ref = F.cross_entropy(logits, labels, weight=WEIGHTS, ignore_index=IGNORE)
    assert torch.allclose(partial_label_loss(logits, labels, WEIGHTS), ref, atol=1e-6)


def test_not_building_ignores_the_background_road_split() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, 6, 6, generator=g)
    labels = torch.full((1, 6, 6), NOT_BUILDING)
    labels[0, :2] = BUILDING
    base = partial_label_loss(logits, labels, WEIGHTS)
    # Move probability between background and road only (their sum kept): loss unchanged.
    p = torch.softmax(logits, 1)
    moved = p.clone()
    moved[:, 0], moved[:, 1] = p[:, 0] + p[:, 1] * 0.9, p[:, 1] * 0.1
    assert torch.allclose(partial_label_loss(moved.log(), labels, WEIGHTS), base, atol=1e-5)
    # ...and the gradient never pushes background against road at those pixels.
    x = logits.clone().requires_grad_(True)
    partial_label_loss(x, labels, WEIGHTS).backward()
    grad = x.grad[0, :, 2:]
    pp = p[0, :, 2:]
    # d loss / d logit_c ∝ p_c - p_c / (p_bg + p_road) * [c in set]: bg and road move together
    # in proportion to their probabilities, so the bg:road ratio is not taught.
    ratio_grad = grad[0] / grad[1]
    assert torch.allclose(ratio_grad, pp[0] / pp[1], rtol=1e-4)
    # A building pixel is still taught to be a building.
    assert (x.grad[0, BUILDING, :2] < 0).all()


def test_banepa_labels_line_up_with_buildings() -> None:
    if not (SHARED / "segmentation" / "banepa" / "train" / "oam").is_dir():
        pytest.skip("../shared/data/segmentation/banepa is absent")
    pytest.importorskip("rasterio")
    from training.banepa import load_banepa

    train, val = load_banepa(SHARED)
    img, lab = train[0]
    assert set(np.unique(lab)) <= {BUILDING, NOT_BUILDING}
    assert 0.2 < (lab == BUILDING).mean() < 0.7  # a dense town, per the provenance
    assert val and val[0][0].shape[0] == img.shape[0]
