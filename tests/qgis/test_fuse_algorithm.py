"""processing.run("wsfusion:fuse") on real GeoTIFFs in real QGIS: outputs, grid, cancel, errors."""

from __future__ import annotations

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
    QgsRasterLayer,
)


def _run(params: dict, feedback: QgsProcessingFeedback | None = None,
         context: QgsProcessingContext | None = None) -> dict:
    import processing

    return processing.run("wsfusion:fuse", params, feedback=feedback, context=context)


def _path(value) -> Path:
    return Path(value.source() if isinstance(value, QgsRasterLayer) else value)


def _grid(path: Path):
    import rasterio

    with rasterio.open(path) as src:
        return src.crs, src.transform, src.width, src.height, src.count, src.dtypes


@pytest.mark.parametrize("method", [0, 1, 2], ids=["learned", "mean", "median"])
def test_methods_write_fused_image_on_the_input_grid(plugin, scene_paths, tiny_weights, tmp_path,
                                                     method):
    out = tmp_path / "fused.tif"
    results = _run({"INPUTS": [str(p) for p in scene_paths], "OUTPUT": str(out),
                    "METHOD": method, "WEIGHTS": str(tiny_weights), "DEVICE": 1})
    assert _path(results["OUTPUT"]) == out and out.is_file()
    crs, transform, width, height, count, dtypes = _grid(out)
    ref = _grid(scene_paths[0])
    assert (crs, transform, width, height) == ref[:4]
    assert count == 3
    # optional outputs were not asked for: none written, none reported
    assert not results.get("SEGMENTATION") and not results.get("QUALITY")
    assert sorted(p.name for p in tmp_path.glob("*.tif")) == ["a.tif", "b.tif", "c.tif",
                                                               "fused.tif"]
    import rasterio

    with rasterio.open(out) as src:
        data = src.read()
    assert np.isfinite(data.astype(float)).all() and data.max() > 0


def test_mean_of_identical_inputs_is_the_input(plugin, tmp_path):
    """mean/median of copies must give the image back: checks bands and grid go through intact."""
    rng = np.random.default_rng(1)
    img = rng.integers(1, 255, size=(3, 40, 50), dtype=np.uint8)
    paths = [write_raster(tmp_path / f"{i}.tif", img, nodata=0) for i in range(2)]
    out = tmp_path / "mean.tif"
    _run({"INPUTS": [str(p) for p in paths], "OUTPUT": str(out), "METHOD": 1, "COG": True})
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    with rasterio.open(out) as src:
        assert np.abs(src.read().astype(int) - img.astype(int)).max() <= 1
    assert cog_validate(str(out))[0]


def test_min_blue_is_offered_from_the_core_list(plugin, tmp_path):
    """The dialog's methods are wsfusion_core.options.METHODS: min-blue takes every band from
    the input with the lower blue (band 3) and its quality output is the 0/1 choice."""
    import rasterio

    from wsfusion_core.options import METHODS

    rng = np.random.default_rng(2)
    a = rng.integers(1, 255, size=(3, 30, 40), dtype=np.uint8)
    b = rng.integers(1, 255, size=(3, 30, 40), dtype=np.uint8)
    paths = [write_raster(tmp_path / f"{i}.tif", x, nodata=0) for i, x in enumerate((a, b))]
    out, q = tmp_path / "minblue.tif", tmp_path / "chosen.tif"
    _run({"INPUTS": [str(p) for p in paths], "OUTPUT": str(out), "QUALITY": str(q),
          "METHOD": METHODS.index("min-blue")})
    first = (a[2] < b[2]) | ((a[2] == b[2]) & ((a[0] < b[0]) | ((a[0] == b[0]) & (a[1] <= b[1]))))
    with rasterio.open(out) as src, rasterio.open(q) as qs:
        np.testing.assert_array_equal(src.read(), np.where(first, a, b))
        chosen = qs.read()
    untied = ~(a == b).all(axis=0)  # equal in every band: both get 0.5
    np.testing.assert_array_equal(chosen[0][untied], first[untied].astype(np.float32))
    np.testing.assert_array_equal(chosen.sum(axis=0), 1.0)


