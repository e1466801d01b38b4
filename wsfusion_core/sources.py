"""Inputs given as lists: a text file of paths, or a STAC ItemCollection saved on disk.

STAC items of one date (one pass of the satellite or one flight) are mosaicked into one virtual
raster (VRT) per date, so each date is one input of the fusion, as the paper treats dates.
Nothing is downloaded: remote hrefs are named as GDAL virtual file system paths (``/vsicurl/``,
``/vsis3/``, ``/vsigs/``, ``/vsiaz/``) and read in place where the caller allows their host or
bucket (remote.py); otherwise refused in one line.

Sentinel-2 and Landsat items on public catalogues publish one single-band asset per band
(``coastal``, ``blue``, ..., ``swir22`` or ``B01``..``B12``, each with ``eo:bands``). Asked for
several assets (a comma-separated list, or ``bands``: every band asset, ordered as the sensor
layout they form orders them), each date becomes one VRT with one band per asset, every band a
mosaic of that asset over the date's items, on the finest asset's grid (coarser bands by
nearest neighbour: every 20 m / 60 m value is kept as measured, no mixed or invented values,
and no blending with nodata at a swath edge), each band described by its common name so the
layout, its true colour and its evidence bands are recognised as for a stacked file.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence, Union
from xml.sax.saxutils import escape

from .errors import InputError, first_line
from .input_guard import GDAL_TYPE_NAMES, open_input
from .options import STAC_GROUPS
from .remote import check_remote, gdal_name, is_remote_name, parse_remote
from .sensors import LAYOUTS, Layout

BAND_ASSETS = "bands"  # the asset request for every band asset of an item, in layout order
AssetRequest = Union[str, Sequence[str]]
# Common names of the STAC EO extension 1.1 that the layouts (sensors.py) name otherwise.
_EO_NAMES = {"rededge071": "rededge1", "rededge075": "rededge2", "rededge078": "rededge3",
             "swir1": "swir16", "swir2": "swir22", "aerosol": "coastal"}


def read_input_list(path: str | os.PathLike) -> list[str]:
    """Paths from a text file, one per line; blank lines and ``#`` comments skipped; relative
    paths are relative to the list file."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{p}: cannot read the input list ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        # One encoding for every platform (the locale's would make a list portable or not by
        # chance); a path in another encoding cannot be told apart from a damaged file.
        at = exc.object[:exc.start].count(b"\n") + 1
        raise InputError(f"{p}: the input list is not UTF-8 text (byte "
                         f"0x{exc.object[exc.start]:02x} on line {at}); save it as UTF-8"
                         ) from None
    out = []
    for line in lines:
        s = line.split("#", 1)[0].strip()
        if s:
            out.append(s if is_remote_name(s) or os.path.isabs(s) else str(p.parent / s))
    if not out:
        raise InputError(f"{p}: the input list names no rasters")
    return out


def gdal_path(href: str, base: Path) -> str:
    """A GDAL-readable path for a STAC href (relative hrefs are relative to the JSON file)."""
    gdal = gdal_name(href)
    if gdal != href:  # a URL: read in place (if allowed)
        return gdal
    if href.startswith("file://"):
        href = href[len("file://"):]
    return href if href.startswith("/vsi") or os.path.isabs(href) else str(base / href)


@dataclass(frozen=True)
class BandAsset:
    """One single-band asset of a band stack."""

    key: str  # the asset key in the item
    name: str  # the band's description: its common name, else the asset key
    href: str  # GDAL path


@dataclass(frozen=True)
class StacAsset:
    item: str
    href: str  # GDAL path (of the first band for a band stack)
    when: dt.datetime
    lon: float
    bands: tuple[BandAsset, ...] = ()  # a band stack: one asset per band; () for one asset


def parse_asset_request(asset: AssetRequest) -> str | tuple[str, ...]:
    """``"visual"`` → ``"visual"`` (one asset, read as it is); ``"red,green,blue"`` or a
    sequence of keys → a tuple (a band stack in that order); ``"bands"`` → ``"bands"``."""
    keys = [k.strip() for k in (asset.split(",") if isinstance(asset, str) else asset)]
    if not keys or not all(keys):
        raise InputError(f"asset {','.join(keys)!r}: give an asset key, a comma-separated "
                         f"list of keys, or {BAND_ASSETS!r}")
    if len(set(keys)) != len(keys):
        raise InputError(f"asset list {','.join(keys)!r} names an asset twice")
    return keys[0] if len(keys) == 1 else tuple(keys)


