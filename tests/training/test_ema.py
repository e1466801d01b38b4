"""The weight average's update rule (a run with --ema: tests/training/test_train_resume.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.ema import WeightAverage


def test_update_is_the_exponential_average_and_counters_follow() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    avg = WeightAverage(net, decay=0.75)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    net(torch.randn(4, 1, 3, 3))  # train mode: BN running stats and counter move
    avg.update(net)
    now = net.state_dict()
    for name, value in avg.state_dict().items():
        if value.dtype.is_floating_point:
            torch.testing.assert_close(value, 0.75 * before[name] + 0.25 * now[name])
        else:
            assert torch.equal(value, now[name])
    assert not any(p.requires_grad for p in avg.model.parameters())


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1])
def test_decay_outside_the_open_interval_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match="EMA decay"):
        WeightAverage(nn.Linear(1, 1), decay)
