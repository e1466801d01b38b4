"""The set-aware quality net: permutation-equivariant, any K >= 1, invalid pixels kept out of
the set statistics; the paper's architecture and old weight files still load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wsfusion_core.errors import WeightsError
from wsfusion_core.model import FusionModel, set_statistics
from wsfusion_core.weights import ModelInfo, load_weights, read_info, save_weights

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WEIGHTS = ROOT / "wsfusion_core" / "data" / "weights" / "default.safetensors"
TINY = [4, 8, 8, 8, 8]


def _model(seed: int = 0) -> FusionModel:
    torch.manual_seed(seed)
    m = FusionModel(widths=TINY, architecture="set")
    for p in m.parameters():  # non-trivial weights on every channel, incl. the set statistics
        p.data.normal_(0, 0.3)
    return m.eval()


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_any_order_gives_the_same_weights(k: int) -> None:
    m = _model()
    g = torch.Generator().manual_seed(k)
    x = torch.rand(2, k, 3, 40, 36, generator=g)
    valid = torch.rand(2, k, 40, 36, generator=g) > 0.3
    with torch.no_grad():
        fused, w, seg = m(x, valid)
        for perm in (torch.randperm(k, generator=g), torch.arange(k).flip(0)):
            f2, w2, s2 = m(x[:, perm], valid[:, perm])
            assert torch.allclose(w2, w[:, perm], atol=1e-5)
            assert torch.allclose(f2, fused, atol=1e-5)
            assert torch.allclose(s2, seg, atol=1e-4)
    assert (w[~valid] == 0).all()


def test_invalid_pixels_never_enter_the_statistics() -> None:
    m = _model(1)
    x = torch.rand(1, 3, 3, 32, 32)
    valid = torch.ones(1, 3, 32, 32, dtype=torch.bool)
    valid[0, 2, :16] = False
    garbage = x.clone()
    garbage[0, 2, :, :16] = torch.rand(3, 16, 32) * 50  # anything under the invalid pixels
    s1, s2 = set_statistics(x, valid), set_statistics(garbage, valid)
    assert torch.equal(s1, s2)
    with torch.no_grad():
        l1, l2 = m.quality_logits(x, valid), m.quality_logits(garbage, valid)
    # The two valid inputs' logits cannot depend on what lies under input 2's invalid pixels
    # near them... except through the receptive field of input 2 itself, which is masked anyway.
    assert torch.allclose(l1[:, :2], l2[:, :2], atol=1e-5)
    # Statistics over the valid pair only: min of inputs 0 and 1 in the top half.
    assert torch.allclose(s1[0, 3:6, :16], x[0, :2, :, :16].amin(0))
    # No valid input at a pixel → statistics 0, weights 0.
    none = torch.zeros_like(valid)
    assert (set_statistics(x, none) == 0).all()


def test_k1_statistics_are_the_input_itself() -> None:
    x = torch.rand(1, 1, 3, 16, 16)
    s = set_statistics(x, None)
    assert torch.allclose(s, x[:, 0].repeat(1, 3, 1, 1))


def test_old_weights_load_as_the_paper_architecture() -> None:
    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip("no shipped default weights in this checkout")
    info = read_info(DEFAULT_WEIGHTS)
    assert info.architecture == "paper"
    model, _ = load_weights(DEFAULT_WEIGHTS)
    assert model.architecture == "paper" and model.quality is not None
    assert model.quality.encoders[0][0].in_channels == 3


def test_set_weights_round_trip_and_unknown_architecture(tmp_path: Path) -> None:
    m = _model(2)
    info = ModelInfo(widths=TINY, architecture="set")
    path = save_weights(tmp_path / "set.safetensors", m, info)
    loaded, linfo = load_weights(path)
    assert linfo.architecture == "set" and loaded.architecture == "set"
    x, v = torch.rand(1, 3, 3, 24, 24), torch.ones(1, 3, 24, 24, dtype=torch.bool)
    with torch.no_grad():
        assert torch.allclose(loaded(x, v)[1], m(x, v)[1], atol=1e-6)
    bad = ModelInfo(widths=TINY, architecture="transformer")
    save_weights(tmp_path / "bad.safetensors", m, bad)
    with pytest.raises(WeightsError, match="architecture"):
        load_weights(tmp_path / "bad.safetensors")


def test_paper_model_seeds_a_set_model_exactly() -> None:
    from training.train import adapt_state

    torch.manual_seed(3)
    paper = FusionModel(widths=TINY).eval()
    setm = FusionModel(widths=TINY, architecture="set")
    setm.load_state_dict(adapt_state(paper.state_dict(), setm.state_dict()))
    setm.eval()
    x = torch.rand(1, 4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(paper.quality_logits(x), setm.quality_logits(x), atol=1e-6)


def test_set_weights_run_through_fuse_in_any_order(tmp_path: Path, make_raster,
                                                   smooth_image) -> None:
    """What training ships must run in the real inference path: GeoTIFFs in, GeoTIFF out, the
    same fused image whatever the order of the inputs, nodata never leaking."""
    import rasterio

    from wsfusion_core import fuse

    path = save_weights(tmp_path / "set.safetensors", _model(4),
                        ModelInfo(tile_size=128, widths=TINY, architecture="set"))
    imgs = [smooth_image(150, 170, seed=s) for s in (1, 2, 3)]
    imgs[0][:, 40:90, 50:120] = 0  # input 0's nodata
    paths = [make_raster(tmp_path / f"in{i}.tif", im, nodata=0) for i, im in enumerate(imgs)]
    outs = []
    for order in ([0, 1, 2], [2, 0, 1]):
        out = tmp_path / f"out_{''.join(map(str, order))}.tif"
        fuse([paths[i] for i in order], out, weights=path, device="cpu")
        with rasterio.open(out) as src:
            outs.append(src.read().astype(int))
    assert np.abs(outs[0] - outs[1]).max() <= 1
    hole = outs[0][:, 40:90, 50:120]
    others = np.stack([imgs[1], imgs[2]])[:, :, 40:90, 50:120].astype(int)
    assert (hole >= others.min(0) - 1).all() and (hole <= others.max(0) + 1).all()