def stac_assets(path: str | os.PathLike, asset: AssetRequest, allow_remote: Sequence[str] = ()
                ) -> list[StacAsset]:
    """The ``asset`` of every item of a STAC ItemCollection JSON file (or, for a list of keys
    or ``"bands"``, its band stack: see parse_asset_request); remote hrefs only where a
    pattern of ``allow_remote`` (remote.patterns) allows their host or bucket."""
    try:
        request = parse_asset_request(asset)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    try:
        import pystac
    except ImportError:
        raise InputError(f"{path}: reading STAC needs pystac; install wsfusion[distributed]"
                         ) from None
    p = Path(path)
    try:
        items = list(pystac.ItemCollection.from_file(str(p)))
    except Exception as exc:  # pystac raises several types for bad JSON / schema
        raise InputError(f"{p}: not a STAC ItemCollection ({first_line(exc)})") from None
    if not items:
        raise InputError(f"{p}: the ItemCollection has no items")
    out = []
    for it in items:
        if request == BAND_ASSETS:
            keys, names = layout_assets(it, p)
        else:
            keys = (request,) if isinstance(request, str) else request
            for key in keys:
                if key not in it.assets:
                    have = ", ".join(sorted(it.assets)) or "none"
                    raise InputError(f"{p}: item {it.id} has no asset {key!r} "
                                     f"(assets: {have})")
            commons = [_common_name(it.assets[k]) for k in keys]
            names = tuple(_EO_NAMES.get(c, c) or k for c, k in zip(commons, keys))
        when = it.datetime or _parse(it.properties.get("start_datetime"))
        if when is None:
            raise InputError(f"{p}: item {it.id} has no datetime")
        bbox = it.bbox or [0.0, 0.0, 0.0, 0.0]
        hrefs = []
        for key in keys:
            href = gdal_path(it.assets[key].href, p.parent)
            remote = parse_remote(href)
            if remote is not None:
                check_remote(remote, allow_remote, f"item {it.id}: asset {key!r} is remote "
                             f"({it.assets[key].href}) and", path=p)
            hrefs.append(href)
        stack = () if isinstance(request, str) and request != BAND_ASSETS else tuple(
            BandAsset(k, n, h) for k, n, h in zip(keys, names, hrefs))
        out.append(StacAsset(it.id, hrefs[0], when, (bbox[0] + bbox[2]) / 2, stack))
    return out


def _common_name(asset: Any) -> str:
    """The common name of a single-band asset (``eo:bands``, or STAC 1.1 ``bands`` with
    ``eo:common_name``), "" when it has none or several bands."""
    fields = asset.extra_fields
    bands = fields.get("eo:bands") or fields.get("bands")
    if not isinstance(bands, list) or len(bands) != 1 or not isinstance(bands[0], dict):
        return ""
    name = bands[0].get("common_name") or bands[0].get("eo:common_name") or ""
    return str(name).strip().lower()


def _band_id(asset: Any) -> str:
    """The product's band id of a single-band asset (``B05`` → ``B5``), "" when unknown."""
    fields = asset.extra_fields
    bands = fields.get("eo:bands") or fields.get("bands")
    if not isinstance(bands, list) or len(bands) != 1 or not isinstance(bands[0], dict):
        return ""
    m = re.match(r"^(?:SR_|TOA_|ST_)?B0*(\d{1,2}A?)$", str(bands[0].get("name", "")).upper())
    return f"B{m.group(1)}" if m else ""


def _fits(lay: Layout, band: int, common: str) -> bool:
    """Whether an asset of this common name may be band ``band`` (1-based) of ``lay``: the same
    name, or the generic ``rededge`` of STAC EO 1.0 for any red-edge band."""
    name = lay.bands[band - 1]
    return common == name or (common == "rededge" and name.startswith("rededge"))


