"""Issue 21 item 3: the segmentation resolution guard.

A class map is written only where the output pixels (metres, from the CRS) lie within 4x of
the ground resolutions the model was trained on (its metadata, else the shipped models'
provenance: 0.1-2 m). It fires on the shipped Sentinel-2 demo pair (10 m) and not on Banepa
(0.8 m); the fused image is written either way; an explicit flag forces the class map."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from helpers import save_random_weights
from rasterio.transform import from_origin

from wsfusion_core import cli, fuse
from wsfusion_core.errors import WeightsError
from wsfusion_core.grid import describe
from wsfusion_core.quicklook import quicklook
from wsfusion_core.report import inspect
from wsfusion_core.resolution import (
    DEFAULT_TRAINING_RESOLUTIONS_M,
    pixel_size_m,
    segmentation_refusal,
    training_resolutions,
)
from wsfusion_core.weights import ModelInfo, read_info, resolve_weights

SAMPLE = Path(cli.__file__).resolve().parent / "data" / "sample"
S2 = sorted((SAMPLE / "s2_pair").glob("input_*.tif"))
BANEPA = sorted((SAMPLE / "banepa").glob("input_*.tif"))


def _grid(path):
    return describe(path).grid()


def test_pixel_size_in_metres_from_the_crs(tmp_path, make_raster):
    img = np.full((3, 8, 8), 100, np.uint8)
    utm = make_raster(tmp_path / "utm.tif", img, crs="EPSG:32618",
                      transform=from_origin(500000, 4000000, 10, 10))
    assert pixel_size_m(_grid(utm)) == pytest.approx(10.0)
    # US survey feet (New York Long Island): 3.2808 ftUS = 1 m
    feet = make_raster(tmp_path / "ft.tif", img, crs="EPSG:2263",
                       transform=from_origin(1000000, 200000, 3.2808333, 3.2808333))
    assert pixel_size_m(_grid(feet)) == pytest.approx(1.0, rel=1e-4)
    # degrees: 1e-5 deg at the equator is about 1.11 m on both axes; at 60 N the east-west
    # side halves, so the geometric mean is about 1.11 * sqrt(0.5)
    eq = make_raster(tmp_path / "eq.tif", img, crs="EPSG:4326",
                     transform=from_origin(10.0, 0.00004, 1e-5, 1e-5))
    assert pixel_size_m(_grid(eq)) == pytest.approx(1.108, rel=0.01)
    north = make_raster(tmp_path / "n.tif", img, crs="EPSG:4326",
                        transform=from_origin(10.0, 60.00004, 1e-5, 1e-5))
    assert pixel_size_m(_grid(north)) == pytest.approx(1.11 * 0.5 ** 0.5, rel=0.01)
    bare = make_raster(tmp_path / "bare.tif", img, crs=None,
                       transform=from_origin(0, 8, 1, 1))
    assert pixel_size_m(_grid(bare)) is None


def test_four_times_outside_is_far():
    info = ModelInfo(training_resolutions_m=[0.5, 2.0])

    class G:  # a grid is CRS + transform + size
        def __init__(self, res):
            self.crs = rasterio.crs.CRS.from_epsg(32618)
            self.transform = from_origin(500000, 4000000, res, res)
            self.width = self.height = 100

    assert segmentation_refusal(G(8.0), info) is None  # exactly 4x: still allowed
    assert segmentation_refusal(G(0.125), info) is None
    coarse = segmentation_refusal(G(8.5), info)
    assert coarse and "8.5 m" in coarse and "coarser" in coarse and "0.5-2 m" in coarse
    fine = segmentation_refusal(G(0.12), info)
    assert fine and "finer" in fine
    assert "\n" not in coarse


def test_metadata_field_is_validated_and_optional(tmp_path):
    assert training_resolutions(ModelInfo()) == (*DEFAULT_TRAINING_RESOLUTIONS_M, False)
    assert training_resolutions(ModelInfo(training_resolutions_m=[0.3, 1.0])) == (0.3, 1.0, True)
    good = save_random_weights(tmp_path / "good.safetensors")
    assert read_info(good).training_resolutions_m == [1.0, 100.0]  # through the real file
    text = ModelInfo().to_json()
    assert json.loads(text)["training_resolutions_m"] is None
    assert ModelInfo.from_json(text).training_resolutions_m is None  # null: not recorded
    for bad in ([2.0, 0.1], [0, 1], ["a", 1], [1.0], "1-2"):
        meta = json.loads(text) | {"training_resolutions_m": bad}
        with pytest.raises(WeightsError, match="training_resolutions_m"):
            ModelInfo.from_json(json.dumps(meta))


def test_shipped_model_guard_fires_on_sentinel2_not_on_banepa():
    info = read_info(resolve_weights(None))
    assert segmentation_refusal(_grid(S2[0]), info) is not None
    assert segmentation_refusal(_grid(BANEPA[0]), info) is None


def test_fuse_leaves_the_class_map_out_and_says_why(tmp_path):
    seg = tmp_path / "seg.tif"
    res = fuse([str(p) for p in S2], tmp_path / "fused.tif", segmentation=seg, scale="s2",
               device="cpu")
    assert res.segmentation is None and not seg.exists()
    assert len(res.warnings) == 1 and res.warnings[0].startswith("no class map written")
    with rasterio.open(res.output) as ds:  # the fused image is written as ever
        assert ds.read(1).any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fused.tif"]  # no temp files
    forced = fuse([str(p) for p in S2], tmp_path / "fused2.tif", segmentation=seg,
                  scale="s2", device="cpu", force_segmentation=True)
    assert forced.segmentation == seg and seg.is_file() and forced.warnings == ()


def test_fuse_writes_the_class_map_on_banepa(tmp_path):
    res = fuse([str(p) for p in BANEPA], tmp_path / "fused.tif", segmentation=tmp_path / "s.tif",
               method="median", device="cpu")
    assert res.segmentation is not None and res.segmentation.is_file() and res.warnings == ()


def test_cli_warns_in_one_line_and_force_flag(tmp_path):
    out, seg = tmp_path / "f.tif", tmp_path / "s.tif"
    base = ["fuse", *map(str, S2), "-o", str(out), "--segmentation", str(seg), "--scale", "s2",
            "--method", "median", "--device", "cpu", "-q"]
    res = CliRunner().invoke(cli.main, base)
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("Warning:")]
    assert len(warnings) == 1 and "--force-segmentation" in warnings[0], res.stderr
    assert out.is_file() and not seg.exists() and "segmentation:" not in res.stdout
    forced = CliRunner().invoke(cli.main, base + ["--overwrite", "--force-segmentation"])
    assert forced.exit_code == 0, forced.output
    assert seg.is_file() and "Warning" not in forced.stderr


def test_info_says_what_fuse_would_do():
    assert "segmentation: no class map written" in inspect([str(p) for p in S2]).to_text()
    text = inspect([str(p) for p in BANEPA]).to_text()
    assert "segmentation: pixels of 0.8 m" in text and ": written" in text


def test_quicklook_shows_the_reason_instead_of_an_empty_panel(tmp_path):
    from PIL import Image

    res = fuse([str(p) for p in S2], tmp_path / "fused.tif", segmentation=tmp_path / "s.tif",
               method="median")
    png = quicklook(S2, res.output, tmp_path / "look.png", scale="s2",
                    segmentation_note=res.warnings[0])
    plain = quicklook(S2, res.output, tmp_path / "plain.png", scale="s2")
    img, bare = np.asarray(Image.open(png)), np.asarray(Image.open(plain))
    assert img.shape[0] > bare.shape[0]  # a second row: the note's panel
    panel = img[bare.shape[0]:, 2 * (img.shape[1] // 3):]  # below fused (third column)
    grey = (panel == 225).all(axis=-1).mean()
    dark = (panel < 120).all(axis=-1).mean()
    assert grey > 0.5 and dark > 0.005  # light panel with text on it


def test_the_guard_leaves_the_vectors_out_too(tmp_path):
    """The vectors are the class map as polygons: the guard leaves them out with it."""
    gpkg = tmp_path / "classes.gpkg"
    res = fuse([str(p) for p in S2], tmp_path / "fused.tif", vectors=gpkg, scale="s2",
               method="median", device="cpu")
    assert res.vectors is None and not gpkg.exists() and len(res.warnings) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fused.tif"]
