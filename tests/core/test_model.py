"""fuse_by_quality, the paper's equations 1-2: a softmax over the valid inputs at every pixel
gives the weights; the fused image is the weighted sum."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from wsfusion_core.model import fuse_by_quality  # noqa: E402


def _case(k=3, c=2, h=4, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(1, k, c, h, w, generator=g)
    logits = torch.randn(1, k, h, w, generator=g) * 3
    valid = torch.rand(1, k, h, w, generator=g) > 0.3
    return images, logits, valid


def test_weights_sum_to_one_over_valid_inputs_and_invalid_weigh_zero():
    images, logits, valid = _case()
    _, weights = fuse_by_quality(images, logits, valid)
    assert (weights[~valid] == 0).all()
    any_valid = valid.any(dim=1)
    total = weights.sum(dim=1)
    torch.testing.assert_close(total[any_valid], torch.ones_like(total[any_valid]))
    assert (weights >= 0).all()


def test_all_invalid_pixel_gets_zero_weights_and_zero_value():
    images, logits, valid = _case()
    valid[:, :, 1, 2] = False
    fused, weights = fuse_by_quality(images, logits, valid)
    assert (weights[:, :, 1, 2] == 0).all() and (fused[:, :, 1, 2] == 0).all()
    assert torch.isfinite(fused).all() and torch.isfinite(weights).all()


def test_identical_inputs_give_the_input_back():
    one = torch.rand(1, 1, 3, 6, 6)
    images = one.repeat(1, 4, 1, 1, 1)
    logits = torch.randn(1, 4, 6, 6)
    fused, _ = fuse_by_quality(images, logits, torch.ones(1, 4, 6, 6, dtype=torch.bool))
    torch.testing.assert_close(fused, one[:, 0])


def test_two_inputs_by_hand():
    """Logits 0 and ln 3 → weights 1/4 and 3/4; values 8 and 4 → 0.25*8 + 0.75*4 = 5. Where
    the second input is invalid the first takes weight 1."""
    images = torch.tensor([8.0, 4.0]).view(1, 2, 1, 1, 1).repeat(1, 1, 1, 1, 2)
    logits = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1).repeat(1, 1, 1, 2)
    valid = torch.tensor([[True, True], [True, False]]).view(1, 2, 1, 2)
    fused, weights = fuse_by_quality(images, logits, valid)
    torch.testing.assert_close(weights[0, :, 0, 0], torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(fused[0, 0, 0], torch.tensor([5.0, 8.0]))
    torch.testing.assert_close(weights[0, :, 0, 1], torch.tensor([1.0, 0.0]))


def test_without_mask_it_is_a_plain_softmax():
    images, logits, _ = _case(seed=2)
    _, weights = fuse_by_quality(images, logits)
    torch.testing.assert_close(weights, torch.softmax(logits, dim=1))