def layout_assets(item: Any, where: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The keys of ``item``'s band assets in the order of the sensor layout they form, and the
    layout's common name of each (the VRT band descriptions).

    The layout is the one with the most bands of which every band is an asset of the item
    (other band assets of the same sensor family, such as a Landsat Level-2 item's surface
    temperature, are left out), among the layouts of the item's ``platform`` /
    ``constellation`` where it names Sentinel-2 or Landsat. A band name of another family
    (Sentinel-2's red edge beside a Landsat-like set) means an incomplete item, never another
    sensor: a Sentinel-2 item missing bands must not pass for Landsat and be read with
    Landsat's reflectance rule. Where several assets carry one band (Sentinel-2 ``rededge`` for
    B05..B07, or a GeoTIFF and a JPEG 2000 copy), the one whose band id (``eo:bands`` name) is
    the layout's wins, then the GeoTIFF; still several, or no layout: refused in one line
    naming the common names found."""
    commons = {k: _EO_NAMES.get(c, c) for k, a in item.assets.items()
               if (c := _common_name(a))}
    if not commons:
        have = ", ".join(sorted(item.assets)) or "none"
        raise InputError(f"{where}: item {item.id} has no single-band assets with a common "
                         f"name in eo:bands (assets: {have})")
    said = " ".join(str(item.properties.get(k, "")) for k in ("platform", "constellation"))
    family = _family(said.lower().replace("_", "-"))
    names = ", ".join(sorted(set(commons.values())))
    for lay in sorted(LAYOUTS.values(), key=lambda lay: -len(lay.bands)):
        kin = {n for other in LAYOUTS.values() if _family(other.key) == _family(lay.key)
               for n in other.bands} | ({"rededge"} if _family(lay.key) == "s2" else set())
        if family not in (None, _family(lay.key)) or not set(commons.values()) <= kin:
            continue
        keys: list[str] = []
        for band in range(1, len(lay.bands) + 1):
            cands = [k for k, c in commons.items() if _fits(lay, band, c) and k not in keys]
            if len(cands) > 1:
                by_id = [k for k in cands if _band_id(item.assets[k]) == lay.ids[band - 1]]
                cands = by_id or cands
            if len(cands) > 1:
                tiffs = [k for k in cands if "tiff" in str(item.assets[k].media_type or "")]
                cands = tiffs or cands
            if len(cands) > 1:
                raise InputError(f"{where}: item {item.id}: assets {', '.join(sorted(cands))} "
                                 f"are all band {lay.bands[band - 1]} of {lay.title}; name the "
                                 "assets to stack instead")
            if not cands:
                break
            keys.append(cands[0])
        else:
            return tuple(keys), lay.bands
    raise InputError(f"{where}: item {item.id}: the band assets' common names ({names}) form "
                     f"no known sensor layout ({', '.join(LAYOUTS)}); name the assets to stack "
                     "instead")


def _family(text: str) -> str | None:
    """``"s2"`` or ``"landsat"`` for a layout key or an item's platform / constellation."""
    if text.startswith("s2") or "sentinel-2" in text:
        return "s2"
    return "landsat" if "landsat" in text else None


def _parse(text: Any) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def group_key(a: StacAsset, group: str) -> str:
    """``solar_day``: the local solar date (UTC shifted by longitude / 15 h), so one pass that
    crosses midnight UTC stays one date; ``day``: the UTC date; ``item``: no grouping."""
    when = a.when if a.when.tzinfo else a.when.replace(tzinfo=dt.timezone.utc)
    if group == "solar_day":
        return (when.astimezone(dt.timezone.utc) + dt.timedelta(hours=a.lon / 15)).date() \
            .isoformat()
    if group == "day":
        return when.astimezone(dt.timezone.utc).date().isoformat()
    if group == "item":
        return a.item
    raise InputError(f"unknown STAC grouping {group!r}; choose one of {', '.join(STAC_GROUPS)}")


@contextmanager
def stac_inputs(path: str | os.PathLike, asset: AssetRequest, group: str, output: str | os.PathLike,
                allow_remote: Sequence[str] = ()) -> Iterator[list[str]]:
    """The fusion inputs of a STAC ItemCollection: one per group, date order. Mosaics are
    written to a hidden folder beside ``output`` (where every worker of a cluster that writes
    the output can read them) and removed afterwards."""
    with stac_inputs_and_masks(path, asset, None, group, output, allow_remote) as (paths, _):
        yield paths


@contextmanager
def stac_inputs_and_masks(path: str | os.PathLike, asset: AssetRequest, mask_asset: str | None,
                          group: str, output: str | os.PathLike,
                          allow_remote: Sequence[str] = ()
                          ) -> Iterator[tuple[list[str], list[str] | None]]:
    """As :func:`stac_inputs`, plus the sensor-mask asset (``scl``, ``qa_pixel``) of the same
    items grouped the same way: one mask per input, in the same order (None: no mask asset).
    Every item must have both assets, so the groups match one to one."""
    out = Path(output)
    folder = out.with_name(f".{out.name}.inputs")
    folder.mkdir(exist_ok=True)
    try:
        paths = group_inputs(path, asset, group, folder, allow_remote)
        masks = None
        if mask_asset is not None:
            (folder / "masks").mkdir(exist_ok=True)
            masks = group_inputs(path, mask_asset, group, folder / "masks", allow_remote,
                                 mask=True)
            if len(masks) != len(paths):  # cannot happen while every item has both assets
                raise InputError(f"{path}: {len(masks)} dates of {mask_asset!r} for "
                                 f"{len(paths)} of {asset!r}")
        yield paths, masks
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def group_inputs(path: str | os.PathLike, asset: AssetRequest, group: str, folder: Path,
                 allow_remote: Sequence[str] = (), mask: bool = False) -> list[str]:
    """One input per group (date order): the asset itself when the group is one file, else a
    VRT written into ``folder`` (always a VRT for a band stack). ``mask``: the asset is a
    sensor mask, mosaicked as stored (no alpha band, its nodata value not special: the mask
    rule decides)."""
    groups: dict[str, list[StacAsset]] = {}
    for a in sorted(stac_assets(path, asset, allow_remote), key=lambda a: (a.when, a.item)):
        groups.setdefault(group_key(a, group), []).append(a)
    out = []
    for key, members in groups.items():
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)
        if members[0].bands:
            out.append(str(stack_vrt(members, folder / f"{safe}.vrt", allow_remote)))
        elif len(members) == 1:
            out.append(members[0].href)
        else:
            out.append(str(mosaic_vrt(members, folder / f"{safe}.vrt", allow_remote,
                                      alpha=not mask)))
    return out


