"""Training side: label loaders, metrics, the synthetic samples, a few real training steps and
the shipped weights on the shipped sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from training.datasets import (
    DUBAI_COLOURS,
    FusionDataset,
    SampleConfig,
    colour_mask_to_labels,
    load_labelled_geotiff,
    make_sample,
)
from training.metrics import ConfusionMatrix, l1, segmentation_scores
from wsfusion_core.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / ".." / "shared" / "data"
DUBAI = SHARED / "segmentation" / "dubai"
SAMPLE = ROOT / "wsfusion_core" / "data" / "sample"
DEFAULT_WEIGHTS = ROOT / "wsfusion_core" / "data" / "weights" / "default.safetensors"


# ------------------------------------------------------------------ metrics

def test_metrics_match_a_hand_made_confusion_matrix() -> None:
    # rows = truth (bg, road, building), cols = prediction
    m = np.array([[50, 5, 5],
                  [2, 8, 0],
                  [3, 0, 27]])
    truth = np.repeat(np.repeat(np.arange(3), m.sum(1)), 1)
    pred = np.concatenate([np.repeat(np.arange(3), row) for row in m])
    cm = ConfusionMatrix()
    cm.update(truth[:40], pred[:40])  # accumulate in two pieces: counts, not per-batch scores
    cm.update(np.append(truth[40:], 255), np.append(pred[40:], 1))  # 255 is ignored
    assert np.array_equal(cm.m, m)
    s = cm.scores()
    iou = [50 / (60 + 55 - 50), 8 / (10 + 13 - 8), 27 / (30 + 32 - 27)]
    assert s["miou"] == pytest.approx(np.mean(iou))
    assert s["mean_accuracy"] == pytest.approx(np.mean([50 / 60, 8 / 10, 27 / 30]))
    assert s["fwiou"] == pytest.approx(60 / 100 * iou[0] + 10 / 100 * iou[1] + 30 / 100 * iou[2])
    assert s["pixel_accuracy"] == pytest.approx(85 / 100)


def test_absent_class_is_left_out_not_scored_zero() -> None:
    s = segmentation_scores(np.array([[10, 0, 0], [0, 0, 0], [0, 0, 5]]))
    assert s["miou"] == pytest.approx(1.0)
    assert np.isnan(s["iou_per_class"][1])


def test_l1_is_mean_over_pixels_and_bands() -> None:
    a = np.zeros((3, 4, 4))
    b = np.zeros((3, 4, 4))
    b[0] = 0.3
    assert l1(a, b) == pytest.approx(0.1)


# ------------------------------------------------------------------ label loaders

def test_colour_mask_exact_matching() -> None:
    colours = list(DUBAI_COLOURS)
    mask = np.zeros((2, len(colours), 3), np.uint8)
    for i, c in enumerate(colours):
        mask[:, i] = c
    labels = colour_mask_to_labels(mask)
    assert labels[0].tolist() == [DUBAI_COLOURS[c] for c in colours]
    assert set(labels[0].tolist()) == {0, 1, 2}
    near = mask.copy()
    near[0, 0] = (0x3C, 0x10, 0x99)  # one step from Building: not a guess, an error
    with pytest.raises(InputError, match="unknown mask colour"):
        colour_mask_to_labels(near, source="m.png")


def test_real_dubai_mask() -> None:
    path = DUBAI / "tile_7" / "masks" / "image_part_001.png"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    from PIL import Image

    labels = colour_mask_to_labels(np.asarray(Image.open(path).convert("RGB")), source=str(path))
    shares = np.bincount(labels.ravel(), minlength=3) / labels.size
    assert labels.max() <= 2 and all(s > 0.01 for s in shares)


def _image(path: Path, transform, crs="EPSG:32633", size=(64, 80)) -> Path:
    data = (np.random.default_rng(0).random((3,) + size) * 255).astype(np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=size[1], height=size[0], count=3,
                       dtype="uint8", crs=crs, transform=transform) as dst:
        dst.write(data)
    return path


def test_label_raster_on_another_grid(tmp_path: Path) -> None:
    img = _image(tmp_path / "img.tif", from_origin(500000, 5000000, 2.0, 2.0))
    # Labels at 4 m with a building block at a known place; must land on the 2 m grid nearest.
    lab = np.zeros((32, 40), np.uint8)
    lab[4:8, 10:20] = 2
    lab[20, :] = 1
    with rasterio.open(tmp_path / "lab.tif", "w", driver="GTiff", width=40, height=32, count=1,
                       dtype="uint8", crs="EPSG:32633",
                       transform=from_origin(500000, 5000000, 4.0, 4.0), nodata=255) as dst:
        dst.write(lab, 1)
    pixels, labels = load_labelled_geotiff(img, tmp_path / "lab.tif")
    assert pixels.shape == (64, 80, 3) and labels.shape == (64, 80)
    assert np.all(labels[8:16, 20:40] == 2)
    assert np.all(labels[40:42, :] == 1)
    assert set(np.unique(labels)) == {0, 1, 2}


def test_label_raster_rejects_bad_codes(tmp_path: Path) -> None:
    t = from_origin(500000, 5000000, 2.0, 2.0)
    img = _image(tmp_path / "img.tif", t)
    with rasterio.open(tmp_path / "lab.tif", "w", driver="GTiff", width=80, height=64, count=1,
                       dtype="uint8", crs="EPSG:32633", transform=t) as dst:
        dst.write(np.full((64, 80), 7, np.uint8), 1)
    with pytest.raises(InputError, match="lab.tif"):
        load_labelled_geotiff(img, tmp_path / "lab.tif")


@pytest.mark.parametrize("driver,suffix", [("GeoJSON", ".geojson"), ("GPKG", ".gpkg")])
def test_vector_labels_polygons_and_buffered_lines(tmp_path: Path, driver: str,
                                                   suffix: str) -> None:
    osgeo = pytest.importorskip("osgeo")
    from osgeo import ogr, osr

    img = _image(tmp_path / "img.tif", from_origin(500000, 5000000, 1.0, 1.0))
    # Features in WGS84 (as OpenStreetMap exports are), reprojected onto the UTM image grid.
    from pyproj import Transformer

    to_ll = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform
    path = tmp_path / f"labels{suffix}"
    ds = ogr.GetDriverByName(driver).CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    layer = ds.CreateLayer("labels", srs)
    layer.CreateField(ogr.FieldDefn("class", ogr.OFTString))

    def add(wkt_utm_coords: list[tuple[float, float]], kind: str, cls: str) -> None:
        pts = ", ".join("{} {}".format(*to_ll(x, y)) for x, y in wkt_utm_coords)
        wkt = f"POLYGON (({pts}))" if kind == "poly" else f"LINESTRING ({pts})"
        feat = ogr.Feature(layer.GetLayerDefn())
        feat.SetField("class", cls)
        feat.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feat)

    x0, y0 = 500000, 5000000
    add([(x0 + 10, y0 - 10), (x0 + 30, y0 - 10), (x0 + 30, y0 - 20), (x0 + 10, y0 - 20),
         (x0 + 10, y0 - 10)], "poly", "building")
    add([(x0, y0 - 40.5), (x0 + 80, y0 - 40.5)], "line", "road")
    add([(x0 + 50, y0 - 5), (x0 + 60, y0 - 5), (x0 + 60, y0 - 15), (x0 + 50, y0 - 5)],
        "poly", "landuse")  # not a class: background
    ds = None  # noqa: F841 - flush to disk
    del osgeo

    _, labels = load_labelled_geotiff(img, path, class_field="class", line_width=5.0)
    assert np.all(labels[11:19, 11:29] == 2)
    road_rows = np.nonzero((labels == 1).all(axis=1))[0]
    assert 4 <= len(road_rows) <= 6 and 38 <= road_rows.mean() <= 42  # 5 m wide at y = 40.5
    assert (labels == 0).mean() > 0.7
    with pytest.raises(InputError, match="no attribute 'kind'"):
        load_labelled_geotiff(img, path, class_field="kind")


# ------------------------------------------------------------------ samples and training

def _items() -> list[tuple[np.ndarray, np.ndarray]]:
    """Real Dubai crops where available; otherwise a synthetic scene with learnable classes."""
    path = DUBAI / "tile_7" / "images" / "image_part_001.jpg"
    if path.is_file():
        from PIL import Image

        img = np.asarray(Image.open(path).convert("RGB"))[:256, :256]
        mask = np.asarray(Image.open(DUBAI / "tile_7" / "masks" / "image_part_001.png")
                          .convert("RGB"))[:256, :256]
        return [(np.ascontiguousarray(img), colour_mask_to_labels(mask))]
    rng = np.random.default_rng(0)
    lab = np.zeros((256, 256), np.uint8)
    lab[::32, :] = 1
    lab[40:80, 40:90] = 2
    img = (np.array([[90, 140, 60], [200, 200, 200], [180, 60, 50]])[lab]
           + rng.integers(0, 20, (256, 256, 3))).astype(np.uint8)
    return [(img, lab)]


def test_sample_shapes_validity_and_determinism() -> None:
    items = _items()
    cfg = SampleConfig(crop=64, k_choices=(3,), k_probs=None, share_range=(0.2, 0.4),
                       declared_prob=1.0, cloud_prob=0.0)
    ds = FusionDataset(items, 8, 4, cfg, clouds=None, seed=1)
    a, b = ds[3], ds[3]
    assert all(np.array_equal(a[k], b[k]) for k in a)  # a function of (seed, epoch, index)
    ds.set_epoch(1)
    assert not np.array_equal(ds[3]["inputs"], a["inputs"])
    assert a["inputs"].shape == (3, 3, 64, 64) and a["valid"].shape == (3, 64, 64)
    assert a["labels"].shape == (64, 64) and a["clean"].shape == (3, 64, 64)
    # all missing data here is declared: exactly the affected pixels are invalid, and zero
    assert np.array_equal(~a["valid"], a["affected"])
    assert np.all(a["inputs"].transpose(0, 2, 3, 1)[a["affected"]] == 0)
    assert all(0.19 <= f <= 0.41 for f in a["affected"].mean(axis=(1, 2)))


def test_nearest_labels_after_downsampling() -> None:
    items = _items()
    cfg = SampleConfig(crop=64, scale_range=(2.0, 2.0), augment=False)
    s = make_sample(items[0][0], items[0][1], 2, cfg, np.random.default_rng(0), None)
    assert set(np.unique(s["labels"])) <= {0, 1, 2}  # no blended label values


def test_a_few_training_steps_lower_the_loss() -> None:
    import torch

    from training.datasets import collate
    from training.train import CLASS_WEIGHTS, train_step
    from wsfusion_core.model import FusionModel

    torch.manual_seed(0)
    torch.set_num_threads(2)
    items = _items()
    cfg = SampleConfig(crop=64, k_choices=(2,), k_probs=None)
    ds = FusionDataset(items, 4, 4, cfg, clouds=None, seed=0)
    batch = collate([ds[i] for i in range(4)])
    model = FusionModel(widths=(8, 8, 16, 16, 16))
    # The recipe's Adam, with a larger lr so a handful of steps shows the trend.
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.999))
    weight = torch.tensor(CLASS_WEIGHTS)
    losses = [train_step(model, opt, batch, weight) for _ in range(15)]
    assert np.mean(losses[-3:]) < 0.8 * losses[0]
    assert model.quality is not None and model.quality.head.weight.grad is not None


def test_train_config_file_and_flags(tmp_path: Path) -> None:
    from training.train import config_from_args

    (tmp_path / "c.json").write_text(json.dumps({"epochs": 3, "k": [2], "crop": 128}))
    cfg, resume = config_from_args(["--config", str(tmp_path / "c.json"), "--crop", "96",
                                    "--resume"])
    assert (cfg.epochs, cfg.k, cfg.crop, resume) == (3, [2], 96, True)
    (tmp_path / "bad.json").write_text(json.dumps({"epoch": 3}))
    with pytest.raises(ValueError, match="unknown config keys: epoch"):
        config_from_args(["--config", str(tmp_path / "bad.json")])


# ------------------------------------------------------------------ the shipped weights

NAIP = SHARED / "geotiff" / "naip_multidate" / "m_4709963_se_14_1_20180716.tif"


def _shipped_weights() -> Path:
    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip(f"{DEFAULT_WEIGHTS} absent (not yet trained)")
    return DEFAULT_WEIGHTS


def test_shipped_weights_metadata_is_honest() -> None:
    from wsfusion_core.weights import load_weights

    model, info = load_weights(_shipped_weights())
    prov = info.provenance
    assert info.fusion == "learned" and model.quality is not None
    assert prov.get("status") and prov.get("recipe") and prov.get("recipe_note")
    assert "Dubai" in prov["data"] and prov["clouds"]["test (held out)"] == ["cloud38"]


def test_shipped_weights_beat_the_mean_on_other_imagery(tmp_path: Path) -> None:
    """Real NAIP imagery (5 m, North Dakota: never seen in training) spoiled with the held-out
    cloud38 clouds and bare-zero gaps, fused by the public API with the shipped weights: the
    fused image must be closer to the clean image than the per-pixel mean is."""
    weights = _shipped_weights()
    if not NAIP.is_file():
        pytest.skip(f"{NAIP} absent")
    from training.artifacts import TEST_CLOUDS, CloudBank, corrupt
    from wsfusion_core.api import fuse

    with rasterio.open(NAIP) as src:
        window = rasterio.windows.Window(200, 200, 256, 256)
        clean = src.read([1, 2, 3], window=window)
        profile = dict(driver="GTiff", width=256, height=256, count=3, dtype="uint8",
                       crs=src.crs, transform=src.window_transform(window))
    rng = np.random.default_rng(11)
    bank = CloudBank.from_sources(SHARED / "clouds", TEST_CLOUDS)
    base = clean.transpose(1, 2, 0).astype(np.float32) / 255
    paths = []
    for i, kind in enumerate(["cloud", "missing", "cloud"]):
        spoiled, _ = corrupt(base, kind, 0.35, rng, bank, opacity=1.0 if kind == "cloud" else None)
        path = tmp_path / f"in{i}.tif"
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.round(spoiled * 255).astype(np.uint8).transpose(2, 0, 1))
        paths.append(path)
    errors = {}
    for method in ("learned", "mean"):
        out = tmp_path / f"{method}.tif"
        fuse(paths, out, method=method, weights=weights, device="cpu")
        with rasterio.open(out) as src:
            fused = src.read([1, 2, 3]).astype(np.float32)
        errors[method] = l1(fused / 255, clean.astype(np.float32) / 255)
    assert errors["learned"] < 0.8 * errors["mean"], errors  # measured 0.028 vs 0.098 (prev. 0.036)


def test_shipped_weights_on_the_shipped_sample(tmp_path: Path) -> None:
    """The shipped Banepa sample: real 0.8 m imagery spoiled by synthetic artifacts (so this is
    a synthetic-artifact number). Learned fusion must come clearly closer to the clean mosaic
    than the mean does (the radiometric shift of inputs 2-3 is an error for every method)."""
    weights = _shipped_weights()
    sample = SAMPLE / "banepa"
    inputs = sorted(sample.glob("input_*.tif"))
    if len(inputs) < 2 or not (sample / "clean_reference.tif").is_file():
        pytest.skip(f"{sample} has no sample yet")
    from wsfusion_core.api import fuse

    with rasterio.open(sample / "clean_reference.tif") as ref:
        clean = ref.read().astype(np.float32) / 255
    source_gap = (clean >= 0.98).all(axis=0)  # white in the source tiles: no input has it
    err = {}
    for method in ("learned", "mean"):
        out = tmp_path / f"{method}.tif"
        fuse(inputs, out, method=method, weights=weights, device="cpu")
        with rasterio.open(out) as src:
            fused = src.read().astype(np.float32) / 255
            keep = (src.dataset_mask() > 0) & ~source_gap
        err[method] = float(np.abs(fused - clean)[:, keep].mean())
    assert err["learned"] < 0.8 * err["mean"], err  # measured 0.052 vs 0.101 (previous: 0.069)


def test_train_on_user_data_checkpoints_and_resumes(tmp_path: Path) -> None:
    """The whole recipe end to end on a user GeoTIFF + label raster: checkpoint every epoch,
    best weights in the real format, and --resume continues where it stopped."""
    from training.train import main
    from wsfusion_core.weights import read_info

    t = from_origin(500000, 5000000, 1.0, 1.0)
    rng = np.random.default_rng(0)
    lab = np.zeros((320, 128), np.uint8)
    lab[:, 60:68] = 1
    lab[40:90, 10:50] = 2
    lab[200:260, 80:120] = 2
    img = (np.array([[90, 140, 60], [200, 200, 200], [180, 60, 50]], np.uint8)[lab]
           .transpose(2, 0, 1) + rng.integers(0, 20, (3, 320, 128)).astype(np.uint8))
    for name, data in (("img.tif", img), ("lab.tif", lab[None])):
        with rasterio.open(tmp_path / name, "w", driver="GTiff", width=128, height=320,
                           count=data.shape[0], dtype="uint8", crs="EPSG:32633",
                           transform=t) as dst:
            dst.write(data)
    out = tmp_path / "run"
    args = ["--user-data", str(tmp_path / "img.tif"), str(tmp_path / "lab.tif"),
            "--data", str(tmp_path / "no-shared-data"), "--out", str(out), "--epochs", "2",
            "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "64", "--val-crop", "64",
            "--val-crops", "2", "--k", "2", "--workers", "0", "--threads", "1"]
    assert main(args) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r["event"] == "epoch"] == [1, 2]
    assert (out / "last.pt").is_file()
    info = read_info(out / "best.safetensors")
    assert info.fusion == "learned" and "user data" in info.provenance["data"]
    assert main(args + ["--epochs", "3", "--resume"]) == 0  # the last --epochs wins
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r["event"] == "epoch"] == [1, 2, 3]
    assert any(r["event"] == "resume" and r["epoch"] == 2 for r in log)
