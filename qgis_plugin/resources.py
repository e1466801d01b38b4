"""Files the plugin's modules share (their own module, so no algorithm imports the provider)."""

from __future__ import annotations

from pathlib import Path

ICON = Path(__file__).resolve().parent / "icon.png"