def mosaic_vrt(members: Sequence[StacAsset], target: Path, allow_remote: Sequence[str] = (),
               alpha: bool = True) -> Path:
    """A VRT mosaic of same-CRS rasters on the first one's pixel size, plus an alpha band that
    is 0 where no member has data (so gaps between items are not read as valid pixels).
    ``alpha=False`` (sensor masks): no alpha band and every stored value copied, nodata too."""
    heads = [_head(m.href, allow_remote) for m in members]
    first = heads[0]
    for m, h in zip(members, heads):
        if h["crs"] != first["crs"]:
            raise InputError(f"{m.href}: item {m.item} is in {h['crs']} but {members[0].item} "
                             f"of the same date is in {first['crs']}; reproject the items or "
                             "group them apart (group: item)")
        if h["count"] != first["count"] or h["dtype"] != first["dtype"]:
            raise InputError(f"{m.href}: item {m.item} has {h['count']} x {h['dtype']} bands, "
                             f"{members[0].item} has {first['count']} x {first['dtype']}")
    xres, yres = first["transform"].a, first["transform"].e
    left = min(h["bounds"].left for h in heads)
    top = max(h["bounds"].top for h in heads)
    right = max(h["bounds"].right for h in heads)
    bottom = min(h["bounds"].bottom for h in heads)
    width = int(math.ceil(round((right - left) / xres, 6)))
    height = int(math.ceil(round((bottom - top) / yres, 6)))
    lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">']
    if first["crs"] is not None:
        lines.append(f"  <SRS>{escape(first['crs'].to_wkt())}</SRS>")
    lines.append(f"  <GeoTransform>{left!r}, {xres!r}, 0.0, {top!r}, 0.0, {yres!r}"
                 "</GeoTransform>")
    gtype = GDAL_TYPE_NAMES.get(first["dtype"])
    if gtype is None:
        raise InputError(f"{members[0].href}: data type {first['dtype']} cannot be mosaicked")
    with_alpha = alpha
    for b in range(1, first["count"] + (2 if with_alpha else 1)):
        alpha = b == first["count"] + 1
        lines.append(f'  <VRTRasterBand dataType="{gtype}" band="{b}">')
        if alpha:
            lines.append("    <ColorInterp>Alpha</ColorInterp>")
        else:  # keep what the first item says about its bands (RGB stays RGB in the output)
            lines.append(f"    <ColorInterp>{first['colorinterp'][b - 1]}</ColorInterp>")
            if first["descriptions"][b - 1]:
                lines.append(f"    <Description>{escape(first['descriptions'][b - 1])}"
                             "</Description>")
        for m, h in zip(members, heads):
            nd = h["nodata"]
            xoff = (h["bounds"].left - left) / xres
            yoff = (h["bounds"].top - top) / yres
            dw = h["width"] * h["transform"].a / xres
            dh = h["height"] * h["transform"].e / yres
            src = (f'      <SourceFilename relativeToVRT="0">{escape(m.href)}</SourceFilename>\n'
                   f"      <SourceBand>{1 if alpha else b}</SourceBand>\n"
                   f'      <SrcRect xOff="0" yOff="0" xSize="{h["width"]}" '
                   f'ySize="{h["height"]}"/>\n'
                   f'      <DstRect xOff="{xoff!r}" yOff="{yoff!r}" xSize="{dw!r}" '
                   f'ySize="{dh!r}"/>\n')
            if nd is not None and with_alpha:
                src += f"      <NODATA>{nd}</NODATA>\n"
            if alpha:
                top_value = 255 if gtype == "Byte" else 65535 if gtype == "UInt16" else 1
                src += (f"      <ScaleOffset>{top_value}</ScaleOffset>\n"
                        "      <ScaleRatio>0</ScaleRatio>\n")
            lines.append(f"    <ComplexSource>\n{src}    </ComplexSource>")
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    target.write_text("\n".join(lines) + "\n")
    return target


