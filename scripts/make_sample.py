"""Make the shipped demo sample ``wsfusion_core/data/sample/`` (run once; the output is committed).

Three 512×512 crops of different dates of one NAIP quarter-quad (../shared/data/geotiff/
naip_multidate), each spoiled with real cloud shapes and texture and with a gap, plus the clean
crop of the first (reference) date as ``clean_reference.tif``. Deterministic (fixed seed).

    .venv/bin/python scripts/make_sample.py [--shared ../shared] [--out wsfusion_core/data/sample]
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import ColorInterp
from rasterio.windows import Window, from_bounds
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
DATES = ("20100629", "20140720", "20180716")  # first = reference date
# In the reference date's pixels: a section road and a farmstead among prairie lakes.
CROP = Window(col_off=10, row_off=205, width=512, height=512)
SIZE = 512
SEED = 20240607
EOLEARN_DATES = (14, 26)  # CLP time steps with ~40 % soft cloud cover
# PHOTOMETRIC=RGB + ALPHA=UNSPECIFIED: band 4 is NIR, not alpha (GDAL's default for 4 bytes).
PROFILE = dict(driver="GTiff", tiled=True, blockxsize=256, blockysize=256, compress="deflate",
               predictor=2, zlevel=9, interleave="pixel", photometric="RGB", alpha="UNSPECIFIED")


def value_noise(shape: tuple[int, int], rng: np.random.Generator, octaves: int = 5,
                base: int = 4) -> np.ndarray:
    """Perlin-like fractal noise in 0..1: bicubic-upsampled random grids summed over octaves."""
    h, w = shape
    total = np.zeros(shape, np.float32)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        cells = base * 2**o
        grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
        img = Image.fromarray(grid, mode="F").resize((w, h), Image.BICUBIC)
        total += amp * np.asarray(img, np.float32)
        norm += amp
        amp *= 0.5
    total /= norm
    return (total - total.min()) / (total.max() - total.min() + 1e-9)


def _resize(a: np.ndarray, shape: tuple[int, int], blur: float = 0.0) -> np.ndarray:
    img = Image.fromarray(a.astype(np.float32), mode="F").resize(shape[::-1], Image.BILINEAR)
    out = np.asarray(img, np.float32)
    return ndimage.gaussian_filter(out, blur) if blur else out


def cloud38(shared: Path) -> tuple[np.ndarray, np.ndarray]:
    """Real Landsat 8 cloud: (texture 0..1 brightness, binary shape) from the 38-Cloud patch."""
    d = shared / "data" / "clouds" / "cloud38"
    with rasterio.open(glob.glob(str(d / "truecolor_*.TIF"))[0]) as src:
        rgb = src.read().astype(np.float32)
    with rasterio.open(glob.glob(str(d / "gt_*.TIF"))[0]) as src:
        gt = src.read(1) > 127
    lum = rgb.mean(axis=0)
    lo, hi = np.percentile(lum[gt], [5, 99])
    return np.clip((lum - lo) / (hi - lo), 0, 1), gt.astype(np.float32)


def cloud_layer(shape_alpha: np.ndarray, texture: np.ndarray, rng: np.random.Generator,
                ) -> tuple[np.ndarray, np.ndarray]:
    """Alpha (0..1) and RGB colour of one cloud scene: the real shape thinned and thickened by
    fractal noise, coloured white-grey by the real cloud texture."""
    detail = value_noise((SIZE, SIZE), rng, octaves=6, base=3)
    alpha = np.clip(shape_alpha * (0.55 + 0.9 * detail), 0, 1) ** 0.8
    grey = 185 + 70 * texture  # cloud tops are bright, near-neutral
    colour = np.stack([grey * 0.99, grey, grey * 1.02])
    return alpha, np.clip(colour, 0, 255)


def spoil(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    out = img.astype(np.float32).copy()
    out[:3] = out[:3] * (1 - alpha) + colour * alpha
    out[3] = out[3] * (1 - alpha) + colour[1] * alpha  # clouds are bright in NIR too
    return np.clip(out, 0, 255).round().astype(np.uint8)


def read_crop(path: Path, bounds) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        win = from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
        win = Window(win.col_off, win.row_off, SIZE, SIZE)
        data = src.read(window=win)
        prof = dict(crs=src.crs, transform=src.window_transform(win), count=src.count,
                    dtype=src.dtypes[0], width=SIZE, height=SIZE,
                    descriptions=src.descriptions, window=win)
    return data, prof


def write(path: Path, data: np.ndarray, prof: dict, nodata=None, mask=None, tags=None) -> None:
    kw = dict(PROFILE, crs=prof["crs"], transform=prof["transform"], count=data.shape[0],
              dtype=data.dtype.name, width=SIZE, height=SIZE, nodata=nodata)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", **kw) as dst:
            dst.write(data)
            dst.descriptions = ("red", "green", "blue", "nir")
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue,
                               ColorInterp.undefined]
            if mask is not None:
                dst.write_mask(np.where(mask, 255, 0).astype(np.uint8))
            dst.update_tags(**(tags or {}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT / ".." / "shared")
    ap.add_argument("--out", type=Path, default=ROOT / "wsfusion_core" / "data" / "sample")
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    src_dir = args.shared / "data" / "geotiff" / "naip_multidate"
    paths = [next(src_dir.glob(f"m_*_{d}.tif")) for d in DATES]
    with rasterio.open(paths[0]) as src:
        bounds = rasterio.windows.bounds(CROP, src.transform)

    # Cloud shapes: the 38-Cloud mask (reference date) and two eo-learn soft probabilities;
    # texture from the 38-Cloud true-colour patch. Each scene is shifted towards a different
    # part of the crop so that every spot is clear on at least one date.
    texture, gt = cloud38(args.shared)
    clp = np.load(args.shared / "data" / "clouds" / "eolearn_slovenia" / "CLP.npy")[..., 0]
    shapes = [_resize(np.rot90(gt), (SIZE, SIZE), blur=4),
              _resize(clp[EOLEARN_DATES[0]], (SIZE, SIZE), blur=2),
              _resize(np.fliplr(clp[EOLEARN_DATES[1]]), (SIZE, SIZE), blur=2)]
    tex = _resize(texture, (SIZE, SIZE))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    centres = [(0.3, 0.3), (0.7, 0.45), (0.4, 0.75)]
    layers = []
    for shape, (cy, cx) in zip(shapes, centres):
        focus = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 0.2**2)))
        layers.append(cloud_layer(np.clip(shape * (0.1 + 1.3 * focus), 0, 1),
                                  np.rot90(tex, k=len(layers)), rng))
    cloudy = np.stack([a > 0.35 for a, _ in layers])
    alone = cloudy.all(axis=0)  # nowhere clear: thin the third date's cloud there
    layers[2] = (np.where(alone, layers[2][0] * 0.2, layers[2][0]), layers[2][1])

    # Gaps: declared nodata (input 1), undeclared black (input 2), internal mask (input 3).
    gaps = [(slice(380, 470), slice(20, 200)), (slice(0, 512), slice(440, 512)),
            (slice(60, 170), slice(300, 420))]
    args.out.mkdir(parents=True, exist_ok=True)
    stats = []
    for i, (path, (alpha, colour), gap) in enumerate(zip(paths, layers, gaps), 1):
        clean, prof = read_crop(path, bounds)
        if i == 1:
            write(args.out / "clean_reference.tif", clean, prof, nodata=0,
                  tags={"WSFUSION_SAMPLE": f"clean crop of {path.name}"})
        img = spoil(clean, alpha, colour)
        img[img == 0] = 1 if i == 1 else 0  # keep real pixels distinct from declared nodata
        valid = np.ones((SIZE, SIZE), bool)
        valid[gap] = False
        img[:, gap[0], gap[1]] = 0
        how = ["gap = nodata 0 (declared)", "gap = black, no nodata declared",
               "gap = internal mask (also black)"][i - 1]
        write(args.out / f"input_{i}_{DATES[i - 1]}.tif", img, prof,
              nodata=0 if i == 1 else None, mask=valid if i == 3 else None,
              tags={"WSFUSION_SAMPLE": f"{path.name} + clouds + {how}"})
        win = prof["window"]
        stats.append({"file": f"input_{i}_{DATES[i - 1]}.tif", "source": path.name,
                      "window": [int(win.col_off), int(win.row_off), SIZE, SIZE],
                      "cloud_share": round(float((alpha > 0.35).mean()), 3),
                      "gap_share": round(float((~valid).mean()), 3), "gap": how})
    cover = np.stack([a > 0.35 for a, _ in layers]).all(axis=0).mean()
    print(json.dumps({"inputs": stats, "cloudy_on_all_dates": round(float(cover), 4),
                      "bounds": list(bounds)}, indent=1))
    total = sum(p.stat().st_size for p in args.out.glob("*.tif"))
    print(f"total {total / 1e6:.2f} MB in {args.out}")


if __name__ == "__main__":
    main()
