"""Score ``fuse --vectors`` buildings against the OpenStreetMap footprints of Banepa (Nepal).

    python scripts/score_vectors.py [--data ../shared/data] [--gsd 0.5] [--columns val|all]
                                    [--min-area 5] [--device auto] [--keep DIR]
                                    [--figure docs/img/vectors_banepa.png]

The labelled OpenAerialMap tiles (``segmentation/banepa/train/oam``, EPSG:4326, ~0.13 m) of the
chosen tile columns are mosaicked and resampled (average) onto UTM 45N (EPSG:32645) at ``--gsd``
metres: the shipped model was trained at ~0.26-2 m. The mosaic is fused as one input with the
shipped model and ``vectors=`` (the same core call as the CLI), and every predicted building
polygon is matched one-to-one against the OSM footprints (reprojected, clipped to the mosaic):
greedy on IoU, a match needs IoU >= 0.5. Printed: counts, precision, recall, F1 at IoU 0.5,
the mean IoU of the matches, the median best IoU per OSM building, and ``area_iou``: the IoU
of all predicted building area against all OSM building area (pixels agree, instances aside).

``--columns val`` (default) scores the held-out validation column (training/splits.py
BANEPA_VAL_COLUMNS: never trained on); ``all`` adds the five training columns (optimistic).
OSM maps only some buildings and draws them by hand, so precision is a lower bound.
Without the shared data the script says so and exits 0 (nothing to score).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TILE = re.compile(r"OAM-(\d+)-(\d+)-19\.tif$")
UTM = "EPSG:32645"


def mosaic(tiles: list[Path], out: Path, gsd: float) -> None:
    """The tiles merged (EPSG:4326) and resampled by area average onto UTM at ``gsd`` m."""
    import rasterio
    from rasterio.merge import merge
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    srcs = [rasterio.open(p) for p in tiles]
    try:
        data, transform = merge(srcs, indexes=[1, 2, 3], nodata=0)
        crs = srcs[0].crs
    finally:
        for s in srcs:
            s.close()
    h, w = data.shape[1:]
    left, top = transform.c, transform.f
    right, bottom = left + w * transform.a, top + h * transform.e
    dst_t, dw, dh = calculate_default_transform(crs, UTM, w, h, left, bottom, right, top,
                                                resolution=gsd)
    dst = np.zeros((3, dh, dw), np.uint8)
    reproject(data, dst, src_transform=transform, src_crs=crs, dst_transform=dst_t,
              dst_crs=UTM, resampling=Resampling.average, src_nodata=0, dst_nodata=0)
    with rasterio.open(out, "w", driver="GTiff", width=dw, height=dh, count=3, dtype="uint8",
                       crs=UTM, transform=dst_t, nodata=0, photometric="RGB", tiled=True,
                       compress="deflate") as ds:
        ds.write(dst)


def footprint(path: Path):
    """The mosaic's valid area (pixels with data), as one geometry in UTM."""
    import rasterio
    import shapely
    from rasterio.features import shapes

    with rasterio.open(path) as src:
        valid = src.read_masks(1) > 0
        geoms = [shapely.geometry.shape(g) for g, v in
                 shapes(valid.astype(np.uint8), mask=valid, transform=src.transform) if v]
    return shapely.union_all(geoms)


def osm_buildings(data: Path, area, min_area: float) -> list:
    """The OSM footprints in UTM, clipped to ``area``, the pieces >= ``min_area`` m²."""
    import shapely
    from rasterio.warp import transform_geom

    path = next((data / "segmentation" / "banepa" / "train" / "osm").glob("*.geojson"))
    out = []
    for f in json.loads(path.read_text())["features"]:
        g = shapely.geometry.shape(transform_geom("EPSG:4326", UTM, f["geometry"]))
        if not g.is_valid:
            g = shapely.make_valid(g)
        g = g.intersection(area)
        for part in getattr(g, "geoms", [g]):
            if part.geom_type == "Polygon" and part.area >= min_area:
                out.append(part)
    return out


