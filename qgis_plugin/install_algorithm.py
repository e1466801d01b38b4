"""The "Install Python dependencies" algorithm: one click (or one ``qgis_process`` call) that
pip-installs torch, rasterio, ... into a plugin-private folder without touching QGIS's numpy."""

from __future__ import annotations

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

HELP = """<p>Installs the Python packages the <i>Fuse overhead images</i> algorithm needs \
(PyTorch, rasterio, shapely, pyproj, safetensors) for this QGIS, from PyPI.</p>
<p>They go into a private folder inside your QGIS profile, never into QGIS's own Python. A \
constraints file pins every package QGIS's Python already has, numpy first, because QGIS's GDAL \
bindings were built against that numpy (numpy 2 breaks them). Packages QGIS already has are \
not duplicated. Only what is missing is installed.</p>
<p><b>CPU-only PyTorch</b> (default) downloads about 200 MB; untick it to get PyPI's default \
build (with CUDA on Linux, several GB). <b>Extra pip arguments</b> are passed to pip as they are \
(for example a proxy or a local wheel folder: <tt>--find-links /path/to/wheels</tt>).</p>
<p>The log shows the exact pip command. Restarting QGIS is not needed.</p>"""


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
        return HELP

    def icon(self) -> QIcon:
        from .resources import ICON

        return QIcon(str(ICON))

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterBoolean(
            self.TORCH_CPU, "CPU-only PyTorch (much smaller download)", True))
        self.addParameter(QgsProcessingParameterString(
            self.PIP_ARGS, "Extra pip arguments", defaultValue="", optional=True))
        self.addOutput(QgsProcessingOutputString(self.FOLDER, "Package folder"))

    def processAlgorithm(self, parameters: dict, context, feedback) -> dict[str, Any]:  # noqa: N802
        import shlex

        extra = shlex.split(self.parameterAsString(parameters, self.PIP_ARGS, context) or "")
        lacking = dependencies.missing(import_modules=True)
        feedback.pushInfo("Missing: " + (", ".join(lacking) or "nothing"))
        try:
            folder = dependencies.install(
                modules=lacking,
                torch_cpu=self.parameterAsBool(parameters, self.TORCH_CPU, context),
                extra_args=extra, log=feedback.pushConsoleInfo, cancel=feedback.isCanceled)
        except (RuntimeError, OSError) as exc:
            raise QgsProcessingException(f"Installing {', '.join(lacking)} failed: {exc}") from None
        still = dependencies.missing(import_modules=True)
        if still:
            raise QgsProcessingException(
                f"Installed into {folder}, but these still do not import: "
                + "; ".join(f"{m} ({dependencies.import_error_details(m)})" for m in still))
        feedback.pushInfo(f"All wsfusion dependencies import; packages are in {folder}")
        return {self.FOLDER: str(folder)}
