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
        self.notify_missing()

    def notify_missing(self) -> list[str]:
        """Say at start-up, not at the first failed Run, which packages are missing, with a
        button that opens the installer. Returns the missing import names."""
        from . import dependencies

        try:
            lacking = dependencies.missing()  # cheap: no imports, QGIS starts as fast
        except Exception:
            return []
        if not lacking or self.iface is None:
            return lacking
        from qgis.core import Qgis
        from qgis.PyQt.QtWidgets import QPushButton

        composite = [m for m in lacking if m in dependencies.COMPOSITE_MODULES]
        scope = "" if composite else " (mean, median and min-blue work without them)"
        bar = self.iface.messageBar()
        item = bar.createMessage("wsfusion", f"Python packages missing: {', '.join(lacking)}"
                                 f"{scope}.")
        button = QPushButton("Install…", item)
        button.clicked.connect(lambda: self._open("wsfusion:install_dependencies"))
        item.layout().addWidget(button)
        bar.pushWidget(item, Qgis.Warning, 0)
        return lacking

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