def test_segmentation_and_quality_outputs_and_style(plugin, scene_paths, tiny_weights, tmp_path):
    from processing.gui.Postprocessing import handleAlgorithmResults

    from qgis_plugin.fuse_algorithm import apply_segmentation_style  # noqa: F401 (same module)
    from wsfusion_core.classes import CLASS_COLOURS, CLASS_NAMES, SEGMENTATION_NODATA

    project = QgsProject.instance()
    project.clear()
    context = QgsProcessingContext()
    context.setProject(project)
    feedback = QgsProcessingFeedback()
    messages: list[str] = []
    feedback.pushInfo = lambda text: messages.append(text)  # what the user reads in the log
    def dest(name: str) -> QgsProcessingOutputLayerDefinition:  # what the dialog passes
        return QgsProcessingOutputLayerDefinition(str(tmp_path / name), project)

    params = {"INPUTS": [str(p) for p in scene_paths], "OUTPUT": dest("f.tif"),
              "SEGMENTATION": dest("seg.tif"), "QUALITY": dest("q.tif"),
              "WEIGHTS": str(tiny_weights), "DEVICE": 0, "OVERLAP": 8, "BATCH_SIZE": 2}
    results = _run(params, feedback, context)

    import rasterio

    ref = _grid(scene_paths[0])
    with rasterio.open(_path(results["SEGMENTATION"])) as seg:
        assert (seg.crs, seg.transform, seg.width, seg.height) == ref[:4]
        assert seg.count == 1 and seg.dtypes[0] == "uint8"
        values = set(np.unique(seg.read(1)).tolist())
        assert values <= set(range(len(CLASS_NAMES))) | {SEGMENTATION_NODATA}
    with rasterio.open(_path(results["QUALITY"])) as q:
        assert (q.crs, q.transform) == ref[:2]
        assert q.count == len(scene_paths) and q.dtypes[0] == "float32"
        w = q.read()
    covered = w.sum(axis=0) > 0
    assert covered.any()
    np.testing.assert_allclose(w.sum(axis=0)[covered], 1.0, atol=1e-3)
    # the nodata hole in b.tif gets weight exactly 0
    assert np.all(w[1, 50:70, 5:45] == 0)
    assert any("cpu" in m.lower() for m in messages), messages  # device reported
    assert any("tiny-test" in m for m in messages), messages  # model reported

    # Processing's own post-processing loads the outputs and styles the segmentation.
    assert handleAlgorithmResults(plugin.provider.algorithm("fuse"), context, feedback,
                                  showResults=False, parameters=params)
    layers = {Path(layer.source()).name: layer for layer in project.mapLayers().values()}
    assert {"f.tif", "seg.tif", "q.tif"} <= set(layers)
    renderer = layers["seg.tif"].renderer()
    assert renderer.type() == "paletted"
    assert [c.label for c in renderer.classes()] == list(CLASS_NAMES)
    assert [c.color.getRgb()[:3] for c in renderer.classes()] == [tuple(c) for c in CLASS_COLOURS]
    # the background is transparent: roads and buildings show over the imagery
    assert [c.color.alpha() for c in renderer.classes()] == [0, 255, 255]
    project.clear()


def test_cancel_after_first_progress_leaves_no_output(plugin, tiny_weights, tmp_path):
    rng = np.random.default_rng(2)
    scene_paths = [write_raster(tmp_path / f"{n}.tif",
                                rng.integers(1, 255, size=(3, 260, 300), dtype=np.uint8), nodata=0)
                   for n in "abc"]  # several tiles, so there is something left to cancel
    feedback = QgsProcessingFeedback()
    reports: list[float] = []

    def on_progress(value: float) -> None:
        reports.append(value)
        feedback.cancel()

    feedback.progressChanged.connect(on_progress)
    out = tmp_path / "cancelled.tif"
    results = _run({"INPUTS": [str(p) for p in scene_paths], "OUTPUT": str(out),
                    "SEGMENTATION": str(tmp_path / "seg.tif"), "WEIGHTS": str(tiny_weights),
                    "DEVICE": 1, "BATCH_SIZE": 1, "OVERLAP": 0}, feedback)
    assert reports, "the core never reported progress"
    assert len(reports) == 1 and reports[0] < 100, reports  # it stopped at the first check
    assert not results.get("OUTPUT")
    # (QGIS itself writes GDAL .aux.xml side-cars when it opens the inputs as layers)
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".aux.xml"))
    assert left == ["a.tif", "b.tif", "c.tif"]


def test_unreadable_file_is_named(plugin, scene_paths, tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"this is not a GeoTIFF")
    with pytest.raises(QgsProcessingException, match="broken"):
        _run({"INPUTS": [str(scene_paths[0]), str(bad)], "OUTPUT": str(tmp_path / "o.tif")})
    assert not (tmp_path / "o.tif").exists()


def test_missing_file_is_named(plugin, scene_paths, tmp_path):
    with pytest.raises(QgsProcessingException, match="nothere"):
        _run({"INPUTS": [str(scene_paths[0]), str(tmp_path / "nothere.tif")],
              "OUTPUT": str(tmp_path / "o.tif")})


def test_web_layer_is_refused_by_name(plugin, scene_paths, tmp_path):
    xyz = QgsRasterLayer("type=xyz&url=https://tile.openstreetmap.org/{z}/{x}/{y}.png&zmax=19&zmin=0",
                         "OSM tiles", "wms")
    if not xyz.isValid():
        pytest.skip("the WMS/XYZ provider is not available in this QGIS")
    QgsProject.instance().addMapLayer(xyz)
    try:
        with pytest.raises(QgsProcessingException, match="OSM tiles.*not a local raster file"):
            _run({"INPUTS": [str(scene_paths[0]), xyz.id()], "OUTPUT": str(tmp_path / "o.tif")})
    finally:
        QgsProject.instance().removeMapLayer(xyz.id())


