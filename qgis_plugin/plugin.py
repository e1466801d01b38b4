"""The plugin object QGIS creates: registers the Processing provider and a menu entry."""

from __future__ import annotations

from qgis.core import QgsApplication

from .provider import WsfusionProvider

MENU = "&wsfusion"


class WsfusionPlugin:
    """``initProcessing`` alone is what ``qgis_process`` calls; ``initGui`` adds the menu."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider: WsfusionProvider | None = None
        self.actions: list = []

    def initProcessing(self) -> None:  # noqa: N802 (QGIS's name)
        if self.provider is None:
            self.provider = WsfusionProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 (QGIS's name)
        self.initProcessing()
        if self.iface is None:
            return
        from qgis.PyQt.QtWidgets import QAction

        icon = self.provider.icon()
        for text, alg in (("Fuse overhead images…", "wsfusion:fuse"),
                          ("Install Python dependencies…", "wsfusion:install_dependencies")):
            action = QAction(icon, text, self.iface.mainWindow())
            action.triggered.connect(lambda _=False, a=alg: self._open(a))
            self.iface.addPluginToRasterMenu(MENU, action)
            self.actions.append(action)

    def _open(self, alg_id: str) -> None:
        import processing

        processing.execAlgorithmDialog(alg_id, {})

    def unload(self) -> None:
        for action in self.actions:
            self.iface.removePluginRasterMenu(MENU, action)
        self.actions = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
