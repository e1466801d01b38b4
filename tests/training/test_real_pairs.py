"""The real-pair recipe (issues 18/24): a real cloudy/clear pair from ``sen12mscr_train`` makes
K-input samples, and a few CPU steps of its loss move the weight toward the clear image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.real_pairs import FOLDS, GROUPS, fold_of, load_pairs, make_real_sample
from training.train_real import real_batch, real_pair_loss

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def pairs():
    if not (DATA / "real_clouds" / "sen12mscr_train").is_dir():
        pytest.skip("../shared/data/real_clouds/sen12mscr_train is absent (the real pairs)")
    return load_pairs(DATA, folds=["g2"])  # 5 places, one of them clouded throughout


def test_folds_are_places():
    assert fold_of("ROIs1970_fall_s2_136_p139") == "roi136"
    assert fold_of("ROIs1970_fall_s2_85_p753") == "roi85"
    ids = [i for g in GROUPS.values() for i in g]
    assert len(ids) == len(set(ids)) == 20
    assert set(FOLDS) == {"roi136", "roi85", "g1", "g2", "g3", "g4"}


def test_samples_keep_the_clear_answer_and_mark_the_clouds(pairs):
    rng = np.random.default_rng(0)
    i = next(j for j, p in enumerate(pairs) if 0.2 < p.degraded.mean() < 0.9)
    for k in (2, 4, 6):
        s = make_real_sample(pairs, i, k, 64, rng)
        assert s["inputs"].shape == (k, 13, 64, 64) and s["valid"].shape == (k, 64, 64)
        # the target is one of the inputs: the answer is reachable
        assert any(np.array_equal(s["target"], x) for x in s["inputs"])
        # the loss applies where some valid input is degraded, nowhere else
        assert s["loss"].any()
        assert not (s["loss"] & ~(s["degraded"] & s["valid"]).any(axis=0)).any()


def test_the_loss_moves_the_weight_toward_the_clear_image(pairs):
    """Three Adam steps on one real sample from the shipped model: the weight on the inputs
    that are not clouded rises where another one is."""
    from training.train import adapt_state
    from wsfusion_core.model import FusionModel
    from wsfusion_core.weights import load_weights

    torch.manual_seed(0)
    init, info = load_weights()
    model = FusionModel(3, 3, info.widths, architecture="rank")
    model.load_state_dict(adapt_state(init.state_dict(), model.state_dict()))
    model.train()
    rng = np.random.default_rng(1)
    i = max(range(len(pairs)), key=lambda j: pairs[j].degraded.mean() * (
        pairs[j].degraded.mean() < 0.9))
    batch = real_batch([make_real_sample(pairs, i, 2, 96, rng) for _ in range(2)],
                       [False, True], [], [], [])
    assert model.quality is not None
    opt = torch.optim.Adam(model.quality.parameters(), lr=1e-3)

    def good_weight() -> float:
        with torch.no_grad():
            _, w = real_pair_loss(model, batch, 0.1)
        m = batch["loss"] > 0
        return float(((w * batch["good"]).sum(1))[m].mean())

    before = good_weight()
    for _ in range(3):
        loss, _ = real_pair_loss(model, batch, 0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = good_weight()
    assert after > before + 0.01, (before, after)
