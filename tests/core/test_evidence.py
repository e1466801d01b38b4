"""Evidence bands (issue 24): layouts recognised, the contract in the weights, and the runs that
read them: CLI and Python, refusals in one line, weighted combinations only, --workers."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import rasterio
from helpers import smooth_image, write_raster

from wsfusion_core import fuse
from wsfusion_core.errors import InputError, WeightsError, WsfusionError
from wsfusion_core.evidence import choose, parse_evidence
from wsfusion_core.grid import describe
from wsfusion_core.report import inspect
from wsfusion_core.sensors import LAYOUTS, recognise
from wsfusion_core.weights import ModelInfo, read_info

S2_IDS = list(LAYOUTS["s2-l1c"].ids)
EVIDENCE = ["coastal", "cirrus", "swir16"]


def s2_stack(height=160, width=170, seed=0, cloud=None, descriptions=True):
    """A 13-band uint16 Sentinel-2-like stack (reflectance x 10000): smooth ground, and where
    ``cloud`` (H, W bool) a bright cloud, high in cirrus and SWIR too."""
    base = smooth_image(height, width, 13, "uint16", seed).astype(np.float64) / 4000
    refl = 0.03 + 0.25 * base
    refl[10] = 0.002 + 0.002 * base[10]  # cirrus: the ground is invisible there
    if cloud is not None:
        refl[:, cloud] = 0.55
        refl[10, cloud] = 0.06
    return (refl * 10000).round().astype(np.uint16), (S2_IDS if descriptions else None)


def write_s2(path, cloud=None, seed=0, descriptions=True):
    arr, desc = s2_stack(cloud=cloud, seed=seed, descriptions=descriptions)
    write_raster(path, arr)
    if desc:
        with rasterio.open(path, "r+") as dst:
            for i, d in enumerate(desc, 1):
                dst.set_band_description(i, d)
    return path


@pytest.fixture(scope="module")
def evidence_weights(tmp_path_factory):
    """The shipped model grown into a ``rank`` quality net reading cirrus, SWIR and aerosol (the
    extra first-layer channels start at zero), saved through the real weight format."""
    import torch

    from wsfusion_core.model import FusionModel
    from wsfusion_core.weights import load_weights, save_weights

    model, info = load_weights()
    new = FusionModel(info.num_classes, info.in_channels, info.widths, architecture="rank",
                      evidence_channels=len(EVIDENCE))
    state = {}
    for k, v in new.state_dict().items():
        w = model.state_dict()[k]
        if w.shape != v.shape:
            grown = torch.zeros_like(v)
            grown[:, :w.shape[1]] = w
            w = grown
        state[k] = w
    new.load_state_dict(state)
    meta = replace(info, architecture="rank", name="test-s2-l1c",
                   normalisation={"mean": [0.0] * 3 + [0.15, 0.01, 0.2],
                                  "std": [1.0] * 3 + [0.05, 0.01, 0.1]},
                   evidence={"bands": EVIDENCE, "layouts": ["s2-l1c"],
                             "image_scale": "reflectance"})
    return save_weights(tmp_path_factory.mktemp("w") / "l1c.safetensors", new, meta)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "wsfusion_core.cli", *map(str, args)],
                          capture_output=True, text=True)


# ------------------------------------------------------------------------- layouts

@pytest.mark.parametrize("count,dtype,desc,key", [
    (13, "uint16", [None] * 13, "s2-l1c"),
    (13, "uint16", S2_IDS, "s2-l1c"),
    (13, "uint16", list(LAYOUTS["s2-l1c"].bands), "s2-l1c"),
    (12, "uint16", [None] * 12, "s2-l2a"),
    (12, "uint16", [f"X{i}" for i in range(12)], None),
    (7, "uint16", ["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7"],
     "landsat89-l2"),
    (4, "uint16", [None] * 4, None),
    (3, "uint8", [None] * 3, None),
    (13, "float32", [None] * 13, None),
])
def test_layouts_are_recognised_from_descriptions_or_count(count, dtype, desc, key):
    rec = recognise(count, dtype, desc)
    assert (rec.layout.key if rec.layout else None) == key, rec.how
    assert rec.how


def test_s2_true_colour_is_4_3_2_and_evidence_found_by_name():
    lay = LAYOUTS["s2-l1c"]
    assert lay.rgb == (4, 3, 2)
    assert lay.bands_of(EVIDENCE) == (1, 11, 12)
    assert LAYOUTS["s2-l2a"].bands_of(EVIDENCE) is None  # no cirrus in L2A
    assert LAYOUTS["s2-l2a"].bands_of(["swir16", "swir22"]) == (11, 12)


def test_a_recognised_stack_defaults_to_true_colour_and_an_rgb_file_does_not(tmp_path):
    s2 = write_s2(tmp_path / "s2.tif", descriptions=False)
    rgbn = write_raster(tmp_path / "rgbn.tif", smooth_image(60, 60, 4, "uint16"))
    rgb = write_raster(tmp_path / "rgb.tif", smooth_image(60, 60, 3, "uint8"))
    net = choose([describe(s2)], "none")
    assert net.bands == (4, 3, 2) and net.evidence == ()
    for path in (rgbn, rgb):
        net = choose([describe(path)], "auto")
        assert net.bands == (1, 2, 3) and net.evidence == ()
        assert "not recognised" in net.why and "RGB model" in net.why
    report = inspect([rgbn]).to_text()
    assert "not recognised" in report and "feed bands 1,2,3" in report


def test_an_evidence_model_reads_its_bands_by_name(tmp_path, evidence_weights):
    s2 = write_s2(tmp_path / "s2.tif")
    net = choose([describe(s2)], "auto", weights=evidence_weights)
    assert net.bands == (4, 3, 2) and net.evidence == (1, 11, 12)
    assert net.all_bands == (4, 3, 2, 1, 11, 12)
    assert net.reflectance is not None and net.reflectance[:2] == (1e-4, 0.0)
    assert "cirrus (band 11)" in net.why
    report = inspect([s2], weights=evidence_weights).to_text()
    assert "cirrus (band 11)" in report and "reflectance / 0.3" in report


def test_parse_evidence():
    assert parse_evidence(None) == "auto" and parse_evidence(" Auto ") == "auto"
    assert parse_evidence("none") == "none"
    assert parse_evidence("11, 12,1") == (11, 12, 1)
    for bad in ("0", "x", "1,,b"):
        with pytest.raises(WsfusionError):
            parse_evidence(bad)


# ------------------------------------------------------------------------- the contract

def test_the_evidence_contract_round_trips_and_is_validated(evidence_weights):
    info = read_info(evidence_weights)
    assert info.evidence_bands == EVIDENCE and info.layouts == ["s2-l1c"]
    assert len(info.normalisation["mean"]) == 6
    again = ModelInfo.from_json(info.to_json())
    assert again.evidence == info.evidence
    data = info.to_json()
    for bad, needle in (('"cirrus"', '"cirrus9"'), ('"s2-l1c"', '"s9"')):
        with pytest.raises(WeightsError, match="evidence"):
            ModelInfo.from_json(data.replace(bad, needle), "x.safetensors")
    short = replace(info, normalisation={"mean": [0.0] * 3, "std": [1.0] * 3})
    with pytest.raises(WeightsError, match="normalisation"):
        ModelInfo.from_json(short.to_json(), "x.safetensors")


def test_old_weights_have_no_evidence():
    from wsfusion_core.weights import default_weights_path

    info = read_info(default_weights_path())
    assert info.evidence_bands == [] and info.layouts == []  # the RGB default reads none


# ------------------------------------------------------------------------- runs

def test_fused_values_stay_between_the_inputs_with_evidence(tmp_path, evidence_weights):
    cloud = np.zeros((160, 170), bool)
    cloud[40:110, 30:120] = True
    a = write_s2(tmp_path / "a.tif", cloud=cloud, seed=1)
    b = write_s2(tmp_path / "b.tif", seed=2)
    out = tmp_path / "f.tif"
    res = fuse([a, b], out, weights=evidence_weights, quality=tmp_path / "q.tif")
    assert res.model and "test-s2-l1c" in res.model
    with rasterio.open(a) as x, rasterio.open(b) as y, rasterio.open(out) as f:
        da, db, df = x.read().astype(int), y.read().astype(int), f.read().astype(int)
        assert "cirrus=band 11" in f.tags()["WSFUSION_EVIDENCE"]
    lo, hi = np.minimum(da, db), np.maximum(da, db)
    assert ((df >= lo - 1) & (df <= hi + 1)).all()  # rounding of the weighted sum


@pytest.mark.parametrize("args,needle", [
    (("--evidence-bands", "14"), "evidence band 14 does not exist"),
    (("--evidence-bands", "none"), "cannot run without them"),
    (("--evidence-bands", "11,12"), "but the model reads 3"),
])
def test_evidence_refusals_are_one_line_and_publish_nothing(tmp_path, evidence_weights, args,
                                                            needle):
    a = write_s2(tmp_path / "a.tif", seed=1)
    b = write_s2(tmp_path / "b.tif", seed=2)
    before = [p.read_bytes() for p in (a, b)]
    out = tmp_path / "f.tif"
    r = cli("fuse", a, b, "-o", out, "--weights", evidence_weights, "-q", *args)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif"]
    assert [p.read_bytes() for p in (a, b)] == before


def test_an_rgb_model_refuses_evidence_bands(tmp_path):
    a = write_raster(tmp_path / "a.tif", smooth_image(60, 60, 4, "uint16"))
    with pytest.raises(InputError, match="reads no evidence bands"):
        fuse([a, a], tmp_path / "o.tif", evidence_bands="4")
    assert not (tmp_path / "o.tif").exists()


def test_evidence_without_a_known_reflectance_is_refused(tmp_path, evidence_weights):
    arr = smooth_image(60, 60, 5, "uint16")
    a = write_raster(tmp_path / "a.tif", arr)
    with pytest.raises(InputError, match="reflectance"):
        fuse([a, a], tmp_path / "o.tif", weights=evidence_weights, bands=(1, 2, 3),
             evidence_bands=(4, 5, 5))
    res = fuse([a, a], tmp_path / "o.tif", weights=evidence_weights, bands=(1, 2, 3),
               evidence_bands=(4, 5, 5), scale="s2")
    assert res.output.exists()


def test_workers_equal_the_local_run_with_evidence(tmp_path, evidence_weights, monkeypatch):
    import torch
    from distributed import Client, LocalCluster

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cloud = np.zeros((160, 170), bool)
        cloud[20:90, 60:150] = True
        a = write_s2(tmp_path / "a.tif", cloud=cloud, seed=3)
        b = write_s2(tmp_path / "b.tif", seed=4)
        fuse([a, b], tmp_path / "local.tif", weights=evidence_weights)
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as lc, Client(lc) as client:
            fuse([a, b], tmp_path / "dask.tif", weights=evidence_weights, cluster=client,
                 chunk=256)
    finally:
        torch.set_num_threads(threads)
    with rasterio.open(tmp_path / "local.tif") as x, rasterio.open(tmp_path / "dask.tif") as y:
        assert np.array_equal(x.read(), y.read())



# ------------------------------------------------------------------------- the shipped models

def test_auto_picks_the_shipped_model_of_each_kind_of_input(tmp_path):
    """Recognised Sentinel-2 stacks get their evidence model, radiometric (uint16) RGB the
    satellite RGB model, 8-bit imagery the aerial default; the reason is in ``why``."""
    s2 = write_s2(tmp_path / "s2.tif")
    l2a = write_raster(tmp_path / "l2a.tif", s2_stack()[0][[i for i in range(13) if i != 10]])
    rgb16 = write_raster(tmp_path / "rgb16.tif", smooth_image(60, 60, 3, "uint16"))
    rgb8 = write_raster(tmp_path / "rgb8.tif", smooth_image(60, 60, 3, "uint8"))
    net = choose([describe(s2)])
    assert net.weights is not None and net.weights.name == "s2-l1c.safetensors"
    assert net.evidence == (1, 11, 12)
    net = choose([describe(l2a)])
    assert net.weights is not None and net.weights.name == "s2-l2a.safetensors"
    assert net.evidence == (11, 12) and net.bands == (4, 3, 2)
    for path, name in ((rgb16, "satellite-rgb.safetensors"), (rgb8, "default.safetensors")):
        net = choose([describe(path)])
        assert net.weights is not None and net.weights.name == name and net.evidence == ()
    net = choose([describe(s2)], "none")  # RGB only, but still a uint16 satellite stack
    assert net.weights is not None and net.weights.name == "satellite-rgb.safetensors"
    assert "real satellite clouds" in net.why
    for path in (s2, l2a):  # the shipped cards carry what they read and how they scored
        info = read_info(choose([describe(path)]).weights)
        assert info.metrics["real_pairs_cv"]["pairs"] >= 10
        assert len(info.normalisation["mean"]) == 3 + len(info.evidence_bands)


def test_best_selection_with_evidence_picks_the_highest_weight_input(tmp_path):
    """The shipped Sentinel-2 L1C model with its evidence bands: every output pixel is one
    input's pixel, unchanged, and the index names the input with the highest weight."""
    cloud = np.zeros((160, 170), bool)
    cloud[30:120, 40:140] = True
    a = write_s2(tmp_path / "a.tif", cloud=cloud, seed=5)
    b = write_s2(tmp_path / "b.tif", seed=6)
    out, idx, q = tmp_path / "best.tif", tmp_path / "index.tif", tmp_path / "q.tif"
    res = fuse([a, b], out, quality=q, selection="best", selection_index=idx, device="cpu")
    assert res.model and "s2-l1c" in res.model
    with rasterio.open(a) as x, rasterio.open(b) as y, rasterio.open(out) as f, \
            rasterio.open(idx) as i, rasterio.open(q) as w:
        da, db, df, index, weights = x.read(), y.read(), f.read(), i.read(1), w.read()
        assert "cirrus=band 11" in f.tags()["WSFUSION_EVIDENCE"]
    assert set(np.unique(index)) <= {1, 2}
    np.testing.assert_array_equal(df, np.where(index[None] == 1, da, db))
    np.testing.assert_array_equal(index, np.argmax(weights, axis=0) + 1)
    assert (index[cloud] == 2).mean() > 0.95  # the clear input under the cloud