def match(pred: list, truth: list, threshold: float = 0.5) -> dict[str, float]:
    """One-to-one greedy matching on IoU (highest first); counts and scores."""
    import shapely

    tree = shapely.STRtree(truth)
    pairs = []
    best = np.zeros(len(truth))
    for i, p in enumerate(pred):
        for j in tree.query(p, predicate="intersects"):
            t = truth[j]
            inter = p.intersection(t).area
            iou = inter / (p.area + t.area - inter)
            best[j] = max(best[j], iou)
            pairs.append((iou, i, int(j)))
    pairs.sort(reverse=True)
    used_p: set[int] = set()
    used_t: set[int] = set()
    ious = []
    for iou, i, j in pairs:
        if iou < threshold:
            break
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        ious.append(iou)
    tp = len(ious)
    precision = tp / len(pred) if pred else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * tp / (len(pred) + len(truth)) if pred or truth else 0.0
    both_p, both_t = shapely.union_all(pred), shapely.union_all(truth)
    inter = both_p.intersection(both_t).area
    return {"predicted": len(pred), "osm": len(truth), "matched": tp,
            "area_iou": inter / max(both_p.union(both_t).area, 1e-9),
            "precision": precision, "recall": recall, "f1": f1,
            "mean_iou_matched": float(np.mean(ious)) if ious else 0.0,
            "median_best_iou": float(np.median(best)) if len(best) else 0.0}


def figure(image: Path, pred: list, truth: list, out: Path, scale: int = 2) -> None:
    """The mosaic with the OSM footprints (yellow) and the predicted buildings (cyan)."""
    import rasterio
    from PIL import Image, ImageDraw

    with rasterio.open(image) as src:
        rgb = np.moveaxis(src.read([1, 2, 3]), 0, -1)
        inv = ~src.transform
    img = Image.fromarray(rgb).resize((rgb.shape[1] * scale, rgb.shape[0] * scale))
    draw = ImageDraw.Draw(img)
    for geoms, colour in ((truth, (255, 220, 0)), (pred, (0, 230, 255))):
        for g in geoms:
            for ring in [g.exterior, *g.interiors]:
                pts = [tuple(scale * v for v in inv * xy) for xy in ring.coords]
                draw.line(pts, fill=colour, width=2)
    img.save(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--gsd", type=float, default=0.5, help="mosaic pixel size in metres")
    ap.add_argument("--columns", choices=("val", "all"), default="val")
    ap.add_argument("--min-area", type=float, default=5.0, help="minimum mapping unit, m²")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--weights", default=None, help="model (default: the shipped one)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the mosaic and outputs here")
    ap.add_argument("--figure", type=Path, default=None,
                    help="write a PNG: OSM footprints yellow, predicted buildings cyan")
    args = ap.parse_args()

    tiles_dir = args.data / "segmentation" / "banepa" / "train" / "oam"
    if not tiles_dir.is_dir():
        print(f"skipped: no Banepa tiles under {tiles_dir}")
        return 0
    from training.splits import BANEPA_VAL_COLUMNS
    from wsfusion_core.api import fuse
    from wsfusion_core.vectors import read_features

    tiles = sorted(p for p in tiles_dir.glob("*.tif") if TILE.search(p.name) and (
        args.columns == "all" or int(TILE.search(p.name).group(1)) in BANEPA_VAL_COLUMNS))
    with tempfile.TemporaryDirectory(prefix="wsfusion-score-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        image = work / f"banepa_{args.columns}_{args.gsd:g}m.tif"
        mosaic(tiles, image, args.gsd)
        vec = work / f"banepa_{args.columns}_{args.gsd:g}m.gpkg"
        vec.unlink(missing_ok=True)
        res = fuse([image], work / f"banepa_{args.columns}_{args.gsd:g}m_fused.tif",
                   vectors=vec, min_area=args.min_area, weights=args.weights,
                   device=args.device, overwrite=True)
        pred = [f["geometry"] for f in read_features(vec, "building")]
        truth = osm_buildings(args.data, footprint(image), args.min_area)
        scores = match(pred, truth)
        if args.figure is not None:
            figure(image, pred, truth, args.figure)
    scores.update(columns=args.columns, tiles=len(tiles), gsd_m=args.gsd,
                  size_px=f"{res.width}x{res.height}", min_area_m2=args.min_area,
                  model=res.model, device=res.device)
    print(json.dumps(scores, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
