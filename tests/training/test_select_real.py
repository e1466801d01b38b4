"""Choosing checkpoints on the real-cloud validation: the soup is the element-wise mean of real
weight files and loads like any weights; epoch files get labels that name their run; the scores
rank by the mean gap over all cases and count the cases that beat both composites."""

from __future__ import annotations

import numpy as np
import torch

from training.realclouds import weights_label
from training.select_real import scores, soup
from wsfusion_core.weights import default_weights_path, load_weights, save_weights


def test_soup_is_the_mean_of_the_checkpoints(tmp_path):
    model, info = load_weights(default_weights_path())
    a = save_weights(tmp_path / "run" / "epochs" / "epoch_01.safetensors", model, info,
                     write_card=False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    b = save_weights(tmp_path / "run" / "epochs" / "epoch_02.safetensors", model, info,
                     write_card=False)
    out = soup([str(a), str(b)], tmp_path / "run" / "epochs" / "soup.safetensors")
    mixed, minfo = load_weights(out)  # validated like any weights file
    sa, sb = load_weights(a)[0].state_dict(), load_weights(b)[0].state_dict()
    for k, v in mixed.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (sa[k] + sb[k]) / 2)
    assert minfo.provenance["soup_of"] == [str(a), str(b)]
    assert weights_label(out) == "run-soup"
    assert weights_label(a) == "run-epoch_01"


def test_scores_average_the_gap_and_count_the_wins():
    def case(ours: float, gap: float) -> dict:
        return {"ours:x": {"l1": ours, "gap": gap, "leak": 0.1},
                "median": {"l1": 0.05, "gap": 0.3}, "min-blue": {"l1": 0.02, "gap": 0.8}}

    per_case = {"s2-a": case(0.01, 0.9), "s2-b": case(0.03, 0.7), "landsat-c": case(0.001, 1.0)}
    s = scores(per_case, "ours:x")
    assert np.isclose(s["all_gap"], (0.9 + 0.7 + 1.0) / 3)
    assert np.isclose(s["s2_gap"], 0.8) and np.isclose(s["landsat_gap"], 1.0)
    assert s["beats_both"] == 2
    assert np.isnan(s["all_overcast"])
