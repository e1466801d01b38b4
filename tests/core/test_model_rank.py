"""The cross-input quality net (architecture ``rank``, issue 18): its features compare each input
with the others, are permutation-equivariant for any K and ignore invalid inputs."""

from __future__ import annotations

import pytest
import torch

from wsfusion_core.model import FusionModel, quality_channels, ranks, set_statistics

WIDTHS = (4, 8, 8, 8, 8)


def test_ranks_order_the_valid_inputs_and_share_ties():
    v = torch.tensor([0.3, 0.1, 0.3, 0.9]).view(1, 4, 1, 1)
    r = ranks(v)[0, :, 0, 0]
    assert torch.allclose(r, torch.tensor([0.5, 0.0, 0.5, 1.0]))
    valid = torch.tensor([True, False, True, True]).view(1, 4, 1, 1)
    r = ranks(v, valid)[0, :, 0, 0]  # the invalid 0.1 is not counted and gets 0
    assert torch.allclose(r, torch.tensor([0.25, 0.0, 0.25, 1.0]))
    one = torch.tensor([True, False, False, False]).view(1, 4, 1, 1)
    assert ranks(v, one)[0, 0, 0, 0] == 0.5  # a lone valid input


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_rank_net_is_permutation_equivariant_for_any_k(k):
    torch.manual_seed(k)
    model = FusionModel(3, 3, WIDTHS, architecture="rank", evidence_channels=2).eval()
    x = torch.rand(2, k, 3, 24, 24)
    ev = torch.randn(2, k, 2, 24, 24)
    valid = torch.rand(2, k, 24, 24) > 0.2
    perm = torch.randperm(k)
    with torch.no_grad():
        a = model.quality_logits(x, valid, ev)
        b = model.quality_logits(x[:, perm], valid[:, perm], ev[:, perm])
    assert torch.allclose(a[:, perm], b, atol=1e-5)


def test_invalid_inputs_do_not_change_the_others_features():
    """What an invalid input holds never reaches the statistics or ranks of the valid ones."""
    torch.manual_seed(0)
    model = FusionModel(3, 3, WIDTHS, architecture="rank").eval()
    x = torch.rand(1, 3, 3, 20, 20)
    valid = torch.ones(1, 3, 20, 20, dtype=torch.bool)
    valid[:, 2] = False
    y = x.clone()
    y[:, 2] = torch.rand(1, 3, 20, 20) * 50  # garbage where it is invalid
    with torch.no_grad():
        a = model.quality_logits(x, valid)
        b = model.quality_logits(y, valid)
    assert torch.allclose(a[:, :2], b[:, :2], atol=1e-6)
    assert torch.equal(set_statistics(x, valid), set_statistics(y, valid))


def test_quality_channels_and_the_evidence_contract():
    assert quality_channels("paper", 3) == 3
    assert quality_channels("set", 3) == 12
    assert quality_channels("rank", 3, 3) == 26
    model = FusionModel(3, 3, WIDTHS, architecture="rank", evidence_channels=3)
    with pytest.raises(ValueError, match="evidence"):
        model.quality_logits(torch.rand(1, 2, 3, 16, 16), None)
