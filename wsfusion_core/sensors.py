"""Sensor band layouts: which band of a file is which, its true colour, its reflectance rule,
and the bands a quality net may read as evidence of cloud (cirrus, SWIR, aerosol).

Satellite users bring whole band stacks (Sentinel-2 L1C with 13 bands, L2A with 12, Landsat
Collection 2 stacks). The bands that tell cloud from ground best are not the true-colour ones:
cirrus (S2 B10, Landsat 8/9 B9) sees only high cloud and haze, SWIR separates cloud from snow
and bright soil, coastal aerosol shows haze. Every trusted cloud detector (Fmask, Sen2Cor,
s2cloudless, Cloud Score+) reads them, so a quality net should too.

A layout is recognised from the band descriptions (``B1``..``B12``, ``B8A``, ``SR_B4``, or STAC
EO common names such as ``coastal``, ``cirrus``, ``swir16``), or, without descriptions, from the
band count and data type of the stacks users download. Bands are named here by their STAC EO
common names, the vocabulary the weights' evidence contract uses. Pure Python (no numpy): the
QGIS dialog and the CLI's help import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Layout:
    """One sensor product's band stack."""

    key: str  # short name, e.g. "s2-l1c" (in the weights metadata and messages)
    title: str  # for people
    bands: tuple[str, ...]  # common name of each band, in file order
    ids: tuple[str, ...]  # the product's own band names (B1, B8A, ...), in file order
    true_colour: tuple[str, str, str]  # red, green, blue common names
    # Stored value -> reflectance: value * gain + offset (a file's declared scale/offset or
    # Sentinel-2 offset tags win over this default).
    gain: float
    offset: float
    dtypes: tuple[str, ...] = ("uint16",)
    by_count: bool = False  # recognised from band count + dtype alone (no descriptions)

    def index(self, name: str) -> int | None:
        """1-based band number of a common name, None when the layout lacks it."""
        return self.bands.index(name) + 1 if name in self.bands else None

    def bands_of(self, names: Sequence[str]) -> tuple[int, ...] | None:
        """1-based band numbers of common names, None if any is missing."""
        idx = [self.index(n) for n in names]
        return None if any(i is None for i in idx) else tuple(i for i in idx if i is not None)

    @property
    def rgb(self) -> tuple[int, int, int]:
        r, g, b = (self.index(n) for n in self.true_colour)
        assert r and g and b
        return r, g, b


_S2_IDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
_S2_NAMES = ("coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir",
             "nir08", "nir09", "cirrus", "swir16", "swir22")
_L89_IDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11")
_L89_NAMES = ("coastal", "blue", "green", "red", "nir08", "swir16", "swir22", "pan", "cirrus",
              "lwir11", "lwir12")

LAYOUTS: dict[str, Layout] = {lay.key: lay for lay in (
    Layout("s2-l1c", "Sentinel-2 L1C (13 bands)", _S2_NAMES, _S2_IDS, ("red", "green", "blue"),
           1e-4, 0.0, by_count=True),
    Layout("s2-l2a", "Sentinel-2 L2A (12 bands, no B10)",
           _S2_NAMES[:10] + _S2_NAMES[11:], _S2_IDS[:10] + _S2_IDS[11:],
           ("red", "green", "blue"), 1e-4, 0.0, by_count=True),
    Layout("landsat89-l1", "Landsat 8/9 Collection 2 Level-1 (11 bands)", _L89_NAMES, _L89_IDS,
           ("red", "green", "blue"), 2e-5, -0.1, by_count=True),
    Layout("landsat89-l2", "Landsat 8/9 Collection 2 Level-2 surface reflectance (7 bands)",
           _L89_NAMES[:7], _L89_IDS[:7], ("red", "green", "blue"), 2.75e-5, -0.2, by_count=True),
    Layout("landsat457-l2", "Landsat 4-7 Collection 2 Level-2 surface reflectance (6 bands)",
           ("blue", "green", "red", "nir08", "swir16", "swir22"),
           ("B1", "B2", "B3", "B4", "B5", "B7"), ("red", "green", "blue"), 2.75e-5, -0.2),
)}

# The names a band description may use for a common name (besides the common name itself).
_ALIASES = {"swir1": "swir16", "swir2": "swir22", "aerosol": "coastal",
            "coastal_aerosol": "coastal", "wv": "nir09", "water_vapour": "nir09",
            "water_vapor": "nir09", "rededge": "rededge1"}
COMMON_NAMES: tuple[str, ...] = tuple(sorted({n for lay in LAYOUTS.values() for n in lay.bands}))


@dataclass(frozen=True)
class Recognition:
    """What was recognised of one input, and how (for ``info`` and the log)."""

    layout: Layout | None
    how: str  # "band descriptions", "band count and data type", or why not


def _id_of(description: str) -> str:
    """``'B8A'``, ``'SR_B4'``, ``'B04'``, ``'B4 (red)'`` → the product id ``B8A`` / ``B4``."""
    d = description.strip().upper()
    m = re.match(r"^(?:SR_|TOA_|ST_)?B0*(\d{1,2}A?)\b", d)
    return f"B{m.group(1)}" if m else ""


def _common_of(description: str) -> str:
    d = re.sub(r"[\s\-]+", "_", description.strip().lower())
    d = _ALIASES.get(d, d)
    return d if d in COMMON_NAMES else ""


def recognise(count: int, dtype: str, descriptions: Sequence[str | None]) -> Recognition:
    """The layout of a file with ``count`` bands of ``dtype`` and these band descriptions.

    Descriptions decide when every band has one: product ids (``B1``..``B12``, ``B8A``,
    ``SR_B1``) or common names, matched to a layout band for band. Without descriptions the
    band count and dtype of a download that is unambiguous (Sentinel-2 L1C 13 / L2A 12 bands,
    Landsat 8/9 C2 L1 11 / L2 7 bands, all uint16) decide."""
    descs = [d or "" for d in descriptions]
    if any(descs) and all(descs):
        ids = tuple(_id_of(d) for d in descs)
        names = tuple(_common_of(d) for d in descs)
        for lay in LAYOUTS.values():
            if len(lay.bands) != count:
                continue
            if ids == lay.ids or names == lay.bands:
                return Recognition(lay, "band descriptions")
        return Recognition(None, "band descriptions match no known layout")
    if dtype in ("uint16",):
        for lay in LAYOUTS.values():
            if lay.by_count and len(lay.bands) == count and dtype in lay.dtypes:
                return Recognition(lay, f"{count} {dtype} bands without descriptions")
    return Recognition(None, f"{count} {dtype} band(s) without descriptions match no known "
                             "layout")


def from_common_names(names: Sequence[str]) -> Layout | None:
    """The layout whose bands are exactly these common names (a STAC item's assets in order)."""
    names = tuple(_common_of(n) or n for n in names)
    for lay in LAYOUTS.values():
        if lay.bands == names:
            return lay
    return None


__all__ = ["COMMON_NAMES", "LAYOUTS", "Layout", "Recognition", "from_common_names",
           "recognise"]
