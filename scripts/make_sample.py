"""Make the shipped demo sample ``wsfusion_core/data/sample/`` (run once; the output is committed).

- ``banepa/``: 16 OpenAerialMap tiles of Banepa, Nepal (../shared/data/segmentation/banepa,
  the ``predict`` tiles: no labels, never trained on), mosaicked and resampled (area average)
  to 0.8 m in UTM 45N, then spoiled three times by the artifact code of ``training/artifacts.py``
  (real 38-Cloud texture, eo-learn cloud shapes, shadows, haze, fill, stripes, radiometric shift),
  each input with another kind of validity; input 3 on a grid offset by half a pixel. Plus the
  clean mosaic as ``clean_reference.tif``.
- ``s2_pair/``: one real Sentinel-2 L1C cloudy/clear pair (../shared/data/real_clouds/
  sen12mscr_pairs, patch 85_p492), bands B4, B3, B2 as uint16 reflectance x 10000.

Deterministic (fixed seed). ``PROVENANCE.md`` is written beside the files.

    .venv/bin/python scripts/make_sample.py [--shared ../shared] [--out wsfusion_core/data/sample]
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.merge import merge
from rasterio.transform import from_origin
from rasterio.warp import reproject, transform_bounds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED = 20261127
TILES = [(x, y) for y in range(220243, 220247) for x in range(386697, 386701)]  # 4 x 4 block
DST_CRS = CRS.from_epsg(32645)  # UTM 45N (Nepal)
RES = 0.8  # metres: within the 0.5-1 m the models were trained at (buildings best found here)
S2_PATCH = "85_p492"
S2_BANDS = (4, 3, 2)
PROFILE = dict(driver="GTiff", tiled=True, blockxsize=256, blockysize=256, compress="deflate",
               predictor=2, zlevel=9, interleave="pixel")


def banepa_mosaic(shared: Path) -> tuple[np.ndarray, dict]:
    """The 16 tiles on one 0.5 m UTM grid: (3, H, W) float32 0..1 and the grid profile."""
    folder = shared / "data" / "segmentation" / "banepa" / "predict" / "oam"
    srcs = [rasterio.open(folder / f"OAM-{x}-{y}-19.tif") for x, y in TILES]
    try:
        mos, transform = merge(srcs, indexes=[1, 2, 3])
        crs = srcs[0].crs
    finally:
        for s in srcs:
            s.close()
    h, w = mos.shape[1:]
    west, north = transform.c, transform.f
    east, south = west + w * transform.a, north + h * transform.e
    b = transform_bounds(crs, DST_CRS, west, south, east, north)
    # Inside the reprojected footprint (no empty corners); whole 256 px blocks not needed.
    x0, y1 = np.ceil(b[0] / RES) * RES + 2, np.floor(b[3] / RES) * RES - 2
    width = int((b[2] - 2 - x0) // RES)
    height = int((y1 - (b[1] + 2)) // RES)
    dst_t = from_origin(x0, y1, RES, RES)
    out = np.zeros((3, height, width), np.float32)
    reproject(mos.astype(np.float32), out, src_transform=transform, src_crs=crs,
              dst_transform=dst_t, dst_crs=DST_CRS, resampling=Resampling.average)
    return out / 255.0, dict(crs=DST_CRS, transform=dst_t, width=width, height=height,
                             src=(mos, transform, crs))


def regrid(src: tuple, profile: dict, dx: float, dy: float) -> tuple[np.ndarray, object]:
    """The mosaic resampled onto the grid shifted by (dx, dy) metres: a real alignment case."""
    mos, transform, crs = src
    t = from_origin(profile["transform"].c + dx, profile["transform"].f + dy, RES, RES)
    out = np.zeros((3, profile["height"], profile["width"]), np.float32)
    reproject(mos.astype(np.float32), out, src_transform=transform, src_crs=crs,
              dst_transform=t, dst_crs=DST_CRS, resampling=Resampling.average)
    return out / 255.0, t


def write_rgb8(path: Path, img01: np.ndarray, transform, nodata=None, mask=None) -> None:
    data = (np.clip(img01, 0, 1) * 255).round().astype(np.uint8)
    prof = dict(PROFILE, width=data.shape[2], height=data.shape[1], count=3, dtype="uint8",
                crs=DST_CRS, transform=transform, nodata=nodata, photometric="RGB")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", **prof) as dst:
            dst.write(data)
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
            if mask is not None:
                dst.write_mask(np.where(mask, 255, 0).astype(np.uint8))


def make_banepa(shared: Path, out: Path) -> list[str]:
    from training import artifacts as art

    rng = np.random.default_rng(SEED)
    bank = art.CloudBank.from_sources(shared / "data" / "clouds", ["cloud38", "eolearn"])
    clean, prof = banepa_mosaic(shared)
    out.mkdir(parents=True, exist_ok=True)
    write_rgb8(out / "clean_reference.tif", clean, prof["transform"])
    hwc = np.moveaxis(clean, 0, -1)
    # The source has its own gap (pure white in the OAM tiles): declared where the input can.
    from scipy import ndimage

    hole = ndimage.binary_dilation((clean >= 0.98).all(axis=0), iterations=2)
    notes = []

    # 1: thick cloud with its shadow over 35 %, a gap declared as nodata = 0.
    img, _, _ = art.cloud_with_shadow(hwc, 0.35, rng, bank, opacity=0.97)
    img, gap = art.fill(img, 0.08, rng, 0.0)
    gap |= hole
    img = np.where(gap[..., None], 0.0, np.maximum(img, 1 / 255))  # 0 only in the gaps
    write_rgb8(out / "input_1.tif", np.moveaxis(img, -1, 0), prof["transform"], nodata=0)
    notes.append("thick cloud (38-Cloud texture) with its shadow over 35 %; an 8 % gap "
                 "declared as **nodata = 0** (and the source's own gap)")

    # 2: another date: gain/tint shift, haze veil over half, an undeclared black strip.
    img = art.radiometric_shift(hwc, rng, 0.7)
    img, _ = art.haze(img, 0.5, rng)
    img, _, _ = art.cloud_with_shadow(img, 0.15, rng, bank, opacity=0.9)
    img, _ = art.fill(img, 0.06, rng, 0.0)
    write_rgb8(out / "input_2.tif", np.moveaxis(img, -1, 0), prof["transform"])
    notes.append("radiometric shift, haze veil over 50 %, cloud with shadow over 15 %, a 6 % "
                 "black fill, **no nodata declared** (the source's white gap stays as it is)")

    # 3: on a grid offset by half a pixel; cloud, SLC-off stripes marked in an internal mask.
    moved, t3 = regrid(prof["src"], prof, RES / 2, -RES / 2)
    img = art.radiometric_shift(np.moveaxis(moved, 0, -1), rng, 0.5)
    img, _, _ = art.cloud_with_shadow(img, 0.3, rng, bank, opacity=0.95)
    img, gaps = art.stripes(img, 0.12, rng, 0.0)
    hole3 = ndimage.binary_dilation((moved >= 0.98).all(axis=0), iterations=2)
    write_rgb8(out / "input_3.tif", np.moveaxis(img, -1, 0), t3, mask=~(gaps | hole3))
    notes.append("radiometric shift, cloud with shadow over 30 %, 12 % SLC-off stripes "
                 "marked in an **internal mask** (and the source's own gap); grid offset by "
                 "half a pixel (warped by fuse)")
    return notes


def make_s2(shared: Path, out: Path) -> None:
    base = shared / "data" / "real_clouds" / "sen12mscr_pairs"
    out.mkdir(parents=True, exist_ok=True)
    pairs = [("input_1_cloudy.tif", glob.glob(str(base / "cloudy" / f"*_{S2_PATCH}.tif"))[0]),
             ("input_2_clear.tif", glob.glob(str(base / "clear" / f"*_{S2_PATCH}.tif"))[0])]
    for name, src_path in pairs:
        with rasterio.open(src_path) as src:
            data = src.read(list(S2_BANDS))
            prof = dict(PROFILE, width=src.width, height=src.height, count=3, dtype="uint16",
                        crs=src.crs, transform=src.transform, blockxsize=128, blockysize=128)
        with rasterio.open(out / name, "w", **prof) as dst:
            dst.write(data)
            dst.descriptions = ("B4 red", "B3 green", "B2 blue")
            dst.update_tags(SOURCE=Path(src_path).name, SCALE="reflectance x 10000")


PROVENANCE = """# Demo sample: provenance

