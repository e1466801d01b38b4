"""Labelled imagery and the synthetic multi-input samples the fusion model trains on.

Two label sources: the Dubai tiles (JPEG + RGB-coded PNG masks, read with Pillow only) and the
user's own GeoTIFF with a label raster or a vector layer (rasterio; vectors through OGR), so a
user can fine-tune on their region with OpenStreetMap roads and buildings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from wsfusion_core.classes import CLASS_NAMES, SEGMENTATION_NODATA
from wsfusion_core.errors import InputError

from .artifacts import ArtifactMix, CloudBank, corrupt, spoil_input
from .splits import TEST_TILES, TRAIN_TILES, VAL_TILES

__all__ = ["TRAIN_TILES", "VAL_TILES", "TEST_TILES"]

# The real mask colours (they differ from the data set's classes.json; see shared/data/README).
DUBAI_COLOURS: dict[tuple[int, int, int], int] = {
    (0x3C, 0x10, 0x98): 2,  # Building
    (0x6E, 0xC1, 0xE4): 1,  # Road
    (0x84, 0x29, 0xF6): 0,  # Land (unpaved area)
    (0xFE, 0xDD, 0x3A): 0,  # Vegetation
    (0xE2, 0xA9, 0x29): 0,  # Water
    (0x9B, 0x9B, 0x9B): 0,  # Unlabeled
    (0x00, 0x00, 0x00): 0,  # no label
}


def colour_mask_to_labels(mask: np.ndarray, colours: Mapping[tuple[int, int, int], int]
                          = DUBAI_COLOURS, source: str = "<mask>") -> np.ndarray:
    """Exact colour matching (masks are lossless); an unknown colour is an error, not a guess."""
    if mask.ndim != 3 or mask.shape[2] < 3:
        raise InputError(f"{source}: expected an RGB mask, got shape {mask.shape}")
    code = (mask[..., 0].astype(np.uint32) << 16) | (mask[..., 1].astype(np.uint32) << 8) \
        | mask[..., 2].astype(np.uint32)
    out = np.full(code.shape, SEGMENTATION_NODATA, np.uint8)
    for (r, g, b), cls in colours.items():
        out[code == ((r << 16) | (g << 8) | b)] = cls
    if (out == SEGMENTATION_NODATA).any():
        bad = code[out == SEGMENTATION_NODATA][0]
        raise InputError(f"{source}: unknown mask colour #{int(bad):06X}")
    return out


def load_dubai(root: str | os.PathLike, tiles: Sequence[int]
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image uint8 (H,W,3), labels uint8 (H,W)) for every image of the given tiles."""
    from PIL import Image

    root = Path(root)
    out = []
    for t in tiles:
        images = sorted((root / f"tile_{t}" / "images").glob("*.jpg"))
        if not images:
            raise InputError(f"{root / f'tile_{t}'}: no images found")
        for img_path in images:
            mask_path = root / f"tile_{t}" / "masks" / (img_path.stem + ".png")
            img = np.asarray(Image.open(img_path).convert("RGB"))
            mask = np.asarray(Image.open(mask_path).convert("RGB"))
            if img.shape[:2] != mask.shape[:2]:
                raise InputError(f"{mask_path}: size {mask.shape[:2]} differs from the image's "
                                 f"{img.shape[:2]}")
            out.append((img, colour_mask_to_labels(mask, source=str(mask_path))))
    return out


# ---------------------------------------------------------------- user data (GeoTIFF + labels)

def _to_uint8(bands: np.ndarray, declared: tuple[float, float, str] | None = None
              ) -> np.ndarray:
    """Non-byte imagery on the scale inference would give it (``view.radiometry``: declared
    conventions aside, one joint estimate), as the 8-bit values the recipe trains on."""
    if bands.dtype == np.uint8:
        return bands
    from wsfusion_core.view import radiometry, to_unit

    valid = np.isfinite(bands).all(axis=0)
    rad = radiometry([bands], [valid], [bands.dtype.name], declared=[declared])
    unit = to_unit(np.nan_to_num(bands), rad.lo[0], rad.hi[0])
    return (unit * 255).round().astype(np.uint8)


