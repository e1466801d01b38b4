"""Write the compact training data folder for a machine without rasterio/GDAL (the lent GPU).

    python -m training.prepare_device_data --data ../shared/data --out .device/data

The folder mirrors the shared data layout, so ``wsfusion-train --data .device/data`` reads it
with Pillow and numpy only: the Dubai train/validation tiles as they are (the test tile 7 stays
out), Banepa as a prepared mosaic (training/banepa.py), and the training/validation cloud
sources reduced to what CloudBank reads (RGB bands and the cloud mask, float16), and the
real-cloud validation scenes for choosing a checkpoint on the device (training/select_real.py):
never trained on. Their Sentinel-2 patches keep the bands the evaluation reads (B2, B3, B4 for
the networks, B8 for the shadow rule); the other bands are written as zeros, so the files keep
their 13-band layout and compress to almost nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .banepa import PREPARED, write_prepared
from .splits import TRAIN_TILES, VAL_TILES

LIMIT_MIB = 40.0
S2_KEPT_BANDS = (2, 3, 4, 8)  # 1-based: what training/realclouds.py reads of the L1C stacks
CLOUD38_STEM = "patch_192_10_by_12_LC08_L1TP_002053_20160520_20170324_01_T1.jpg"


def prepare(data: Path, out: Path) -> dict[str, float]:
    """Write everything into ``out`` (replaced as a whole: written beside it, then renamed).
    Returns MiB per part."""
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    sizes: dict[str, float] = {}
    dubai = data / "segmentation" / "dubai"
    for t in (*TRAIN_TILES, *VAL_TILES):
        for sub in ("images", "masks"):
            shutil.copytree(dubai / f"tile_{t}" / sub, tmp / "segmentation" / "dubai" /
                            f"tile_{t}" / sub)
    write_prepared(data / "segmentation" / "banepa", tmp / "segmentation" / PREPARED)
    clouds = data / "clouds"
    (tmp / "clouds" / "ukis_csmask").mkdir(parents=True)
    for name in ("sentinel2", "landsat7"):
        with np.load(clouds / "ukis_csmask" / f"{name}.npz") as d:
            # CloudBank reads bands [2, 1, 0] (R, G, B) of img and msk[..., 0]: keep those.
            np.savez_compressed(tmp / "clouds" / "ukis_csmask" / f"{name}.npz",
                                img=d["img"][..., :3].astype(np.float16), msk=d["msk"])
    (tmp / "clouds" / "cloud38").mkdir()
    for prefix in ("truecolor_", "gt_"):
        shutil.copy(clouds / "cloud38" / (prefix + CLOUD38_STEM), tmp / "clouds" / "cloud38")
    (tmp / "clouds" / "eolearn_slovenia").mkdir()
    clp = np.load(clouds / "eolearn_slovenia" / "CLP.npy")
    np.save(tmp / "clouds" / "eolearn_slovenia" / "CLP.npy", clp.astype(np.float16))
    write_real_clouds(data / "real_clouds", tmp / "real_clouds")
    (tmp / "README.md").write_text(
        "Compact copy of ../shared/data for training without GDAL (training/prepare_device_data"
        ".py). Dubai tiles 1-6 (CC0), Banepa mosaic (OpenAerialMap CC BY 4.0, OSM ODbL), cloud "
        "sources ukis_csmask (Apache-2.0), cloud38 (Apache-2.0), eolearn_slovenia (MIT); "
        "real-cloud validation: SEN12MS-CR pairs (CC BY 4.0, Ebel et al.; contains modified "
        "Copernicus Sentinel data; bands other than B2-B4, B8 zeroed) and the Landsat Fmask "
        "time series (USGS, public domain), for checkpoint selection only. "
        "Never commit it.\n")
    for part in ("segmentation/dubai", f"segmentation/{PREPARED}", "clouds", "real_clouds"):
        sizes[part] = sum(f.stat().st_size for f in (tmp / part).rglob("*") if f.is_file()) / 2**20
    total = sum(sizes.values())
    if total > LIMIT_MIB:
        shutil.rmtree(tmp)
        raise SystemExit(f"{out}: {total:.1f} MiB would exceed the {LIMIT_MIB} MiB limit")
    (tmp / "manifest.json").write_text(json.dumps({"mib": sizes}, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return sizes


def write_real_clouds(src: Path, dst: Path) -> None:
    """The real-cloud validation scenes, reduced (see the module text); Landsat as it is."""
    import rasterio

    shutil.copytree(src / "landsat_ts_fmask", dst / "landsat_ts_fmask")
    (dst / "sen12mscr_pairs").mkdir()
    for f in sorted((src / "sen12mscr_pairs").rglob("*")):
        out = dst / "sen12mscr_pairs" / f.relative_to(src / "sen12mscr_pairs")
        if f.is_dir():
            out.mkdir(parents=True, exist_ok=True)
        elif f.suffix.lower() != ".tif":
            shutil.copy(f, out)
        else:
            with rasterio.open(f) as s:
                arr, prof = s.read(), s.profile
            keep = np.zeros(arr.shape[0], bool)
            keep[[b - 1 for b in S2_KEPT_BANDS]] = True
            arr[~keep] = 0
            prof.update(compress="deflate", predictor=2)
            out.parent.mkdir(parents=True, exist_ok=True)
            with rasterio.open(out, "w", **prof) as d:
                d.write(arr)


def main(argv: Sequence[str] | None = None) -> int:
    from .train import DEFAULT_DATA

    p = argparse.ArgumentParser(prog="python -m training.prepare_device_data",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder")
    p.add_argument("--out", default=".device/data", help="the folder to write (git-ignored)")
    a = p.parse_args(argv)
    data = Path(a.data)
    if not (data / "segmentation" / "dubai").is_dir():
        print(f"{data}: no segmentation/dubai here (is ../shared present?)", file=sys.stderr)
        return 2
    sizes = prepare(data, Path(a.out))
    for k, v in sizes.items():
        print(f"{k:32s} {v:6.1f} MiB")
    print(f"{'total':32s} {sum(sizes.values()):6.1f} MiB → {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
