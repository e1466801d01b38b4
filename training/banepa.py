"""Banepa (Nepal) building labels: OpenAerialMap web tiles with OpenStreetMap footprints.

Only buildings are labelled, so a pixel outside every footprint is "not building" (background
or road: unknown which), coded NOT_BUILDING for the partial-label loss (training/losses.py),
never plain background. The 48 labelled zoom-19 tiles are mosaicked by their tile indices (they
share edges exactly in tile space) and downsampled 2x (0.13 m → ~0.26 m per pixel) so that the
training's resolution draws (×1…×8) span ~0.26–2 m.

Two readers: from the original GeoTIFF + GeoJSON (rasterio, this machine), or from the prepared
``banepa_prepared/`` folder (PIL only: image.jpg, labels.png) that prepare_device_data writes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from wsfusion_core.classes import CLASS_NAMES
from wsfusion_core.errors import InputError

from .splits import BANEPA_VAL_COLUMNS

BUILDING = CLASS_NAMES.index("building")
NOT_BUILDING = len(CLASS_NAMES)  # a label *set*: background or road (see losses.LABEL_SETS)
DOWNSAMPLE = 2
PREPARED = "banepa_prepared"
_TILE = re.compile(r"OAM-(\d+)-(\d+)-19\.tif$")


def mosaic_from_geotiffs(root: str | Path) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(image uint8 (H, W, 3), labels uint8 (H, W) in {BUILDING, NOT_BUILDING}, tile column of
    every 512-px mosaic column block) at the native 0.13 m."""
    import rasterio
    from rasterio import features
    from shapely.geometry import shape

    root = Path(root)
    tiles = {}
    for p in sorted((root / "train" / "oam").glob("*.tif")):
        m = _TILE.search(p.name)
        if m:
            tiles[(int(m.group(1)), int(m.group(2)))] = p
    if not tiles:
        raise InputError(f"{root}: no Banepa tiles under train/oam")
    geojson = next((root / "train" / "osm").glob("*.geojson"))
    polys = [shape(f["geometry"]) for f in json.loads(geojson.read_text())["features"]]
    xs = sorted({x for x, _ in tiles})
    ys = sorted({y for _, y in tiles})
    size = 512
    img = np.zeros((len(ys) * size, len(xs) * size, 3), np.uint8)
    lab = np.full(img.shape[:2], NOT_BUILDING, np.uint8)
    for (x, y), p in tiles.items():
        with rasterio.open(p) as src:
            if src.shape != (size, size):
                raise InputError(f"{p}: expected {size}x{size} px, got {src.shape}")
            data = src.read([1, 2, 3])
            tile_lab = features.rasterize(((g, BUILDING) for g in polys), out_shape=src.shape,
                                          transform=src.transform, fill=NOT_BUILDING,
                                          dtype="uint8")
        r, c = ys.index(y) * size, xs.index(x) * size
        img[r:r + size, c:c + size] = np.moveaxis(data, 0, -1)
        lab[r:r + size, c:c + size] = tile_lab
    return img, lab, xs


def _downsample(img: np.ndarray, lab: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    h, w = lab.shape[0] // f, lab.shape[1] // f
    im = np.asarray(Image.fromarray(img).resize((w, h), Image.BOX))
    # A pixel is building where most of its footprint is (box filter on the indicator).
    frac = np.asarray(Image.fromarray(((lab == BUILDING) * 255).astype(np.uint8)).resize(
        (w, h), Image.BOX))
    return im, np.where(frac >= 128, BUILDING, NOT_BUILDING).astype(np.uint8)


def write_prepared(root: str | Path, out: str | Path) -> Path:
    """The mosaic (downsampled) as image.jpg + labels.png + meta.json in ``out``."""
    from PIL import Image

    img, lab, xs = mosaic_from_geotiffs(root)
    img, lab = _downsample(img, lab, DOWNSAMPLE)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(out / "image.jpg", quality=92)
    Image.fromarray(lab).save(out / "labels.png", optimize=True)
    (out / "meta.json").write_text(json.dumps({
        "columns": xs, "column_width_px": 512 // DOWNSAMPLE, "downsample": DOWNSAMPLE,
        "gsd_m": 0.13 * DOWNSAMPLE, "labels": {"building": BUILDING, "not_building": NOT_BUILDING},
        "source": "OpenAerialMap (CC BY 4.0) tiles, OpenStreetMap (ODbL) buildings; "
                  "segmentation/banepa of the shared data"}, indent=1) + "\n")
    return out


def load_banepa(data: str | Path) -> tuple[list, list]:
    """(train items, validation items) of (image, labels); validation = BANEPA_VAL_COLUMNS.
    ``data`` is the shared data folder or a prepared device folder (PIL only there)."""
    from PIL import Image

    data = Path(data)
    prep = data / "segmentation" / PREPARED
    if (prep / "meta.json").is_file():
        meta = json.loads((prep / "meta.json").read_text())
        img = np.asarray(Image.open(prep / "image.jpg").convert("RGB"))
        lab = np.asarray(Image.open(prep / "labels.png"))
        xs, cw = meta["columns"], meta["column_width_px"]
    else:
        img, lab, xs = mosaic_from_geotiffs(data / "segmentation" / "banepa")
        img, lab = _downsample(img, lab, DOWNSAMPLE)
        cw = 512 // DOWNSAMPLE
    val_cols = [i for i, x in enumerate(xs) if x in BANEPA_VAL_COLUMNS]
    cut = min(val_cols) * cw if val_cols else img.shape[1]
    train = [(np.ascontiguousarray(img[:, :cut]), np.ascontiguousarray(lab[:, :cut]))]
    val = [(np.ascontiguousarray(img[:, cut:]), np.ascontiguousarray(lab[:, cut:]))] \
        if cut < img.shape[1] else []
    return train, val
