"""The common radiometric scale: real GeoTIFFs written, aligned, read back and scaled the way
``fuse`` scales them; the rule shows in ``info`` and in the output tags."""

from __future__ import annotations

from contextlib import ExitStack

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window

from wsfusion_core.api import fuse
from wsfusion_core.cli import main
from wsfusion_core.errors import WsfusionError
from wsfusion_core.grid import AlignedReader, align
from wsfusion_core.view import (
    network_view,
    parse_scale,
    radiometry,
    to_unit,
    view_radiometry,
)

NORM = {"mean": [0.0] * 3, "std": [1.0] * 3}


def _views(paths, scale, bands=(1, 2, 3)):
    """Each input's network view (0..1) after the scaling fuse would use."""
    al = align(paths)
    with ExitStack() as stack:
        readers = [stack.enter_context(AlignedReader(i, al.grid)) for i in al.inputs]
        rad = view_radiometry(readers, bands, scale)
        whole = Window(0, 0, al.grid.width, al.grid.height)
        data = np.stack([r.read(whole)[0] for r in readers])
        valid = np.ones((len(paths),) + data.shape[2:], bool)
    return network_view(data, valid, bands, rad.scales(), NORM), rad


def test_uint16_inputs_keep_their_brightness_order(tmp_path, make_raster, smooth_image):
    ground = smooth_image(96, 96, dtype="uint16", seed=3)  # 20..3980
    dark = make_raster(tmp_path / "dark.tif", (ground * 0.5).astype(np.uint16))
    bright = make_raster(tmp_path / "bright.tif", np.minimum(ground * 1.8 + 500, 65535)
                         .astype(np.uint16))
    view, rad = _views([dark, bright], "auto")
    assert rad.common and "estimated jointly" in rad.rule
    assert (view[1] >= view[0]).all() and view[1].mean() > view[0].mean() + 0.2
    # The old per-input stretch erases exactly this difference.
    old, rad_old = _views([dark, bright], "per-input")
    assert not rad_old.common
    assert abs(old[1].mean() - old[0].mean()) < 0.05


def test_overcast_float_input_is_not_stretched_into_looking_clear(tmp_path, make_raster,
                                                                  smooth_image):
    tex = smooth_image(96, 96, dtype="float32", seed=5)
    clear = make_raster(tmp_path / "clear.tif", 0.04 + 0.12 * tex)  # ground reflectance
    cloud = make_raster(tmp_path / "cloud.tif", 0.55 + 0.35 * tex)  # thick cloud everywhere
    view, rad = _views([clear, cloud], "auto")
    assert "reflectance" in rad.rule
    assert view[1].mean() > 0.95  # the cloud stays white
    assert 0.1 < view[0].mean() < 0.6  # the ground mid-grey
    alone, _ = _views([cloud], "auto")
    assert alone[0].mean() > 0.95  # also when it is the only input
    old, _ = _views([clear, cloud], "per-input")
    assert old[1].mean() < 0.7  # the old rule made the cloud look like ordinary ground


def test_joint_estimate_ignores_clouds_in_one_input(smooth_image):
    ground = smooth_image(64, 64, dtype="uint16", seed=1).astype(np.float64)
    cloudy = ground.copy()
    cloudy[:, :, :40] = 12000  # 60 % thick cloud in one input
    rad = radiometry([ground, cloudy], [np.ones((64, 64), bool)] * 2, ["uint16"] * 2)
    solo = radiometry([ground], [np.ones((64, 64), bool)], ["uint16"])
    np.testing.assert_allclose(rad.lo, solo.lo[[0, 0]])
    np.testing.assert_allclose(rad.hi, solo.hi[[0, 0]])
    unit = to_unit(cloudy, rad.lo[1], rad.hi[1])
    assert unit[:, :, :40].min() == 1.0  # the cloud saturates


@pytest.mark.parametrize("text,lo,hi", [("s2", 0, 3000), ("reflectance", 0, 0.3),
                                        ("100,4100", 100, 4100), ("4095", 0, 4095)])
def test_parse_scale_forms(text, lo, hi):
    spec = parse_scale(text)
    assert (spec.lo, spec.hi) == pytest.approx((lo, hi))


def test_landsat_c2_maps_reflectance_like_s2():
    spec = parse_scale("landsat-c2")
    dn = (np.array([0.0, 0.3]) + 0.2) / 2.75e-5  # reflectance 0 and 0.3
    np.testing.assert_allclose(to_unit(dn[None], spec.lo, spec.hi)[0], [0.0, 1.0], atol=1e-6)


@pytest.mark.parametrize("bad", ["bright", "5,1", "-3", "1,2,3"])
def test_parse_scale_rejects(bad):
    with pytest.raises(WsfusionError, match="--scale"):
        parse_scale(bad)


def test_rule_in_info_and_output_tags(tmp_path, make_raster, smooth_image, random_weights):
    a = make_raster(tmp_path / "a.tif", smooth_image(80, 80, dtype="uint16", seed=1))
    b = make_raster(tmp_path / "b.tif", smooth_image(80, 80, dtype="uint16", seed=2))
    res = CliRunner().invoke(main, ["info", str(a), str(b)])
    assert res.exit_code == 0, res.output
    assert "network scale: estimated jointly" in res.output
    res = CliRunner().invoke(main, ["info", str(a), str(b), "--scale", "s2"])
    assert "network scale: --scale s2; one scale for all 2 inputs" in res.output
    res = CliRunner().invoke(main, ["info", str(a), "--scale", "bright"])
    assert res.exit_code != 0 and "--scale" in res.output
    out = tmp_path / "fused.tif"
    fuse([a, b], out, weights=random_weights, scale="s2", device="cpu")
    with rasterio.open(out) as src:
        tag = src.tags()["WSFUSION_SCALE"]
    assert tag.startswith("--scale s2; one scale for all 2 inputs") and "0..3000" in tag


def test_uint8_is_value_over_255(tmp_path, make_raster, smooth_image):
    a = make_raster(tmp_path / "a.tif", smooth_image(40, 40, seed=1))
    b = make_raster(tmp_path / "b.tif", smooth_image(40, 40, seed=2))
    view, rad = _views([a, b], "auto")
    assert rad.rule.startswith("uint8 as stored")
    with rasterio.open(a) as src:
        np.testing.assert_allclose(view[0], src.read().astype(np.float32) / 255, atol=1e-6)