Made by `scripts/make_sample.py` (deterministic, seed {seed}), run once; used by
`wsfusion-raster demo`, `make demo` and the tests.

## `banepa/`: real high-resolution imagery, synthetic artifacts
| file | spoiled with |
|---|---|
{rows}
| `clean_reference.tif` | nothing: the clean mosaic (the answer) |

- Imagery: 16 OpenAerialMap tiles (zoom 19, `predict/oam/OAM-386697..386700-220243..220246-19`)
  of Banepa, Nepal, from `../shared/data/segmentation/banepa` (copied from hotosm/fAIr-models).
  **Licence: CC BY 4.0, © OpenAerialMap contributors** (attribution required; modified:
  mosaicked, reprojected to EPSG:32645 and resampled by area average from ~0.13 m to 0.8 m,
  spoiled with synthetic artifacts). These tiles carry no labels and are not used in training.
- Artifacts: `training/artifacts.py` (cloud texture from the 38-Cloud patch, Apache-2.0, Landsat
  public domain; cloud shapes from eo-learn's Slovenia cloud probabilities, MIT). Synthetic:
  numbers measured on this sample are synthetic-artifact numbers.

## `s2_pair/`: real clouds
- `input_1_cloudy.tif`, `input_2_clear.tif`: the Sentinel-2 L1C pair {patch} of SEN12MS-CR
  (ROIs1970_fall, 256 x 256 px at 10 m, EPSG:32619), bands B4, B3, B2 (red, green, blue) kept
  as uint16 reflectance x 10000 (`--scale s2`). **Licence: CC BY 4.0, Ebel et al. 2020
  (SEN12MS-CR, TU Munich); contains modified Copernicus Sentinel data 2018** (band subset).
  From `../shared/data/real_clouds/sen12mscr_pairs`; a validation scene, never trained on.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    p.add_argument("--out", type=Path, default=ROOT / "wsfusion_core" / "data" / "sample")
    args = p.parse_args(argv)
    notes = make_banepa(args.shared, args.out / "banepa")
    make_s2(args.shared, args.out / "s2_pair")
    rows = "\n".join(f"| `input_{i}.tif` | {n} |" for i, n in enumerate(notes, 1))
    (args.out / "PROVENANCE.md").write_text(PROVENANCE.format(seed=SEED, rows=rows,
                                                               patch=S2_PATCH))
    for f in sorted(args.out.rglob("*.tif")):
        print(f"{f.relative_to(args.out)}: {f.stat().st_size / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