def test_memory_layer_is_refused_by_name(plugin, scene_paths, tmp_path):
    from qgis.core import QgsVectorLayer

    memory = QgsVectorLayer("Point?crs=EPSG:32618", "scratch points", "memory")
    assert memory.isValid()
    QgsProject.instance().addMapLayer(memory)
    try:
        with pytest.raises(QgsProcessingException, match="scratch points"):
            _run({"INPUTS": [str(scene_paths[0]), memory.id()],
                  "OUTPUT": str(tmp_path / "o.tif")})
    finally:
        QgsProject.instance().removeMapLayer(memory.id())
    assert not (tmp_path / "o.tif").exists()


def test_bad_bands_and_output_format(plugin, scene_paths, tiny_weights, tmp_path):
    base = {"INPUTS": [str(p) for p in scene_paths], "METHOD": 1}
    with pytest.raises(QgsProcessingException, match="Bands 'red'"):
        _run({**base, "OUTPUT": str(tmp_path / "o.tif"), "BANDS": "red"})
    with pytest.raises(QgsProcessingException, match="GeoTIFF"):
        _run({**base, "OUTPUT": str(tmp_path / "o.png")})


def test_core_errors_become_processing_exceptions(plugin, scene_paths, tmp_path):
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"not weights")
    with pytest.raises(QgsProcessingException, match="bogus.safetensors"):
        _run({"INPUTS": [str(p) for p in scene_paths], "OUTPUT": str(tmp_path / "o.tif"),
              "WEIGHTS": str(bogus), "DEVICE": 1})
    assert not (tmp_path / "o.tif").exists()


def test_missing_dependency_gives_install_command(plugin, scene_paths, tmp_path, monkeypatch):
    from qgis_plugin import dependencies

    monkeypatch.setitem(dependencies.REQUIREMENTS, "wsfusion_absent_pkg",
                        ("wsfusion-absent-pkg", "1.0"))
    monkeypatch.setattr(dependencies, "private_dir", lambda settings_dir=None: tmp_path / "deps")
    with pytest.raises(QgsProcessingException) as info:
        _run({"INPUTS": [str(p) for p in scene_paths], "OUTPUT": str(tmp_path / "o.tif"),
              "METHOD": 0})
    msg = str(info.value)
    assert "wsfusion_absent_pkg" in msg and "Install Python dependencies" in msg
    # the exact terminal command: this Python running the plugin's installer into the folder
    assert f"dependencies.py --target {tmp_path / 'deps'}" in msg
    assert dependencies.python_executable() in msg
    assert not (tmp_path / "o.tif").exists()


def test_scale_parameter_reaches_the_core(plugin, scene_paths, tiny_weights, tmp_path):
    """The Scale parameter goes through the core's one parser: a bad value is one clear error,
    a good one is the rule written in the output tags."""
    import rasterio

    base = {"INPUTS": [str(p) for p in scene_paths], "WEIGHTS": str(tiny_weights), "DEVICE": 1}
    with pytest.raises(QgsProcessingException, match="--scale 'bright' not understood"):
        _run({**base, "OUTPUT": str(tmp_path / "o.tif"), "SCALE": "bright"})
    assert not (tmp_path / "o.tif").exists()
    out = tmp_path / "fused.tif"
    _run({**base, "OUTPUT": str(out), "SCALE": "0,510"})
    with rasterio.open(out) as src:
        assert src.tags()["WSFUSION_SCALE"].startswith("--scale 0,510; one scale for all 3")


def test_layers_loaded_from_a_url_are_read_from_there(plugin, tmp_path):
    """A layer the user loaded from a URL (a local HTTP server here, nothing from the internet)
    is read from its host, which the algorithm allows and no other; the result equals the run
    on the same files stored locally."""
    from rangeserver import RangeServer

    rng = np.random.default_rng(4)
    served = tmp_path / "served"
    served.mkdir()
    paths = [write_raster(served / f"{i}.tif", rng.integers(1, 255, (3, 60, 70), np.uint8),
                          nodata=0) for i in range(2)]
    local = tmp_path / "local.tif"
    _run({"INPUTS": [str(p) for p in paths], "OUTPUT": str(local), "METHOD": 1})
    with RangeServer(served) as srv:
        layer = QgsRasterLayer(f"/vsicurl/{srv.url('1.tif')}", "remote date", "gdal")
        assert layer.isValid()
        QgsProject.instance().addMapLayer(layer)
        try:
            out = tmp_path / "remote.tif"
            feedback = QgsProcessingFeedback()
            _run({"INPUTS": [str(paths[0]), layer.id()], "OUTPUT": str(out), "METHOD": 1},
                 feedback=feedback)
        finally:
            QgsProject.instance().removeMapLayer(layer.id())
        assert any(r.startswith("/1.tif") for r in srv.requests)
    import rasterio

    with rasterio.open(local) as a, rasterio.open(out) as b:
        assert np.array_equal(a.read(), b.read())
        assert a.transform == b.transform and a.crs == b.crs
