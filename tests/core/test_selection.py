"""Best-pixel selection (``selection="best"``, ``--selection best``): every output pixel is one
input's stored pixel, unchanged, and the input index names that input.

Real GeoTIFFs written and read back; the learned cases run the shipped model (and a tiny random
one where a Dask cluster of worker processes recomputes the same run). The expected choice is
derived from the inputs (min-blue: the darkest blue among the valid inputs; mean: the first
valid input) or from the run's own quality output (learned: its argmax), never hard-coded.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from helpers import smooth_image, write_raster

from wsfusion_core import cli
from wsfusion_core.api import fuse
from wsfusion_core.errors import WsfusionError
from wsfusion_core.options import index_dtype

K = 3


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def stack_scene(folder: Path, dtype: str, height: int = 260, width: int = 330,
                nodata: float | int = 0) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """K inputs whose darkest blue is known: input j is darkest in the column band
    ``x // 110 == j``, except where it has a nodata hole there; one corner has no valid input.
    Returns the paths, the stored values (K, 3, H, W) and the validity (K, H, W)."""
    kind = np.dtype(dtype).kind
    span = 1.0 if kind == "f" else (200.0 if dtype == "uint8" else 3000.0)
    data, valid = [], np.ones((K, height, width), bool)
    darkest = np.minimum(np.arange(width) // 110, K - 1)[None, :].repeat(height, 0)
    for i in range(K):
        img = smooth_image(height, width, 3, "float32", seed=10 + i).astype(np.float64)
        # blue: a low range for the darkest input, a high one for the others (strictly apart)
        img[2] = np.where(darkest == i, 0.05 + 0.3 * img[2], 0.5 + 0.45 * img[2])
        img = 1 + img * span
        data.append(img.astype(dtype) if kind == "f" else np.rint(img).astype(dtype))
    valid[0, 30:90, 20:80] = False  # input 1's hole inside its own darkest band
    valid[1, 100:170, 150:230] = False  # input 2's hole inside its band
    valid[1, 40:60, 30:50] = False  # ... and one inside input 1's hole: only input 3 there
    valid[2, 150:220, 200:300] = False  # input 3's hole, partly in input 2's band
    valid[:, :20, -25:] = False  # no input valid
    data = np.stack(data)
    paths = []
    for i in range(K):
        stored = data[i].copy()
        stored[:, ~valid[i]] = nodata
        data[i] = stored
        paths.append(write_raster(folder / f"date_{i + 1}.tif", stored, nodata=nodata))
    return paths, data, valid


def pick(data: np.ndarray, index: np.ndarray, nodata: float | int) -> np.ndarray:
    """(C, H, W): input ``index - 1``'s stored values, nodata where the index is 0."""
    out = np.take_along_axis(data, np.maximum(index.astype(np.int64) - 1, 0)[None, None],
                             axis=0)[0]
    out[:, index == 0] = nodata
    return out


def check_index_file(path: Path, inputs: list[Path]) -> np.ndarray:
    """The index output's promised form; returns its values (H, W)."""
    with rasterio.open(path) as src:
        assert src.count == 1 and src.dtypes[0] == index_dtype(len(inputs))
        assert src.nodata == 0
        assert src.descriptions == ("input index",)
        assert json.loads(src.tags()["WSFUSION_INDEX_INPUTS"]) == [p.name for p in inputs]
        assert src.tags(1)["INPUT_1"] == inputs[0].name
        cmap = src.colormap(1)
        assert cmap[0][3] == 0 and all(cmap[i][3] == 255 for i in range(1, len(inputs) + 1))
        return src.read(1)


# ------------------------------------------------------------------------ composites


