"""Issue 21 in real QGIS: the sensor-mask parameters (the same result as the core) and the
segmentation resolution guard's force parameter and warning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import write_raster
from qgis.core import QgsProcessingException, QgsProcessingFeedback
from rasterio.transform import from_origin

from wsfusion_core import fuse
from wsfusion_core.masks import MaskRule

SAMPLE = Path(__file__).resolve().parents[2] / "wsfusion_core" / "data" / "sample"


def _run(params: dict, feedback: QgsProcessingFeedback | None = None) -> dict:
    import processing

    return processing.run("wsfusion:fuse", params, feedback=feedback)


def _read(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


class Warnings(QgsProcessingFeedback):
    def __init__(self) -> None:
        super().__init__()
        self.warnings: list[str] = []

    def pushWarning(self, warning: str) -> None:  # noqa: N802
        self.warnings.append(warning)
        super().pushWarning(warning)


@pytest.fixture
def scl_masks(tmp_path, scene_paths):
    """An SCL-like mask per scene input: 20 m cells (the inputs are 10 m), classes 0..11."""
    rng = np.random.default_rng(4)
    out = []
    for i in range(len(scene_paths)):
        scl = rng.integers(0, 12, (40, 48), dtype=np.uint8)
        out.append(write_raster(tmp_path / f"scl{i}.tif", scl,
                                transform=from_origin(500000.0, 4000000.0, 20, 20)))
    return out


@pytest.mark.parametrize("rule, numbers", [(0, ""), (2, "0,1,3,8,9,10")],
                         ids=["s2-scl preset", "class values"])
def test_mask_parameters_match_the_core(plugin, scene_paths, scl_masks, tmp_path, rule,
                                        numbers):
    out, q = tmp_path / "qgis.tif", tmp_path / "qgis_q.tif"
    _run({"INPUTS": [str(p) for p in scene_paths], "OUTPUT": str(out), "QUALITY": str(q),
          "METHOD": 1, "MASKS": [str(m) for m in scl_masks], "MASK_RULE": rule,
          "MASK_NUMBERS": numbers})
    fuse(scene_paths, tmp_path / "core.tif", quality=tmp_path / "core_q.tif", method="mean",
         masks=scl_masks, mask_rule="s2-scl")
    assert np.array_equal(_read(out), _read(tmp_path / "core.tif"))
    weights = _read(q)
    assert np.array_equal(weights, _read(tmp_path / "core_q.tif"), equal_nan=True)
    with rasterio.open(scl_masks[0]) as m:
        flagged = np.isin(np.kron(m.read(1), np.ones((2, 2), np.uint8)), (0, 1, 3, 8, 9, 10))
    assert (weights[0][flagged & np.isfinite(weights[0])] == 0).all()
    assert flagged.any()


def test_mask_fallback_parameter(plugin, scene_paths, tmp_path):
    """Every input masked in one block: nodata there, or with the fallback the least-masked
    input (the core's result)."""
    masks = []
    for i in range(3):
        m = np.zeros((80, 96), np.uint8)
        m[:20, :30] = 1
        m[20:, :] = 1 if i == 2 else 0  # input 3 the most masked
        masks.append(write_raster(tmp_path / f"m{i}.tif", m))
    base = {"INPUTS": [str(p) for p in scene_paths], "METHOD": 1,
            "MASKS": [str(m) for m in masks], "MASK_RULE": 2, "MASK_NUMBERS": "1"}
    _run({**base, "OUTPUT": str(tmp_path / "plain.tif")})
    _run({**base, "OUTPUT": str(tmp_path / "fb.tif"), "MASK_FALLBACK": True})
    fuse(scene_paths, tmp_path / "core.tif", method="mean", masks=masks,
         mask_rule=MaskRule(values=(1,)), mask_fallback="least-masked")
    assert (_read(tmp_path / "plain.tif")[:, :20, :30] == 0).all()
    fb = _read(tmp_path / "fb.tif")
    assert np.array_equal(fb, _read(tmp_path / "core.tif"))
    assert (fb[:, :20, :30] != 0).any()


def test_mask_count_and_rule_errors(plugin, scene_paths, scl_masks, tmp_path):
    base = {"INPUTS": [str(p) for p in scene_paths], "OUTPUT": str(tmp_path / "o.tif"),
            "METHOD": 1}
    with pytest.raises(QgsProcessingException, match="2 mask raster"):
        _run({**base, "MASKS": [str(m) for m in scl_masks[:2]]})
    with pytest.raises(QgsProcessingException, match="bit numbers"):
        _run({**base, "MASKS": [str(m) for m in scl_masks], "MASK_RULE": 3,
              "MASK_NUMBERS": "x"})
    assert not (tmp_path / "o.tif").exists()


def test_segmentation_guard_warns_and_force_writes(plugin, tmp_path):
    import shutil

    # copies: QGIS writes .aux.xml statistics beside the rasters it reads
    inputs = [str(shutil.copy(p, tmp_path / p.name))
              for p in sorted((SAMPLE / "s2_pair").glob("input_*.tif"))]
    seg = tmp_path / "seg.tif"
    feedback = Warnings()
    res = _run({"INPUTS": inputs, "OUTPUT": str(tmp_path / "f.tif"), "SEGMENTATION": str(seg),
                "METHOD": 2, "SCALE": "s2", "DEVICE": 1}, feedback)
    assert not res.get("SEGMENTATION") and not seg.exists()
    assert any(w.startswith("no class map written") for w in feedback.warnings)
    res = _run({"INPUTS": inputs, "OUTPUT": str(tmp_path / "f2.tif"), "SEGMENTATION": str(seg),
                "METHOD": 2, "SCALE": "s2", "DEVICE": 1, "FORCE_SEGMENTATION": True})
    assert seg.is_file()
