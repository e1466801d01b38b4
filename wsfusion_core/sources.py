"""Inputs given as lists: a text file of paths, or a STAC ItemCollection saved on disk.

STAC items of one date (one pass of the satellite or one flight) are mosaicked into one virtual
raster (VRT) per date, so each date is one input of the fusion, as the paper treats dates.
Nothing is downloaded: remote hrefs are named as GDAL virtual file system paths (``/vsicurl/``,
``/vsis3/``, ``/vsigs/``, ``/vsiaz/``) and read in place where the caller allows their host or
bucket (remote.py); otherwise refused in one line.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence
from xml.sax.saxutils import escape

from .errors import InputError, first_line
from .input_guard import GDAL_TYPE_NAMES, open_input
from .options import STAC_GROUPS
from .remote import check_remote, gdal_name, is_remote_name, parse_remote


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
class StacAsset:
    item: str
    href: str  # GDAL path
    when: dt.datetime
    lon: float


def stac_assets(path: str | os.PathLike, asset: str, allow_remote: Sequence[str] = ()
                ) -> list[StacAsset]:
    """The ``asset`` of every item of a STAC ItemCollection JSON file; remote hrefs only where
    a pattern of ``allow_remote`` (remote.patterns) allows their host or bucket."""
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
        if asset not in it.assets:
            have = ", ".join(sorted(it.assets)) or "none"
            raise InputError(f"{p}: item {it.id} has no asset {asset!r} (assets: {have})")
        when = it.datetime or _parse(it.properties.get("start_datetime"))
        if when is None:
            raise InputError(f"{p}: item {it.id} has no datetime")
        bbox = it.bbox or [0.0, 0.0, 0.0, 0.0]
        href = gdal_path(it.assets[asset].href, p.parent)
        remote = parse_remote(href)
        if remote is not None:
            check_remote(remote, allow_remote, f"item {it.id}: asset {asset!r} is remote "
                         f"({it.assets[asset].href}) and", path=p)
        out.append(StacAsset(it.id, href, when, (bbox[0] + bbox[2]) / 2))
    return out


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
def stac_inputs(path: str | os.PathLike, asset: str, group: str, output: str | os.PathLike,
                allow_remote: Sequence[str] = ()) -> Iterator[list[str]]:
    """The fusion inputs of a STAC ItemCollection: one per group, date order. Mosaics are
    written to a hidden folder beside ``output`` (where every worker of a cluster that writes
    the output can read them) and removed afterwards."""
    out = Path(output)
    folder = out.with_name(f".{out.name}.inputs")
    folder.mkdir(exist_ok=True)
    try:
        yield group_inputs(path, asset, group, folder, allow_remote)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def group_inputs(path: str | os.PathLike, asset: str, group: str, folder: Path,
                 allow_remote: Sequence[str] = ()) -> list[str]:
    """One input per group (date order): the asset itself when the group is one file, else a
    VRT written into ``folder``."""
    groups: dict[str, list[StacAsset]] = {}
    for a in sorted(stac_assets(path, asset, allow_remote), key=lambda a: (a.when, a.item)):
        groups.setdefault(group_key(a, group), []).append(a)
    out = []
    for key, members in groups.items():
        if len(members) == 1:
            out.append(members[0].href)
        else:
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)
            out.append(str(mosaic_vrt(members, folder / f"{safe}.vrt", allow_remote)))
    return out


def mosaic_vrt(members: Sequence[StacAsset], target: Path, allow_remote: Sequence[str] = ()
               ) -> Path:
    """A VRT mosaic of same-CRS rasters on the first one's pixel size, plus an alpha band that
    is 0 where no member has data (so gaps between items are not read as valid pixels)."""
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
    for b in range(1, first["count"] + 2):
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
            if nd is not None:
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


def _head(href: str, allow_remote: Sequence[str]) -> dict[str, Any]:
    try:
        with open_input(href, allow_remote) as src:  # the guard's checks, as for any input
            return {"crs": src.crs, "transform": src.transform, "bounds": src.bounds,
                    "width": src.width, "height": src.height, "count": src.count,
                    "dtype": src.dtypes[0], "nodata": src.nodata,
                    "colorinterp": [ci.name.capitalize() for ci in src.colorinterp],
                    "descriptions": list(src.descriptions)}
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{href}: not a readable raster ({first_line(exc)})") from None