def stack_vrt(members: Sequence[StacAsset], target: Path, allow_remote: Sequence[str] = ()
              ) -> Path:
    """A VRT of one date's band stacks: band *j* is the mosaic of every member's *j*-th band
    asset, described by its name; plus an alpha band that is 0 where no band of any member has
    data (GDAL's rule for a stacked file with nodata: a pixel is nodata where every band is).

    The grid is the finest asset's pixel size over the union of the assets' extents; coarser
    assets are placed on it by nearest neighbour (a ``ComplexSource`` without resampling):
    every coarse value is kept as measured, a 2 x 2 or 6 x 6 block of the finer grid, so the
    stack reads as a stacked file resampled by nearest would, and no value is blended with
    nodata at a swath edge."""
    first = members[0]
    names = [b.name for b in first.bands]
    heads = []
    for m in members:
        if [b.name for b in m.bands] != names:
            raise InputError(f"{m.href}: item {m.item} has the bands "
                             f"{', '.join(b.name for b in m.bands)} but {first.item} of the "
                             f"same date has {', '.join(names)}")
        heads.append([_head(b.href, allow_remote) for b in m.bands])
    h0 = heads[0][0]
    for m, hs in zip(members, heads):
        for b, h in zip(m.bands, hs):
            where = f"{b.href}: item {m.item} asset {b.key!r}"
            if h["count"] != 1:
                raise InputError(f"{where} has {h['count']} bands; a stack of assets takes "
                                 "single-band assets")
            if h["crs"] != h0["crs"]:
                raise InputError(f"{where} is in {h['crs']} but asset {first.bands[0].key!r} "
                                 f"of {first.item} is in {h0['crs']}; reproject the assets")
            if h["dtype"] != h0["dtype"]:
                raise InputError(f"{where} is {h['dtype']} but asset {first.bands[0].key!r} of "
                                 f"{first.item} is {h0['dtype']}; a stack has one data type")
            if abs(h["transform"].b) > 0 or abs(h["transform"].d) > 0:
                raise InputError(f"{where} has a rotated grid; a stack of assets needs "
                                 "north-up rasters")
    for j in range(len(names)):  # one date, one radiometry per band
        for m, hs in zip(members[1:], heads[1:]):
            if (hs[j]["scales"], hs[j]["offsets"]) != (heads[0][j]["scales"],
                                                       heads[0][j]["offsets"]):
                raise InputError(f"{m.bands[j].href}: item {m.item} asset {m.bands[j].key!r} "
                                 f"declares another scale/offset than {first.item}'s")
    flat = [h for hs in heads for h in hs]
    finest = min(flat, key=lambda h: abs(h["transform"].a * h["transform"].e))
    xres, yres = finest["transform"].a, finest["transform"].e
    left = min(h["bounds"].left for h in flat)
    top = max(h["bounds"].top for h in flat)
    right = max(h["bounds"].right for h in flat)
    bottom = min(h["bounds"].bottom for h in flat)
    width = int(math.ceil(round((right - left) / xres, 6)))
    height = int(math.ceil(round((bottom - top) / yres, 6)))
    gtype = GDAL_TYPE_NAMES.get(h0["dtype"])
    if gtype is None:
        raise InputError(f"{first.href}: data type {h0['dtype']} cannot be stacked")
    top_value = 255 if gtype == "Byte" else 65535 if gtype == "UInt16" else 1

    def source(href: str, h: dict[str, Any], extra: str = "") -> str:
        xoff = (h["bounds"].left - left) / xres
        yoff = (h["bounds"].top - top) / yres
        dw = h["width"] * h["transform"].a / xres
        dh = h["height"] * h["transform"].e / yres
        nd = "" if h["nodata"] is None else f"      <NODATA>{h['nodata']}</NODATA>\n"
        return ("    <ComplexSource>\n"
                f'      <SourceFilename relativeToVRT="0">{escape(href)}</SourceFilename>\n'
                "      <SourceBand>1</SourceBand>\n"
                f'      <SrcRect xOff="0" yOff="0" xSize="{h["width"]}" '
                f'ySize="{h["height"]}"/>\n'
                f'      <DstRect xOff="{xoff!r}" yOff="{yoff!r}" xSize="{dw!r}" '
                f'ySize="{dh!r}"/>\n{nd}{extra}    </ComplexSource>')

    lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">']
    if h0["crs"] is not None:
        lines.append(f"  <SRS>{escape(h0['crs'].to_wkt())}</SRS>")
    lines.append(f"  <GeoTransform>{left!r}, {xres!r}, 0.0, {top!r}, 0.0, {yres!r}"
                 "</GeoTransform>")
    for j, name in enumerate(names):
        lines.append(f'  <VRTRasterBand dataType="{gtype}" band="{j + 1}">')
        lines.append(f"    <Description>{escape(name)}</Description>")
        lines.append(f"    <ColorInterp>{'Gray' if j == 0 else 'Undefined'}</ColorInterp>")
        scale, offset = heads[0][j]["scales"][0], heads[0][j]["offsets"][0]
        if (scale, offset) != (1.0, 0.0):  # the asset's declared reflectance rule travels
            lines.append(f"    <Offset>{offset!r}</Offset>\n    <Scale>{scale!r}</Scale>")
        lines += [source(m.bands[j].href, hs[j]) for m, hs in zip(members, heads)]
        lines.append("  </VRTRasterBand>")
    lines.append(f'  <VRTRasterBand dataType="{gtype}" band="{len(names) + 1}">')
    lines.append("    <ColorInterp>Alpha</ColorInterp>")
    alpha = (f"      <ScaleOffset>{top_value}</ScaleOffset>\n"
             "      <ScaleRatio>0</ScaleRatio>\n")
    lines += [source(b.href, h, alpha) for m, hs in zip(members, heads)
              for b, h in zip(m.bands, hs)]
    lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    target.write_text("\n".join(lines) + "\n")
    return target


def _head(href: str, allow_remote: Sequence[str]) -> dict[str, Any]:
    try:
        with open_input(href, allow_remote) as src:  # the guard's checks, as for any input
            return {"crs": src.crs, "transform": src.transform, "bounds": src.bounds,
                    "width": src.width, "height": src.height, "count": src.count,
                    "dtype": src.dtypes[0], "nodata": src.nodata,
                    "colorinterp": [ci.name.capitalize() for ci in src.colorinterp],
                    "scales": list(src.scales), "offsets": list(src.offsets),
                    "descriptions": list(src.descriptions)}
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{href}: not a readable raster ({first_line(exc)})") from None


