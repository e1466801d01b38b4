"""Best-pixel selection from the QGIS algorithm, in real headless QGIS: the "Selection" enum and
the optional "Input index" output reach the core, the index layer is loaded by Processing's own
post-processing and styled with the inputs' names, and median + Best is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import write_raster
from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProject,
)


def _run(params: dict, feedback=None, context=None) -> dict:
    import processing

    return processing.run("wsfusion:fuse", params, feedback=feedback, context=context)


def _dates(folder: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Three uint16 dates with nodata holes, one corner valid in none."""
    rng = np.random.default_rng(4)
    data = rng.integers(1, 4000, size=(3, 3, 60, 70), dtype=np.uint16)
    valid = np.ones((3, 60, 70), bool)
    valid[0, 5:30, 10:40] = False
    valid[1, 10:20, 15:25] = False  # inside date 1's hole: only date 3 there
    valid[:, -6:, -6:] = False
    paths = []
    for i in range(3):
        data[i][:, ~valid[i]] = 0
        paths.append(write_raster(folder / f"2021-0{i + 1}-01.tif", data[i], nodata=0))
    return paths, data, valid


def test_best_selection_writes_the_input_index_styled_with_the_dates(plugin, tmp_path):
    import rasterio
    from processing.gui.Postprocessing import handleAlgorithmResults

    from wsfusion_core.options import METHODS, SELECTIONS

    inputs, data, valid = _dates(tmp_path)
    project = QgsProject.instance()
    project.clear()
    context = QgsProcessingContext()
    context.setProject(project)
    feedback = QgsProcessingFeedback()

    def dest(name: str) -> QgsProcessingOutputLayerDefinition:  # what the dialog passes
        return QgsProcessingOutputLayerDefinition(str(tmp_path / name), project)

    params = {"INPUTS": [str(p) for p in inputs], "OUTPUT": dest("best.tif"),
              "METHOD": METHODS.index("mean"), "SELECTION": SELECTIONS.index("best"),
              "SELECTION_INDEX": dest("index.tif")}
    results = _run(params, feedback, context)
    assert Path(results["SELECTION_INDEX"]) == tmp_path / "index.tif"

    # mean's equal weights: the first valid date, copied bit for bit
    want = np.where(valid.any(axis=0), valid.argmax(axis=0) + 1, 0)
    with rasterio.open(tmp_path / "index.tif") as idx, rasterio.open(tmp_path / "best.tif") as o:
        index = idx.read(1)
        assert json.loads(idx.tags()["WSFUSION_INDEX_INPUTS"]) == [p.name for p in inputs]
        fused = o.read()
    np.testing.assert_array_equal(index, want)
    chosen = np.take_along_axis(data, np.maximum(want - 1, 0)[None, None], axis=0)[0]
    chosen[:, want == 0] = 0
    assert fused.tobytes() == chosen.tobytes()

    # Processing loads the index; its legend names the dates in input order
    assert handleAlgorithmResults(plugin.provider.algorithm("fuse"), context, feedback,
                                  showResults=False, parameters=params)
    layers = {Path(layer.source()).name: layer for layer in project.mapLayers().values()}
    assert {"best.tif", "index.tif"} <= set(layers)
    renderer = layers["index.tif"].renderer()
    assert renderer.type() == "paletted"
    assert [(c.value, c.label) for c in renderer.classes()] == [
        (i, p.name) for i, p in enumerate(inputs, start=1)]
    project.clear()


def test_best_with_median_is_refused_and_nothing_is_written(plugin, tmp_path):
    from wsfusion_core.options import METHODS, SELECTIONS

    inputs, _data, _valid = _dates(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(QgsProcessingException, match="the median has none"):
        _run({"INPUTS": [str(p) for p in inputs], "OUTPUT": str(tmp_path / "out.tif"),
              "METHOD": METHODS.index("median"), "SELECTION": SELECTIONS.index("best"),
              "SELECTION_INDEX": str(tmp_path / "index.tif")})
    assert sorted(p.name for p in tmp_path.iterdir()) == before
