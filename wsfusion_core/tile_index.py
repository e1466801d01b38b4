"""The rasters a GDAL tile index (GTI, GDAL >= 3.9) names, read before GDAL opens any of them.

A GTI is a vector table with one row per raster tile and a column of locations; GDAL opens each
location with any driver when it reads pixels there. Like a VRT's sources, every location must
be checked first (input_guard.py). Only GeoPackage indexes are read (a GeoPackage is SQLite, so
Python reads it without GDAL's vector drivers); every table is checked, whatever filter
or layer GDAL would pick, so the check covers at least what GDAL reads.
"""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

from .errors import InputError

SQLITE_MAGIC = b"SQLite format 3\x00"
DEFAULT_LOCATION_FIELD = "location"
GTI_MIN_GDAL = (3, 9)


def gti_available() -> bool:
    """Whether the GDAL rasterio carries has the GTI driver (3.9 and later)."""
    import rasterio

    parts = tuple(int(p) for p in rasterio.__gdal_version__.split(".")[:2])
    return parts >= GTI_MIN_GDAL


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _gdal_metadata(con: sqlite3.Connection) -> list[tuple[str, str, bool]]:
    """(key, value, in the default domain) of every GDAL metadata item stored in the file; an
    embedded GTI XML document (domain ``xml:GTI``) appears as the key ``xml:GTI``."""
    try:
        rows = con.execute("SELECT metadata FROM gpkg_metadata").fetchall()
    except sqlite3.DatabaseError:  # no metadata table: no items
        return []
    items = []
    for (text,) in rows:
        try:
            root = ET.fromstring(str(text))
        except ET.ParseError:
            continue
        for md in root.iter("Metadata"):
            domain = md.get("domain") or ""
            if domain.lower().startswith("xml:"):
                items.append((domain, "", False))
            items += [(mdi.get("key") or "", mdi.text or "", not domain)
                      for mdi in md.iter("MDI")]
    return items


def index_locations(path: Path) -> Iterator[str]:
    """Every location the tables of GeoPackage ``path`` hold (the ``location`` column,
    or the one its metadata names). InputError for what is not checked: overview datasets and
    an embedded GTI XML document (which can name other index files)."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1"
    try:
        con = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise InputError(f"not a readable GeoPackage ({exc})", path=path) from None
    try:
        # Every table and view, not only gpkg_contents' features: GDAL's GeoPackage driver
        # also lists tables gpkg_contents does not name (LIST_ALL_TABLES=AUTO), and GTI reads
        # them; a plain SQLite file is opened by GDAL's SQLite driver.
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")]
        meta = _gdal_metadata(con)
        if any(key.upper().startswith(("OVERVIEW_", "XML:GTI")) for key, _v, _d in meta):
            raise InputError("tile index with overview datasets (OVERVIEW_*) or an embedded "
                             "GTI XML document; refused (their files are not checked)",
                             path=path)
        fields = {DEFAULT_LOCATION_FIELD} | {v.strip().lower() for k, v, d in meta
                                             if k.upper() == "LOCATION_FIELD"}
        for table in tables:
            cols = [r[1] for r in con.execute(f"PRAGMA table_info({_q(table)})")]
            for col in (c for c in cols if c.lower() in fields):
                for (value,) in con.execute(f"SELECT {_q(col)} FROM {_q(table)}"):
                    if value is not None:
                        yield str(value)
    except sqlite3.DatabaseError as exc:
        raise InputError(f"not a readable GeoPackage ({exc})", path=path) from None
    finally:
        con.close()


__all__ = ["GTI_MIN_GDAL", "SQLITE_MAGIC", "gti_available", "index_locations"]
