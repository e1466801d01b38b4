"""wsfusion QGIS plugin: a Processing provider over ``wsfusion_core.fuse``.

Loading stays cheap (no torch): the heavy imports happen when the algorithm runs. In the
installable zip the core is bundled beside this file; it is imported from there first, so the
plugin runs the exact core it was built with even when another copy is installed.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _use_bundled_core() -> None:
    """Import the bundled ``wsfusion_core`` (zip layout) ahead of any other copy on sys.path.

    The plugin folder is on sys.path only for this one import, so its module names (plugin,
    provider, ...) never become top-level names other code could pick up by accident.
    """
    if not (_HERE / "wsfusion_core" / "__init__.py").is_file() or "wsfusion_core" in sys.modules:
        return
    sys.path.insert(0, str(_HERE))
    try:
        importlib.import_module("wsfusion_core")
    finally:
        sys.path.remove(str(_HERE))


def _activate_private_packages() -> None:
    from .dependencies import activate_private_dir

    try:
        activate_private_dir()
    except Exception:  # a broken profile folder must not stop QGIS from loading the plugin
        pass


_use_bundled_core()
_activate_private_packages()


def classFactory(iface):  # noqa: N802 (QGIS's name)
    from .plugin import WsfusionPlugin

    return WsfusionPlugin(iface)