@pytest.mark.parametrize("dtype,nodata", [("uint8", 0), ("uint16", 0), ("float32", -9999.0)])
def test_min_blue_best_copies_the_darkest_blue_input_bit_for_bit(tmp_path, dtype, nodata):
    inputs, data, valid = stack_scene(tmp_path, dtype, nodata=nodata)
    out, idx = tmp_path / "best.tif", tmp_path / "index.tif"
    res = fuse(inputs, out, method="min-blue", selection="best", selection_index=idx)
    assert res.selection == "best" and res.selection_index == idx
    index = check_index_file(idx, inputs)
    # the expected choice, from the stored values: the darkest blue among the valid inputs
    # (min-blue's documented tie rule: then the lowest red, then green; then the first input)
    key = [np.where(valid, data[:, c].astype(np.float64), np.inf) for c in (2, 0, 1)]
    order = np.lexsort(key[::-1], axis=0)  # per pixel: inputs by (blue, red, green), stable
    want = np.where(valid.any(axis=0), order[0] + 1, 0)
    assert (key[0].min(axis=0) == np.sort(key[0], axis=0)[1]).any()  # ties in blue occur
    np.testing.assert_array_equal(index, want)
    got = read(out)
    assert got.dtype == np.dtype(dtype)
    assert got.tobytes() == pick(data, index, nodata).tobytes()  # bit for bit
    assert (index == 0).sum() == 20 * 25 and np.all(got[:, index == 0] == nodata)
    # every valid pixel is kept: where an input is valid, the output is a valid pixel
    assert np.all(index[valid.any(axis=0)] > 0)
    # min-blue's blend takes the same input: the images agree
    fuse(inputs, tmp_path / "blend.tif", method="min-blue")
    assert read(tmp_path / "blend.tif").tobytes() == got.tobytes()


def test_mean_best_is_the_first_valid_input_a_priority_mosaic(tmp_path):
    inputs, data, valid = stack_scene(tmp_path, "uint16")
    out, idx, q = tmp_path / "best.tif", tmp_path / "index.tif", tmp_path / "q.tif"
    fuse(inputs, out, method="mean", selection="best", selection_index=idx, quality=q)
    index = check_index_file(idx, inputs)
    want = np.where(valid.any(axis=0), valid.argmax(axis=0) + 1, 0)  # the first valid input
    np.testing.assert_array_equal(index, want)
    assert read(out).tobytes() == pick(data, index, 0).tobytes()
    assert set(np.unique(index)) == {0, 1, 2, 3}  # holes filled from the next input
    # the quality output is the mean's equal weights, unchanged by the selection
    weights = read(q)
    count = valid.sum(axis=0)
    np.testing.assert_allclose(weights[0][count > 0], (valid[0] / np.maximum(count, 1))[count > 0])


def test_composite_best_with_segmentation_selects_the_same_pixels(tmp_path):
    """With a class map the composite runs on network tiles, blended in the rolling buffer
    (rows cross-faded, not pieces): the image and index are those of the run without it."""
    inputs, _data, _valid = stack_scene(tmp_path, "uint8", height=420)
    for name, seg in (("plain", None), ("seg", tmp_path / "classes.tif")):
        fuse(inputs, tmp_path / f"{name}.tif", method="mean", selection="best",
             selection_index=tmp_path / f"{name}_index.tif", segmentation=seg, device="cpu",
             force_segmentation=True)  # the shipped model on 10 m test pixels (the guard)
    assert read(tmp_path / "seg.tif").tobytes() == read(tmp_path / "plain.tif").tobytes()
    assert read(tmp_path / "seg_index.tif").tobytes() == \
        read(tmp_path / "plain_index.tif").tobytes()
    assert read(tmp_path / "classes.tif").shape == (1, 420, 330)


def test_an_index_beyond_254_inputs_is_uint16(tmp_path):
    """255 inputs: input 255 alone is valid at one pixel, so the index needs 255 (> uint8's
    254 inputs plus nodata 0)."""
    inputs = []
    for i in range(255):
        img = np.full((1, 16, 16), i + 1, np.uint16)
        if i < 254:
            img[:, 0, 0] = 0
        inputs.append(write_raster(tmp_path / f"d{i:03d}.tif", img, nodata=0))
    idx = tmp_path / "index.tif"
    fuse(inputs, tmp_path / "best.tif", method="mean", selection="best", selection_index=idx)
    index = check_index_file(idx, inputs)
    assert index.dtype == np.uint16 and index[0, 0] == 255 and np.all(index.ravel()[1:] == 1)
    assert read(tmp_path / "best.tif")[0, 0, 0] == 255


# ------------------------------------------------------------------------ learned


