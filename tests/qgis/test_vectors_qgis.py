"""The "Vectors (GeoPackage)" output of wsfusion:fuse in real headless QGIS: the GeoPackage is
written, Processing loads one layer per class, styled in the model's class colours."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProject,
    QgsVectorLayer,
)

SAMPLE = Path(__file__).resolve().parents[2] / "wsfusion_core" / "data" / "sample" / "banepa"


def test_vectors_are_written_loaded_per_class_and_styled(plugin, tmp_path):
    import processing
    from processing.gui.Postprocessing import handleAlgorithmResults

    from wsfusion_core.classes import CLASS_COLOURS, CLASS_NAMES
    from wsfusion_core.vectors import read_features

    project = QgsProject.instance()
    project.clear()
    context = QgsProcessingContext()
    context.setProject(project)
    feedback = QgsProcessingFeedback()
    vec = tmp_path / "v.gpkg"
    inputs = [shutil.copy(SAMPLE / f"input_{i}.tif", tmp_path) for i in (1, 2)]  # QGIS may
    # write .aux.xml statistics beside the layers it loads: never into the package
    params = {"INPUTS": [str(p) for p in inputs],
              "OUTPUT": QgsProcessingOutputLayerDefinition(str(tmp_path / "f.tif"), project),
              "VECTORS": QgsProcessingOutputLayerDefinition(str(vec), project),
              "MIN_AREA": 10.0, "DEVICE": 1}
    results = processing.run("wsfusion:fuse", params, feedback=feedback, context=context)
    assert Path(results["VECTORS"]) == vec and vec.is_file()
    buildings = read_features(vec, "building")
    assert buildings and all(f["area_m2"] >= 10.0 for f in buildings)

    assert handleAlgorithmResults(plugin.provider.algorithm("fuse"), context, feedback,
                                  showResults=False, parameters=params)
    layers = {layer.name(): layer for layer in project.mapLayers().values()
              if isinstance(layer, QgsVectorLayer)}
    assert set(layers) == {"building", "road"}
    for name, layer in layers.items():
        assert layer.isValid() and layer.crs().authid() == "EPSG:32645"
        assert layer.source().endswith(f"layername={name}")
        colour = CLASS_COLOURS[CLASS_NAMES.index(name)]
        symbol = layer.renderer().symbol()
        assert symbol.color().getRgb()[:3] == tuple(colour)
    assert layers["building"].featureCount() == len(buildings)
    areas = sorted(f["area_m2"] for f in layers["building"].getFeatures())
    assert areas == pytest.approx(sorted(f["area_m2"] for f in buildings))
    project.clear()


def test_vectors_must_be_a_geopackage(plugin, tmp_path):
    import processing

    (tmp_path / "in").mkdir()
    image = shutil.copy(SAMPLE / "input_1.tif", tmp_path / "in")
    params = {"INPUTS": [str(image)], "OUTPUT": str(tmp_path / "f.tif"),
              "VECTORS": str(tmp_path / "v.shp"), "DEVICE": 1}
    with pytest.raises(QgsProcessingException, match="GeoPackage"):
        processing.run("wsfusion:fuse", params)
    assert [p.name for p in tmp_path.iterdir()] == ["in"]
