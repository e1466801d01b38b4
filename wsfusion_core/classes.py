"""The one place that defines segmentation class codes, names and colours."""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("background", "road", "building")
# RGB colours used for the GeoTIFF colour table, the QGIS style and quicklooks.
CLASS_COLOURS: tuple[tuple[int, int, int], ...] = (
    (235, 235, 230),  # background: near white, so roads and buildings stand out
    (230, 85, 13),  # road: orange
    (49, 100, 200),  # building: blue
)
SEGMENTATION_NODATA = 255
