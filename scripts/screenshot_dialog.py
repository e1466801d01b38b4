"""Renders the real "Fuse overhead images" dialog offscreen and saves docs/img/qgis_dialog.png.

Run: xvfb-run -a .venv/bin/python scripts/screenshot_dialog.py [OUT.png] [--advanced]
(or QT_QPA_PLATFORM=offscreen; its fonts differ), at the size QGIS opens the dialog with.
Three sample layers are loaded so the layer picker shows a realistic choice.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _sample_layers(folder: Path) -> list[Path]:
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    paths = []
    for name in ("naip_2016.tif", "naip_2018_cloudy.tif", "naip_2020_gaps.tif"):
        path = folder / name
        with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8",
                           crs="EPSG:26914", transform=from_origin(600000, 5200000, 5, 5)) as dst:
            dst.write(rng.integers(0, 255, (3, 64, 64), dtype=np.uint8))
        paths.append(path)
    return paths


def main(out: Path) -> None:
    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

    app = QgsApplication([], True)
    app.initQgis()
    sys.path.append(str(Path(app.pkgDataPath()) / "python" / "plugins"))
    from processing.core.Processing import Processing

    Processing.initialize()
    from qgis.PyQt.QtWidgets import QApplication

    import qgis_plugin

    plugin = qgis_plugin.classFactory(None)
    plugin.initProcessing()
    with tempfile.TemporaryDirectory() as tmp:
        layers = [QgsRasterLayer(str(p), p.stem) for p in _sample_layers(Path(tmp))]
        QgsProject.instance().addMapLayers(layers)
        from processing.gui.AlgorithmDialog import AlgorithmDialog

        alg = QgsApplication.processingRegistry().createAlgorithmById("wsfusion:fuse")
        dialog = AlgorithmDialog(alg, parent=None)
        dialog.setParameters({"INPUTS": [layer.id() for layer in layers], "METHOD": 0,
                              "SEGMENTATION": "TEMPORARY_OUTPUT"})
        if "--advanced" in sys.argv:  # check the advanced labels too
            from qgis.PyQt.QtWidgets import QWidget

            for w in dialog.findChildren(QWidget):
                title = getattr(w, "title", None)
                if callable(title) and "Advanced" in str(title()) and hasattr(w, "setCollapsed"):
                    w.setCollapsed(False)
        dialog.show()  # at the size QGIS opens it with: labels must be readable there
        for _ in range(20):
            QApplication.processEvents()
        print(f"dialog size: {dialog.width()} x {dialog.height()}")
        out.parent.mkdir(parents=True, exist_ok=True)
        if not dialog.grab().save(str(out)):
            raise SystemExit(f"{out}: could not save the screenshot")
        print(out)
        dialog.close()
        QgsProject.instance().clear()
    plugin.unload()
    app.exitQgis()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(Path(args[0]) if args else REPO / "docs" / "img" / "qgis_dialog.png")
