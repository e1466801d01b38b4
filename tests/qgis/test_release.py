"""What a QGIS user meets beyond the numbers, in real headless QGIS: styles taken from the model
and the file, RGB colour interpretation, batch mode without spurious warnings, the help, its URL
and the missing-package notice shown before Run."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np
import pytest
from helpers import write_raster
from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProject,
    QgsRasterLayer,
)

from qgis_plugin import dependencies


@pytest.fixture(scope="module")
def odd_class_weights(tmp_path_factory) -> Path:
    """A model whose metadata names other classes and colours than the shipped one."""
    import torch

    from wsfusion_core.model import FusionModel
    from wsfusion_core.weights import ModelInfo, save_weights

    torch.manual_seed(1)
    info = ModelInfo(tile_size=128, widths=[4, 8], name="odd-classes",
                     class_names=["background", "track", "hut", "pond"],
                     class_colours=[[10, 20, 30], [200, 100, 0], [0, 90, 180], [30, 200, 220]],
                     provenance={"note": "random init for plugin tests"},
                     training_resolutions_m=[1.0, 100.0])  # the 10 m test rasters pass
    model = FusionModel(num_classes=info.num_classes, widths=info.widths)
    return save_weights(tmp_path_factory.mktemp("odd") / "odd.safetensors", model, info)


def _context(project: QgsProject) -> QgsProcessingContext:
    context = QgsProcessingContext()
    context.setProject(project)
    return context


def test_segmentation_style_comes_from_the_model_metadata(plugin, scene_paths, odd_class_weights,
                                                          tmp_path):
    import processing
    from processing.gui.Postprocessing import handleAlgorithmResults

    project = QgsProject.instance()
    project.clear()
    context, feedback = _context(project), QgsProcessingFeedback()
    params = {"INPUTS": [str(p) for p in scene_paths], "WEIGHTS": str(odd_class_weights),
              "OUTPUT": QgsProcessingOutputLayerDefinition(str(tmp_path / "f.tif"), project),
              "SEGMENTATION": QgsProcessingOutputLayerDefinition(str(tmp_path / "s.tif"), project),
              "DEVICE": 1}
    processing.run("wsfusion:fuse", params, context=context, feedback=feedback)
    assert handleAlgorithmResults(plugin.provider.algorithm("fuse"), context, feedback,
                                  showResults=False, parameters=params)
    layer = next(la for la in project.mapLayers().values() if la.source().endswith("s.tif"))
    classes = layer.renderer().classes()
    assert [c.label for c in classes] == ["background", "track", "hut", "pond"]
    assert [c.color.getRgb()[:3] for c in classes] == [(10, 20, 30), (200, 100, 0),
                                                       (0, 90, 180), (30, 200, 220)]
    assert [c.color.alpha() for c in classes] == [0, 255, 255, 255]
    project.clear()


def test_fused_rgb_keeps_red_green_blue_and_leaves_extra_bands(plugin, tmp_path):
    """Inputs tagged R, G, B + an undefined 4th band (NIR): the output says the same."""
    import processing
    import rasterio
    from qgis.core import QgsRaster
    from rasterio.enums import ColorInterp

    rng = np.random.default_rng(4)
    paths = []
    for i in range(2):
        path = write_raster(tmp_path / f"rgbn{i}.tif",
                            rng.integers(1, 255, (4, 30, 40), dtype=np.uint8), nodata=0)
        with rasterio.open(path, "r+") as dst:
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue,
                               ColorInterp.undefined]
        paths.append(path)
    out = tmp_path / "fused.tif"
    processing.run("wsfusion:fuse", {"INPUTS": [str(p) for p in paths], "OUTPUT": str(out),
                                     "METHOD": 1})
    layer = QgsRasterLayer(str(out), "fused", "gdal")
    provider = layer.dataProvider()
    assert [provider.colorInterpretation(b) for b in range(1, 5)] == [
        QgsRaster.RedBand, QgsRaster.GreenBand, QgsRaster.BlueBand,
        QgsRaster.UndefinedColorInterpretation]


def test_batch_row_without_optional_outputs_reports_no_missing_layer(plugin, scene_paths,
                                                                     tmp_path):
    """Batch mode hands skipped optional outputs over as empty destinations that load into the
    project; Processing then listed them as '•' (an empty bullet) under 'not correctly
    generated'. The run must leave nothing to load but what it wrote."""
    from processing.gui.Postprocessing import handleAlgorithmResults

    project = QgsProject.instance()
    project.clear()
    context, feedback = _context(project), QgsProcessingFeedback()
    params = {"INPUTS": [str(p) for p in scene_paths], "METHOD": 1,
              "OUTPUT": QgsProcessingOutputLayerDefinition(str(tmp_path / "f.tif"), project),
              "SEGMENTATION": QgsProcessingOutputLayerDefinition("", project),
              "QUALITY": QgsProcessingOutputLayerDefinition("", project)}
    alg = plugin.provider.algorithm("fuse").create()
    results, ok = alg.run(params, context, feedback)
    assert ok, results
    assert list(context.layersToLoadOnCompletion()) == [str(tmp_path / "f.tif")]
    assert handleAlgorithmResults(alg, context, feedback, showResults=False, parameters=params)
    project.clear()


