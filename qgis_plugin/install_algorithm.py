"""The "Install Python dependencies" algorithm: one click (or one ``qgis_process`` call) that
pip-installs torch, rasterio, ... into a plugin-private folder without touching QGIS's numpy."""

from __future__ import annotations

import time
from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtGui import QIcon

from . import dependencies
from .fuse_algorithm import HELP_URL

HELP = """<p>Installs the Python packages the <i>Fuse overhead images</i> algorithm needs \
(PyTorch, rasterio, shapely, safetensors) for this QGIS; usually a few minutes.</p>
<p>pip first resolves them against the packages QGIS's Python already has, then installs only \
what is missing or too old into a private folder inside your QGIS profile, never into QGIS's \
own Python. Only numpy and the packages linked to QGIS's GDAL/PROJ/GEOS are held at QGIS's \
versions. The folder is searched after QGIS's own packages, so nothing QGIS uses is replaced.</p>
<p><b>CPU-only PyTorch</b> downloads about 200 MB from the PyTorch CPU wheel index; if that index \
cannot be reached the installer stops and says so (it never falls back to the CUDA build). \
When an NVIDIA GPU is detected the box starts unticked: the CUDA build (several GB) lets \
<i>Fuse overhead images</i> run on the GPU. <b>Extra pip arguments</b> are passed to pip as they \
are (for example <tt>--proxy http://proxy:3128</tt>, or a local wheel folder: \
<tt>--no-index --find-links /path/to/wheels</tt>).</p>
<p>The log shows the exact pip commands; Cancel stops pip. Restarting QGIS is not needed.</p>"""


class InstallDependenciesAlgorithm(QgsProcessingAlgorithm):
    TORCH_CPU = "TORCH_CPU"
    PIP_ARGS = "PIP_ARGS"
    FOLDER = "FOLDER"

    def createInstance(self) -> InstallDependenciesAlgorithm:  # noqa: N802
        return InstallDependenciesAlgorithm()

    def name(self) -> str:
        return "install_dependencies"

    def displayName(self) -> str:  # noqa: N802
        return "Install Python dependencies"

    def shortHelpString(self) -> str:  # noqa: N802
        gpus = dependencies.nvidia_gpus()
        found = (f"<p><b>NVIDIA GPU detected:</b> {', '.join(gpus)}.</p>" if gpus else
                 "<p>No NVIDIA GPU detected: the CPU-only build is the right one.</p>")
        return HELP + found

    def helpUrl(self) -> str:  # noqa: N802
        return HELP_URL

    def icon(self) -> QIcon:
        from .resources import ICON

        return QIcon(str(ICON))

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802
        gpus = dependencies.nvidia_gpus()
        label = "CPU-only PyTorch (untick: CUDA build)" if gpus else \
            "CPU-only PyTorch (about 200 MB)"
        self.addParameter(QgsProcessingParameterBoolean(self.TORCH_CPU, label, not gpus))
        self.addParameter(QgsProcessingParameterString(
            self.PIP_ARGS, "Extra pip arguments", defaultValue="", optional=True))
        self.addOutput(QgsProcessingOutputString(self.FOLDER, "Package folder"))

    def processAlgorithm(self, parameters: dict, context, feedback) -> dict[str, Any]:  # noqa: N802
        import shlex

        extra = shlex.split(self.parameterAsString(parameters, self.PIP_ARGS, context) or "")
        torch_cpu = self.parameterAsBool(parameters, self.TORCH_CPU, context)
        gpus = dependencies.nvidia_gpus()
        feedback.pushInfo("NVIDIA GPU: " + (", ".join(gpus) or "none detected")
                          + f"; PyTorch build: {'CPU-only' if torch_cpu else 'default (CUDA)'}")
        lacking = dependencies.missing(import_modules=True)
        feedback.pushInfo("Missing: " + (", ".join(lacking) or "nothing"))
        t0 = time.perf_counter()
        try:
            folder = dependencies.install(
                modules=lacking, torch_cpu=torch_cpu, extra_args=extra,
                log=feedback.pushConsoleInfo, cancel=feedback.isCanceled,
                progress=lambda f: feedback.setProgress(100.0 * f))
        except (RuntimeError, OSError) as exc:
            if feedback.isCanceled():
                feedback.pushInfo(f"Cancelled: {exc}")
                return {}
            raise QgsProcessingException(f"Installing {', '.join(lacking)} failed: {exc}") from None
        still = dependencies.missing(import_modules=True)
        if still:
            raise QgsProcessingException(
                f"Installed into {folder}, but these still do not import: "
                + "; ".join(f"{m} ({dependencies.import_error_details(m)})" for m in still))
        feedback.pushInfo(f"All wsfusion dependencies import; packages are in {folder} "
                          f"({time.perf_counter() - t0:.0f} s)")
        return {self.FOLDER: str(folder)}
