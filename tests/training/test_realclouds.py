"""Real-cloud validation: the clouded-pixel rule, the composites' weights, the cases built from
../shared/data/real_clouds (skipped with a reason where absent) and the shipped model on a real
Sentinel-2 pair through the real fuse path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from training import realclouds as rc
from training.cli import evaluate_main
from wsfusion_core.composite import blue_channel, equal_weights, min_blue

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real_clouds"
SHIPPED = Path(__file__).resolve().parents[2] / "wsfusion_core" / "data" / "weights" / \
    "default.safetensors"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real-cloud data not available: {path}")
    return path


def test_s2_clouded_finds_cloud_and_shadow_not_clear_ground():
    clear = np.full((13, 40, 40), 1200, np.uint16)
    cloudy = clear.copy()
    cloudy[:, :10] = 5000  # thick cloud
    cloudy[1, 10:20] += 450  # thin cloud: blue brightened by 0.045
    cloudy[7, 25:32] = 600  # shadow: NIR halved
    cloudy[:, 36:] += 100  # a slight radiometric difference: not cloud
    m = rc.s2_clouded(cloudy, clear)
    assert m[:20].all() and m[25:32].all()
    assert not m[22, 22] and not m[38, 38]  # away from the edges of the clouded areas


def test_min_blue_matches_the_blue_argmin_on_real_stacks(tmp_path):
    """On the real Sentinel-2 and Landsat cases the product's min-blue (ties broken by the other
    bands) chooses what a plain argmin of blue chooses wherever blue is not tied."""
    root = _need(REAL / "sen12mscr_pairs").parent
    _need(REAL / "landsat_ts_fmask")
    cases = rc.all_cases(root, tmp_path)
    names = {"s2-85_p492+overcast", "landsat-2010179"}  # many blue ties in the Landsat one
    for case in [c for c in cases if c.name in names]:
        stack, valid = (np.stack(a) for a in zip(*(rc._read(p) for p in case.inputs)))
        w = equal_weights(min_blue(stack, valid, blue_channel(case.bands, stack.shape[1])))
        blue = np.where(valid, stack[:, case.bands[-1] - 1].astype(np.float64), np.inf)
        untied = ((blue == blue.min(axis=0)).sum(axis=0) == 1) & valid.any(axis=0)
        argmin = np.arange(len(stack))[:, None, None] == blue.argmin(axis=0)
        assert untied.mean() > 0.99
        np.testing.assert_array_equal(w[:, untied], argmin[:, untied])
        np.testing.assert_allclose(w.sum(axis=0), valid.any(axis=0), rtol=1e-6)


def test_s2_cases_are_real_pairs_with_an_overcast_variant(tmp_path):
    root = _need(REAL / "sen12mscr_pairs").parent
    cases = rc.s2_cases(root, tmp_path)
    pairs = [c for c in cases if "+overcast" not in c.name]
    assert len(pairs) == 8 and len(cases) == 15
    for c in cases:
        assert all(p.is_file() for p in c.inputs) and c.scored.any()
        with rasterio.open(c.inputs[0]) as a, rasterio.open(c.inputs[-1]) as b:
            assert (a.crs, a.transform, a.count) == (b.crs, b.transform, 13)
    over = next(c for c in cases if c.name == "s2-85_p492+overcast")
    assert over.overcast == 1 and over.bad[1].all()


def test_landsat_stacks_have_four_dates_and_a_real_overcast_one(tmp_path):
    root = _need(REAL / "landsat_ts_fmask").parent
    cases = rc.landsat_cases(root, tmp_path)
    assert len(cases) >= 4
    for c in cases:
        assert len(c.inputs) == 4 and c.overcast not in (None, len(c.inputs) - 1)
        with rasterio.open(c.inputs[c.overcast]) as src:
            valid = src.dataset_mask() > 0
        assert c.bad[c.overcast][valid].mean() >= rc.OVERCAST_SHARE
        assert c.scored.sum() > 100


def test_shipped_model_on_a_real_pair_through_fuse(tmp_path):
    """A wholly overcast input and the cloud pixels get less weight from the shipped model than
    the mean gives them, and the learned fusion is closer to the clear image than the mean."""
    root = _need(REAL / "sen12mscr_pairs").parent
    if not SHIPPED.is_file():
        pytest.skip(f"{SHIPPED} not present")
    case = next(c for c in rc.s2_cases(root, tmp_path / "s2") if c.name == "s2-85_p492+overcast")
    res = rc.run_case(case, [str(SHIPPED)], tmp_path)
    ours, mean = res["ours:default"], res["mean"]
    assert res["oracle"]["l1"] == 0.0 and res["oracle"]["gap"] == 1.0
    assert ours["overcast"] < 0.5 * mean["overcast"], res
    assert ours["leak"] < mean["leak"] and ours["l1"] < mean["l1"], res
    # the figure is drawn from the files fuse wrote (ours, median, min-blue), nothing recomputed
    png = rc.figure(tmp_path, [case], "default", tmp_path / "fig.png")
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[0] > 4 * im.size[1]  # one row: 3 inputs, 3 weights and 4 panels


def test_cli_real_clouds_mode(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        evaluate_main(["real-clouds", "--help"])
    assert exc.value.code == 0 and "--weights" in capsys.readouterr().out
    assert evaluate_main(["real-clouds", "--data", str(tmp_path)]) == 1
    assert "real-cloud data not found" in capsys.readouterr().err