def load_labelled_geotiff(image: str | os.PathLike, labels: str | os.PathLike, *,
                          class_field: str = "class",
                          class_map: Mapping[str, int] | None = None,
                          line_width: float = 6.0, bands: Sequence[int] = (1, 2, 3)
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Read a GeoTIFF and its labels onto the same grid.

    ``labels`` is either a raster of class codes (resampled nearest onto the image grid where the
    grids differ) or a vector layer (GeoPackage / GeoJSON / Shapefile) whose ``class_field`` holds
    a class name (``road``, ``building``…) or code; lines are buffered to ``line_width`` map
    units. Unlabelled pixels are background. Returns (image uint8 (H,W,3), labels uint8 (H,W))."""
    import rasterio

    from wsfusion_core.view import file_declaration

    image, labels = Path(image), Path(labels)
    for p in (image, labels):
        if not p.exists():
            raise InputError(f"{p}: file not found")
    try:
        with rasterio.open(image) as src:
            if max(bands) > src.count:
                raise InputError(f"{image}: has {src.count} bands, bands {tuple(bands)} requested")
            pixels = _to_uint8(src.read(list(bands)), file_declaration(image, bands))
            grid = dict(crs=src.crs, transform=src.transform, width=src.width, height=src.height)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{image}: not a readable raster ({exc})") from None
    if labels.suffix.lower() in (".tif", ".tiff", ".img", ".vrt"):
        lab = _label_raster(labels, grid)
    else:
        lab = _label_vector(labels, grid, class_field, class_map, line_width)
    return np.moveaxis(pixels, 0, -1).copy(), lab


def _label_raster(path: Path, grid: dict) -> np.ndarray:
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    with rasterio.open(path) as src:
        if (src.crs == grid["crs"] and src.transform == grid["transform"]
                and (src.width, src.height) == (grid["width"], grid["height"])):
            lab = src.read(1)
        else:
            if src.crs is None or grid["crs"] is None:
                raise InputError(f"{path}: grid differs from the image and has no CRS to align")
            with WarpedVRT(src, crs=grid["crs"], transform=grid["transform"],
                           width=grid["width"], height=grid["height"],
                           resampling=Resampling.nearest) as vrt:
                lab = vrt.read(1)
        nodata = src.nodata
    out = lab.astype(np.int64)
    if nodata is not None:
        out[lab == nodata] = SEGMENTATION_NODATA
    bad = (out != SEGMENTATION_NODATA) & ((out < 0) | (out >= len(CLASS_NAMES)))
    if bad.any():
        raise InputError(f"{path}: label value {int(out[bad][0])} is not a class code "
                         f"0..{len(CLASS_NAMES) - 1} (or {SEGMENTATION_NODATA} for nodata)")
    return out.astype(np.uint8)


def _class_code(value: object, class_map: Mapping[str, int], source: Path) -> int | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) or (isinstance(value, str) and value.isdigit()):
        code = int(value)
        if 0 <= code < len(CLASS_NAMES):
            return code
        raise InputError(f"{source}: class code {code} is not 0..{len(CLASS_NAMES) - 1}")
    key = str(value).strip().lower()
    if key in class_map:
        return class_map[key]
    return None  # other feature types (e.g. OSM landuse) are background


def _label_vector(path: Path, grid: dict, class_field: str, class_map: Mapping[str, int] | None,
                  line_width: float) -> np.ndarray:
    from pyproj import CRS, Transformer
    from rasterio import features
    from shapely import wkb
    from shapely.ops import transform as shp_transform

    try:
        from osgeo import ogr, osr
    except ImportError:  # pragma: no cover - GDAL's Python bindings are part of QGIS installs
        raise InputError(f"{path}: reading vector labels needs GDAL's Python bindings (osgeo)"
                         ) from None
    ogr.UseExceptions()
    osr.UseExceptions()
    cmap = {k.lower(): v for k, v in (class_map or {n: i for i, n in enumerate(CLASS_NAMES)}
                                       ).items()}
    try:
        ds = ogr.Open(str(path))
    except RuntimeError as exc:
        raise InputError(f"{path}: not a readable vector layer ({exc})") from None
    if ds is None or ds.GetLayerCount() == 0:
        raise InputError(f"{path}: not a readable vector layer")
    layer = ds.GetLayer(0)
    defn = layer.GetLayerDefn()
    fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    if class_field not in fields:
        raise InputError(f"{path}: no attribute {class_field!r} (has {', '.join(fields)})")
    srs = layer.GetSpatialRef()
    to_grid = None
    if srs is not None and grid["crs"] is not None:
        src_crs = CRS.from_wkt(srs.ExportToWkt())
        if src_crs != CRS.from_user_input(grid["crs"]):
            to_grid = Transformer.from_crs(src_crs, grid["crs"], always_xy=True).transform
    by_class: dict[int, list] = {}
    for feat in layer:
        code = _class_code(feat.GetField(class_field), cmap, path)
        geom = feat.GetGeometryRef()
        if code is None or geom is None:
            continue
        shape = wkb.loads(bytes(geom.ExportToIsoWkb()))
        if to_grid is not None:
            shape = shp_transform(to_grid, shape)  # shapely 2.0 API (works with 2.1 too)
        if shape.geom_type in ("LineString", "MultiLineString", "Point", "MultiPoint"):
            shape = shape.buffer(line_width / 2, cap_style=2 if "Line" in shape.geom_type else 1)
        if not shape.is_empty:
            by_class.setdefault(code, []).append(shape)
    out = np.zeros((grid["height"], grid["width"]), np.uint8)
    for code in sorted(by_class):  # higher codes (buildings) are drawn over roads
        features.rasterize(((g, code) for g in by_class[code]), out=out,
                           transform=grid["transform"])
    return out


# ---------------------------------------------------------------- the training samples

@dataclass
class SampleConfig:
    """How one synthetic multi-input sample is made. K and share are drawn per batch / input."""

    crop: int = 192
    k_choices: Sequence[int] = (2, 3, 4, 5, 6)
    k_probs: Sequence[float] | None = (0.3, 0.3, 0.2, 0.1, 0.1)
    share_range: tuple[float, float] = (0.1, 0.6)
    cloud_prob: float = 0.5  # else missing data (the paper alternates the two)
    declared_prob: float = 0.5  # missing data marked invalid (valid=False) vs bare zeros
    scale_range: tuple[float, float] = (1.0, 1.0)  # random downsampling factor
    jitter: float = 0.0  # strength of independent per-input photometric changes
    augment: bool = True  # flips / rot90
    alternate: bool = False  # fixed scenarios: inputs alternate cloud, missing, cloud, ...
    # "paper": clouds or missing data as the paper (corrupt); "real": artifacts like real ones
    # (spoil_input: haze, clouds with shadows, overcast dates, fills, stripes, radiometry);
    # "mixed": half the samples each.
    artifacts: str = "paper"
    mix: ArtifactMix = field(default_factory=ArtifactMix)
    # One brightness gain (log-uniform in this range) and gamma for ALL inputs and the clean
    # image of a sample: the common radiometric scale at inference differs from scene to scene
    # (sensors, exports, --scale), while the relations between dates that the set-aware net
    # reads must survive. (1, 1): off.
    joint_gain: tuple[float, float] = (1.0, 1.0)


def _resize_uint8(a: np.ndarray, size: int, labels: bool) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(a)
    return np.asarray(im.resize((size, size), Image.NEAREST if labels else Image.BOX))


def _jitter(img: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    if strength <= 0:
        return img
    gain = 1 + strength * rng.uniform(-0.15, 0.15)
    tint = 1 + strength * rng.uniform(-0.06, 0.06, 3)
    gamma = np.exp(strength * rng.uniform(-0.15, 0.15))
    return np.clip((img ** gamma) * gain * tint, 0, 1).astype(np.float32)


def make_sample(image: np.ndarray, labels: np.ndarray, k: int, cfg: SampleConfig,
                rng: np.random.Generator, clouds: CloudBank | None,
                shares: Sequence[float] | None = None, at: tuple[int, int] | None = None
                ) -> dict[str, np.ndarray]:
    """One sample: a random (or given) crop of a labelled image turned into K spoiled inputs.

    Returns inputs (K,3,H,W) float32 0..1, valid (K,H,W) bool, labels (H,W) int64, clean (3,H,W),
    affected (K,H,W) bool (for evaluation only: training never sees it)."""
    h, w = labels.shape
    c = cfg.crop
    lo_s, hi_s = cfg.scale_range
    # Log-uniform, so ×1-×2 is drawn as often as ×4-×8 (several ground resolutions).
    scale = float(np.exp(rng.uniform(np.log(lo_s), np.log(hi_s)))) if hi_s > lo_s else lo_s
    scale = float(min(scale, h / c, w / c))
    src = int(round(c * scale))
    if at is None:
        y, x = int(rng.integers(0, h - src + 1)), int(rng.integers(0, w - src + 1))
    else:
        y, x = at
    img = image[y:y + src, x:x + src]
    lab = labels[y:y + src, x:x + src]
    if src != c:
        img, lab = _resize_uint8(img, c, False), _resize_uint8(lab, c, True)
    if cfg.augment:
        r = int(rng.integers(4))
        img, lab = np.rot90(img, r), np.rot90(lab, r)
        if rng.random() < 0.5:
            img, lab = img[:, ::-1], lab[:, ::-1]
    clean = np.ascontiguousarray(img, dtype=np.float32) / 255.0
    inputs = np.empty((k, 3, c, c), np.float32)
    valid = np.ones((k, c, c), bool)
    affected = np.zeros((k, c, c), bool)
    if cfg.artifacts not in ("paper", "real", "mixed"):
        raise ValueError(f"artifacts must be 'paper', 'real' or 'mixed', not {cfg.artifacts!r}")
    # "mixed": each sample is either the paper's artifacts or the realistic mix, half and half
    # (the paper's thick clouds and bare zero gaps teach rejection sharply; the realistic mix
    # brings haze, shadows, overcast dates and radiometric differences).
    real = cfg.artifacts == "real" or (cfg.artifacts == "mixed" and rng.random() < 0.5)
    for i in range(k):
        if real:
            spoiled, valid[i], affected[i] = spoil_input(clean, rng, cfg.mix, clouds)
            inputs[i] = spoiled.transpose(2, 0, 1)
            continue
        share = shares[i] if shares is not None else rng.uniform(*cfg.share_range)
        if cfg.alternate:
            kind = "cloud" if i % 2 == 0 else "missing"
        else:
            kind = "cloud" if rng.random() < cfg.cloud_prob else "missing"
        spoiled, aff = corrupt(_jitter(clean, cfg.jitter, rng), kind, share, rng, clouds)
        if kind == "missing" and rng.random() < cfg.declared_prob:
            valid[i] = ~aff
        inputs[i] = spoiled.transpose(2, 0, 1)
        affected[i] = aff
    g_lo, g_hi = cfg.joint_gain
    if g_hi > g_lo:
        gain = float(np.exp(rng.uniform(np.log(g_lo), np.log(g_hi))))
        gamma = float(np.exp(rng.uniform(-0.3, 0.3)))
        inputs = np.clip(gain * inputs ** gamma, 0, 1).astype(np.float32)
        clean = np.clip(gain * clean ** gamma, 0, 1).astype(np.float32)
    return {"inputs": inputs, "valid": valid, "labels": np.ascontiguousarray(lab, np.int64),
            "clean": clean.transpose(2, 0, 1).copy(), "affected": affected}


class FusionDataset:
    """A torch-style map dataset of synthetic samples; ``len`` samples per epoch.

    Every sample's randomness comes from (seed, epoch, index), so results do not depend on the
    number of workers or which worker made a sample (the authors' code reused one seed in every
    worker). K is drawn per batch, so one batch has one K."""

    def __init__(self, items: Sequence[tuple[np.ndarray, np.ndarray]], length: int,
                 batch_size: int, cfg: SampleConfig, clouds: CloudBank | None,
                 seed: int = 0, fixed_k: int | None = None) -> None:
        self.items = list(items)
        self.length = int(length)
        self.batch_size = int(batch_size)
        self.cfg = cfg
        self.clouds = clouds
        self.seed = int(seed)
        self.fixed_k = fixed_k
        self.epoch = 0
        areas = np.array([lab.size for _, lab in self.items], np.float64)
        self.p = areas / areas.sum()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def k_for(self, index: int) -> int:
        if self.fixed_k is not None:
            return self.fixed_k
        rng = np.random.default_rng([self.seed, self.epoch, index // self.batch_size, 7])
        probs = None if self.cfg.k_probs is None else np.asarray(self.cfg.k_probs, float)
        return int(rng.choice(np.asarray(self.cfg.k_choices), p=None if probs is None
                              else probs / probs.sum()))

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        item = int(rng.choice(len(self.items), p=self.p))
        image, labels = self.items[item]
        return make_sample(image, labels, self.k_for(index), self.cfg, rng, self.clouds)


def worker_init(worker_id: int) -> None:
    """Distinct torch/numpy global seeds per worker (samples themselves are seeded by index)."""
    import torch

    seed = (torch.initial_seed() + worker_id) % 2 ** 32
    np.random.seed(seed)


def collate(batch: list[dict[str, np.ndarray]]) -> dict:
    import torch

    return {k: torch.from_numpy(np.stack([b[k] for b in batch])) for k in batch[0]}


def fixed_crops(items: Sequence[tuple[np.ndarray, np.ndarray]], n: int, crop: int
                ) -> list[tuple[int, int, int]]:
    """A deterministic, spread-out set of (item, y, x) crop positions for evaluation."""
    rng = np.random.default_rng(1234)
    out = []
    for j in range(n):
        i = j % len(items)
        h, w = items[i][1].shape
        out.append((i, int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))))
    return out