def learned_scene(folder: Path, h: int = 420, w: int = 560
                  ) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Three uint8 dates, by default 2 x 3 network tiles (overlaps cross-faded), nodata holes,
    a corner without any valid input."""
    data = np.stack([smooth_image(h, w, 3, "uint8", seed=20 + i) for i in range(K)])
    data = np.maximum(data, 1)
    data[1, :, 100:300, 150:400] = np.minimum(data[1, :, 100:300, 150:400].astype(int) + 120,
                                              255).astype(np.uint8)  # a bright "cloud"
    valid = np.ones((K, h, w), bool)
    valid[0, 200:330, 260:480] = False
    valid[2, 50:150, 20:200] = False
    valid[:, -30:, :40] = False
    paths = []
    for i in range(K):
        data[i][:, ~valid[i]] = 0
        paths.append(write_raster(folder / f"date_{i + 1}.tif", data[i], nodata=0))
    return paths, data, valid


def check_learned(data: np.ndarray, valid: np.ndarray, out: Path, idx: Path, q: Path,
                  inputs: list[Path]) -> np.ndarray:
    index = check_index_file(idx, inputs)
    got = read(out)
    # every output pixel is exactly the pixel of the input the index names
    assert got.tobytes() == pick(data, index, 0).tobytes()
    # ... and that input is the argmax of the quality output (ties: the lowest number)
    weights = read(q)
    score = np.where(valid, np.nan_to_num(weights, nan=-1.0), -np.inf)
    want = np.where(valid.any(axis=0), score.argmax(axis=0) + 1, 0)
    np.testing.assert_array_equal(index, want)
    assert np.all(index[valid.any(axis=0)] > 0) and np.all(index[~valid.any(axis=0)] == 0)
    chosen = np.take_along_axis(valid, np.maximum(index.astype(np.int64) - 1, 0)[None], 0)[0]
    assert np.all(chosen[index > 0])  # never an invalid input
    return index


@pytest.mark.parametrize("size", [(420, 560), (290, 300)], ids=["tiles", "one-tile"])
def test_learned_best_takes_the_argmax_of_the_quality_output(tmp_path, size):
    """Tiles cross-faded in a rolling buffer, and a raster of one tile (converted as it
    comes, blend.DirectStrip)."""
    inputs, data, valid = learned_scene(tmp_path, *size)
    out, idx, q = tmp_path / "best.tif", tmp_path / "index.tif", tmp_path / "q.tif"
    fuse(inputs, out, selection="best", selection_index=idx, quality=q, device="cpu")
    index = check_learned(data, valid, out, idx, q, inputs)
    assert len(np.unique(index[index > 0])) == K  # the weights choose among all inputs
    # the cloud makes input 2 lose where it is bright
    cloud = index[100:300, 150:400]
    assert (cloud == 2).mean() < (index[index > 0] == 2).mean()
    with rasterio.open(out) as src:
        assert src.tags()["WSFUSION_SELECTION"] == "best"


def test_learned_best_on_the_device_buffer_equals_the_numpy_buffer(tmp_path, monkeypatch):
    """The rows of the device-side buffer (device_blend, here on the CPU) arrive while the
    next strip runs: they are selected from the strip they came from, as the numpy path."""
    from wsfusion_core import runner as rn

    inputs, data, valid = learned_scene(tmp_path)
    plain = rn.policy_for
    outs = {}
    for name in ("numpy", "device"):
        if name == "device":
            monkeypatch.setattr(rn, "policy_for", lambda *a, **kw: dataclasses.replace(
                plain(*a, **kw), device_side=True))
        outs[name] = [tmp_path / f"{name}_{s}.tif" for s in ("best", "index", "q")]
        fuse(inputs, outs[name][0], selection="best", selection_index=outs[name][1],
             quality=outs[name][2], device="cpu")
    for a, b in zip(outs["numpy"], outs["device"]):
        assert np.array_equal(read(a), read(b), equal_nan=True), a.name
    check_learned(data, valid, *outs["device"], inputs)


@pytest.mark.cuda
def test_learned_best_on_cuda_takes_the_argmax_of_its_quality_output(tmp_path):
    """On a GPU the weights are blended on the device (device_blend) and the rows selected on
    the host when they arrive: still one input's pixel everywhere, the argmax of the weights
    the same run writes."""
    inputs, data, valid = learned_scene(tmp_path)
    out, idx, q = tmp_path / "best.tif", tmp_path / "index.tif", tmp_path / "q.tif"
    res = fuse(inputs, out, selection="best", selection_index=idx, quality=q, device="cuda")
    assert res.device.startswith("cuda")
    check_learned(data, valid, out, idx, q, inputs)


def test_best_without_an_index_writes_the_image_alone(tmp_path):
    """The index is optional; the image is the same as with it, and no quality output is
    written although the run kept the weights to choose."""
    inputs, _data, _valid = stack_scene(tmp_path, "uint8")
    fuse(inputs, tmp_path / "alone.tif", method="min-blue", selection="best")
    fuse(inputs, tmp_path / "with.tif", method="min-blue", selection="best",
         selection_index=tmp_path / "index.tif")
    assert read(tmp_path / "alone.tif").tobytes() == read(tmp_path / "with.tif").tobytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [p.name for p in inputs] + ["alone.tif", "with.tif", "index.tif"])


# ------------------------------------------------------------------------ Dask, CLI


@pytest.mark.parametrize("method", ["min-blue", "learned"])
def test_workers_2_give_the_local_bytes(tmp_path, method, random_weights, one_thread):
    """``--workers 2 --chunk 256`` (a local Dask cluster of two processes, windows cut across
    tiles and composite pieces) writes the local run's image and index."""
    pytest.importorskip("distributed")
    inputs, data, valid = (learned_scene if method == "learned" else
                           lambda f: stack_scene(f, "uint16"))(tmp_path)
    extra = ["--weights", random_weights, "--device", "cpu"] if method == "learned" else []
    files = {}
    for name, cluster in (("local", []), ("workers", ["--workers", "2", "--chunk", "256"])):
        files[name] = [tmp_path / f"{name}_{s}.tif" for s in ("best", "index", "q")]
        r = invoke("fuse", *inputs, "-o", files[name][0], "--method", method, "--selection",
                   "best", "--selection-index", files[name][1], "--quality", files[name][2],
                   "-q", *extra, *cluster)
        assert r.exit_code == 0, r.output
    for a, b in zip(files["local"], files["workers"]):
        with rasterio.open(a) as x, rasterio.open(b) as y:
            assert np.array_equal(x.read(), y.read(), equal_nan=True), a.name
            px, py = dict(x.profile), dict(y.profile)
            assert np.array_equal(px.pop("nodata"), py.pop("nodata"), equal_nan=True)
            assert x.tags() == y.tags() and px == py, a.name
            assert x.tags(1) == y.tags(1) and x.descriptions == y.descriptions, a.name
    if method == "learned":
        check_learned(data, valid, *files["workers"], inputs)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no parts left


