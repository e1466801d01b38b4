"""The Processing provider: groups the wsfusion algorithms in the toolbox under one icon."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .resources import ICON


class WsfusionProvider(QgsProcessingProvider):
    def loadAlgorithms(self) -> None:  # noqa: N802 (QGIS's name)
        from .fuse_algorithm import FuseAlgorithm
        from .install_algorithm import InstallDependenciesAlgorithm

        self.addAlgorithm(FuseAlgorithm())
        self.addAlgorithm(InstallDependenciesAlgorithm())

    def id(self) -> str:
        return "wsfusion"

    def name(self) -> str:
        return "wsfusion"

    def longName(self) -> str:  # noqa: N802 (QGIS's name)
        return "wsfusion: weakly supervised fusion of overhead images"

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    # The core writes GeoTIFF only; temporary outputs get .tif too.
    def supportedOutputRasterLayerExtensions(self) -> list[str]:  # noqa: N802
        return ["tif"]

    def defaultRasterFileExtension(self) -> str:  # noqa: N802
        return "tif"