def test_help_url_opens_the_user_guide(plugin):
    for name in ("fuse", "install_dependencies"):
        url = plugin.provider.algorithm(name).helpUrl()
        assert url.startswith("file://"), url
        path = Path(url2pathname(urlparse(url).path))
        assert path.name == "qgis.md" and "Install Python dependencies" in path.read_text()


def test_help_text_matches_behaviour(plugin):
    text = plugin.provider.algorithm("fuse").shortHelpString()
    assert "Two or more" not in text and "ignored" not in text
    assert "One or more raster layers" in text and "Every band is fused and written" in text
    inputs = plugin.provider.algorithm("fuse").parameterDefinition("INPUTS")
    assert inputs.minimumNumberInputs() == 1


def test_missing_packages_are_named_before_run(plugin, scene_paths, tmp_path, monkeypatch):
    """The dialog's help panel names what is missing; checkParameterValues refuses the learned
    method but lets mean through when only torch-side packages are missing."""
    monkeypatch.setitem(dependencies.REQUIREMENTS, "wsfusion_absent_pkg",
                        ("wsfusion-absent-pkg", "1.0"))
    monkeypatch.setattr(dependencies, "private_dir", lambda settings_dir=None: tmp_path / "deps")
    alg = plugin.provider.algorithm("fuse")
    notice = alg.shortHelpString()
    assert notice.startswith("<p style='color:#b00020'><b>Missing Python packages: "
                             "wsfusion_absent_pkg.</b>")
    assert "median and min-blue can" in notice and "Install Python dependencies" in notice
    context = QgsProcessingContext()
    base = {"INPUTS": [str(p) for p in scene_paths], "OUTPUT": str(tmp_path / "o.tif")}
    ok, message = alg.checkParameterValues({**base, "METHOD": 0}, context)
    assert not ok and "wsfusion_absent_pkg" in message and "dependencies.py --target" in message
    ok, message = alg.checkParameterValues({**base, "METHOD": 1}, context)
    assert ok, message
    ok, message = alg.checkParameterValues(
        {**base, "METHOD": 1, "SEGMENTATION": str(tmp_path / "s.tif")}, context)
    assert not ok, "segmentation needs the model's packages even with mean"
    monkeypatch.setattr(dependencies, "COMPOSITE_MODULES", ("numpy", "wsfusion_absent_pkg"))
    assert "This algorithm cannot run" in alg.shortHelpString()


@pytest.mark.parametrize("alg_id", ["wsfusion:fuse", "wsfusion:install_dependencies"])
def test_labels_fit_the_dialog_at_its_default_size(plugin, alg_id, qgis_iface, monkeypatch):
    """Every parameter label (advanced ones included) fits the parameter panel of the dialog as
    QGIS opens it, so nothing is cut off and no sideways scrolling is needed."""
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.core import QgsApplication, QgsProcessingParameterDefinition
    from qgis.gui import QgsBrowserGuiModel
    from qgis.PyQt.QtGui import QFontMetrics
    from qgis.PyQt.QtWidgets import QApplication, QScrollArea

    browser = QgsBrowserGuiModel()  # pytest-qgis's stand-in iface has none; the panel needs one
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)
    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    dialog = AlgorithmDialog(alg, parent=None)
    dialog.show()
    for _ in range(10):
        QApplication.processEvents()
    try:
        area = max(dialog.findChildren(QScrollArea), key=lambda a: a.height())
        assert area.horizontalScrollBar().maximum() == 0
        metrics = QFontMetrics(area.widget().font())
        room = area.viewport().width()
        for p in alg.parameterDefinitions():
            optional = p.flags() & QgsProcessingParameterDefinition.FlagOptional
            label = p.description() + (" [optional]" if optional else "")
            assert metrics.horizontalAdvance(label) < room, (label, room)
    finally:
        dialog.close()


def test_missing_packages_are_announced_at_start_up(plugin, qgis_iface, monkeypatch):
    """A message bar item with an Install button, as soon as QGIS loads the plugin."""
    from qgis.PyQt.QtWidgets import QPushButton

    bar = qgis_iface.messageBar()
    before = len(bar.items())
    assert plugin.notify_missing() == [] and len(bar.items()) == before
    monkeypatch.setitem(dependencies.REQUIREMENTS, "wsfusion_absent_pkg",
                        ("wsfusion-absent-pkg", "1.0"))
    assert plugin.notify_missing() == ["wsfusion_absent_pkg"]
    items = bar.items()
    assert len(items) == before + 1
    item = items[-1]
    assert "wsfusion_absent_pkg" in item.text() and "median and min-blue work" in item.text()
    assert [b.text() for b in item.findChildren(QPushButton)] == ["Install…"]
    bar.clearWidgets()