def test_cli_end_to_end(tmp_path):
    inputs, data, _valid = stack_scene(tmp_path, "uint8")
    out, idx = tmp_path / "best.tif", tmp_path / "index.tif"
    r = invoke("fuse", *inputs, "-o", out, "--method", "mean", "--selection", "best",
               "--selection-index", idx)
    assert r.exit_code == 0, r.output
    assert f"input index: {idx}" in r.output and "mean, best pixel" in r.output
    index = check_index_file(idx, inputs)
    assert read(out).tobytes() == pick(data, index, 0).tobytes()


@pytest.mark.parametrize("args,words", [
    (["--method", "median", "--selection", "best"], "the median has none"),
    (["--method", "median", "--selection", "best", "--selection-index", "{idx}"],
     "the median has none"),
    (["--method", "mean", "--selection-index", "{idx}"], "needs best-pixel selection"),
    (["--method", "mean", "--selection", "first"], "Invalid value for '--selection'"),
])
def test_refusals_are_one_line_and_publish_nothing(tmp_path, args, words):
    inputs, _data, _valid = stack_scene(tmp_path, "uint8")
    before = sorted(os.listdir(tmp_path))
    idx = tmp_path / "index.tif"
    r = invoke("fuse", *inputs, "-o", tmp_path / "out.tif",
               *[a.format(idx=idx) for a in args])
    assert r.exit_code != 0
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert words in r.output and lines[-1].startswith("Error:")
    if "Invalid value" not in words:
        assert len(lines) == 1
    assert sorted(os.listdir(tmp_path)) == before


def test_python_refusals_name_the_choice(tmp_path):
    inputs, _data, _valid = stack_scene(tmp_path, "uint8")
    with pytest.raises(WsfusionError, match="unknown selection 'first'"):
        fuse(inputs, tmp_path / "o.tif", method="mean", selection="first")
    with pytest.raises(WsfusionError, match="the median has none"):
        fuse(inputs, tmp_path / "o.tif", method="median", selection="best")
    assert not (tmp_path / "o.tif").exists()


def test_info_says_what_the_selection_does_and_what_fuse_refuses(tmp_path):
    inputs, _data, _valid = stack_scene(tmp_path, "uint8")
    r = invoke("info", *inputs, "--method", "mean", "--selection", "best")
    assert r.exit_code == 0, r.output
    assert "best pixel" in r.output and "the first valid input" in r.output
    assert "input index (if asked): 1 band uint8, 1..3" in r.output
    r = invoke("info", *inputs)
    assert "selection: blend" in r.output
    r = invoke("info", *inputs, "--method", "median", "--selection", "best")
    assert r.exit_code == 0 and "refuse: best-pixel selection needs per-input weights" in r.output
