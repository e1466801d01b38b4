"""The plugin loads like QGIS loads it, registers its provider, and stays light at start-up."""

from __future__ import annotations

from helpers import run_python
from qgis.core import QgsApplication, QgsProcessingAlgorithm, QgsProcessingParameterDefinition


def test_provider_and_algorithms_registered(plugin):
    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("wsfusion")
    assert provider is not None
    assert provider.isActive()
    assert not provider.icon().isNull()
    ids = {alg.id() for alg in provider.algorithms()}
    assert {"wsfusion:fuse", "wsfusion:install_dependencies"} <= ids
    assert registry.algorithmById("wsfusion:fuse").displayName() == "Fuse overhead images"
    assert provider.supportedOutputRasterLayerExtensions() == ["tif"]


def test_fuse_parameters(plugin):
    alg = QgsApplication.processingRegistry().createAlgorithmById("wsfusion:fuse")
    names = [p.name() for p in alg.parameterDefinitions()]
    for required in ("INPUTS", "OUTPUT", "SEGMENTATION", "QUALITY", "METHOD", "WEIGHTS", "DEVICE",
                     "OVERLAP", "BATCH_SIZE", "BANDS", "REFERENCE"):
        assert required in names
    defs = {p.name(): p for p in alg.parameterDefinitions()}
    for optional in ("SEGMENTATION", "QUALITY"):
        assert defs[optional].flags() & QgsProcessingParameterDefinition.FlagOptional
        assert not defs[optional].createByDefault()
    for advanced in ("OVERLAP", "BATCH_SIZE", "BANDS", "REFERENCE"):
        assert defs[advanced].flags() & QgsProcessingParameterDefinition.FlagAdvanced
    assert defs["METHOD"].options()[1:] == ["mean", "median", "min-blue"]  # indices kept
    assert defs["DEVICE"].options() == ["auto", "cpu", "cuda"]
    # Runs in Processing's background task; usable in batch mode and the modeler.
    assert not alg.flags() & QgsProcessingAlgorithm.FlagNoThreading
    assert alg.flags() & QgsProcessingAlgorithm.FlagSupportsBatch
    assert alg.flags() & QgsProcessingAlgorithm.FlagCanCancel
    help_text = alg.shortHelpString()
    for words in ("weighted average", "Segmentation", "quality weights", "nodata", "GeoTIFF"):
        assert words in help_text


def test_unload_and_reload(plugin):
    """Reloading the plugin (Plugin Reloader, upgrades) must leave exactly one provider."""
    registry = QgsApplication.processingRegistry()
    plugin.unload()
    assert registry.providerById("wsfusion") is None
    assert plugin.actions == []
    plugin.initGui()
    assert registry.providerById("wsfusion") is not None
    assert registry.algorithmById("wsfusion:fuse") is not None


def test_loading_the_plugin_does_not_import_torch():
    code = ("import sys, qgis_plugin, qgis_plugin.plugin, qgis_plugin.provider, "
            "qgis_plugin.fuse_algorithm, qgis_plugin.install_algorithm\n"
            "heavy = [m for m in ('torch', 'rasterio', 'wsfusion_core.model')"
            " if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr


def test_dialog_builds_a_widget_for_every_parameter(plugin, monkeypatch):
    import processing.gui.ParametersPanel as panel
    from processing.gui.AlgorithmDialog import AlgorithmDialog

    # pytest-qgis's stub iface has no browser model; QGIS without an iface is what qgis_process
    # and the screenshot script see, and the panel supports it
    monkeypatch.setattr(panel, "iface", None)

    alg = QgsApplication.processingRegistry().createAlgorithmById("wsfusion:fuse")
    dialog = AlgorithmDialog(alg, parent=None)
    try:
        wrappers = dialog.mainWidget().wrappers
        for p in alg.parameterDefinitions():
            if p.isDestination():
                continue  # destinations get output widgets, not wrappers
            assert p.name() in wrappers and wrappers[p.name()] is not None
    finally:
        dialog.deleteLater()


def test_usable_in_a_processing_model(plugin, scene_paths, tmp_path):
    """The graphical modeler path: fuse as a child of a model, inputs from model parameters."""
    import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterMultipleLayers,
        QgsProcessingParameterRasterDestination,
    )

    model = QgsProcessingModelAlgorithm("fuse model", "tests")
    model.addModelParameter(QgsProcessingParameterMultipleLayers("images", "images", 3),
                            QgsProcessingModelParameter("images"))
    child = QgsProcessingModelChildAlgorithm("wsfusion:fuse")
    child.setChildId("fuse")
    child.addParameterSources("INPUTS", [QgsProcessingModelChildParameterSource
                                         .fromModelParameter("images")])
    child.addParameterSources("METHOD", [QgsProcessingModelChildParameterSource
                                         .fromStaticValue(2)])
    output = QgsProcessingModelOutput("fused", "fused")
    output.setChildOutputName("OUTPUT")
    child.setModelOutputs({"fused": output})
    model.addChildAlgorithm(child)
    model.addModelParameter(QgsProcessingParameterRasterDestination("fuse:fused", "fused"),
                            QgsProcessingModelParameter("fuse:fused"))
    out = tmp_path / "model_out.tif"
    results = processing.run(model, {"images": [str(p) for p in scene_paths],
                                     "fuse:fused": str(out)})
    assert out.is_file() and str(out) in str(results["fuse:fused"])
