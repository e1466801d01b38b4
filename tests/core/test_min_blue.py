"""The minimum-blue composite: per pixel every band of the valid input with the lowest blue,
the same whatever the order of the inputs, streamed like the other composites; the CLI writes
it (and its 0/1 selection weights) from real GeoTIFFs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from wsfusion_core import cli
from wsfusion_core import composite as comp_mod
from wsfusion_core.composite import composite, composite_chunks, equal_weights, min_blue
from wsfusion_core.errors import WsfusionError


def _reference(data: np.ndarray, valid: np.ndarray, blue: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel by pixel in plain Python: the inputs whose (blue, other bands in order) tuple is the
    smallest; their common values and 1/n weights."""
    k, c, h, w = data.shape
    out = np.zeros((c, h, w))
    weights = np.zeros((k, h, w))
    order = [blue] + [b for b in range(c) if b != blue]
    for y, x in itertools.product(range(h), range(w)):
        keys = {i: tuple(float(data[i, b, y, x]) for b in order) for i in range(k)
                if valid[i, y, x]}
        if not keys:
            continue
        best = min(keys.values())
        chosen = [i for i, key in keys.items() if key == best]
        out[:, y, x] = data[chosen[0], :, y, x]
        weights[chosen, y, x] = 1 / len(chosen)
    return out, weights


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
@pytest.mark.parametrize("blue", [0, 2])
def test_min_blue_equals_the_pixel_by_pixel_rule(dtype, blue):
    """Few distinct values, so ties in blue (and in every band) are common; garbage (NaN,
    sentinels) in invalid pixels and a column with no valid input."""
    rng = np.random.default_rng(blue)
    data = rng.integers(0, 3, (4, 3, 7, 9)).astype(dtype)
    valid = rng.random((4, 7, 9)) > 0.3
    valid[:, :, 0] = False
    data = np.where(valid[:, None], data, np.array(np.nan if dtype == "float32" else 1, dtype))
    want, want_w = _reference(data, valid, blue)
    got, any_valid = composite(data, valid, "min-blue", blue)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(any_valid, valid.any(axis=0))
    np.testing.assert_allclose(equal_weights(min_blue(data, valid, blue)), want_w, rtol=1e-6)


def test_min_blue_is_the_same_for_every_order_of_the_inputs():
    rng = np.random.default_rng(1)
    data = rng.integers(0, 3, (4, 2, 6, 8)).astype(np.uint8)
    valid = rng.random((4, 6, 8)) > 0.2
    base, _ = composite(data, valid, "min-blue", 1)
    base_w = equal_weights(min_blue(data, valid, 1))
    for perm in itertools.permutations(range(4)):
        p = list(perm)
        got, _ = composite(data[p], valid[p], "min-blue", 1)
        np.testing.assert_array_equal(got, base)
        np.testing.assert_array_equal(equal_weights(min_blue(data[p], valid[p], 1)), base_w[p])


def test_ties_in_blue_go_to_the_lower_other_bands_and_full_ties_share():
    # one pixel, bands (R, G, B): inputs 0 and 1 tie in blue, 1 has the lower red; input 2 is
    # brighter in blue. Second pixel: inputs 0 and 2 equal in every band, 1 brighter.
    data = np.array([[[[5, 1]], [[0, 2]], [[3, 3]]],
                     [[[4, 9]], [[9, 2]], [[3, 4]]],
                     [[[0, 1]], [[0, 2]], [[7, 3]]]], np.uint8)
    valid = np.ones((3, 1, 2), bool)
    got, _ = composite(data, valid, "min-blue")
    np.testing.assert_array_equal(got[:, 0], [[4, 1], [9, 2], [3, 3]])
    np.testing.assert_allclose(equal_weights(min_blue(data, valid))[:, 0],
                               [[0, 0.5], [1, 0], [0, 0.5]])


def test_chunks_take_blue_from_the_last_network_band(monkeypatch):
    monkeypatch.setattr(comp_mod, "CHUNK", 7)
    rng = np.random.default_rng(2)
    data = rng.integers(0, 9, (3, 4, 5, 30)).astype(np.uint16)
    valid = rng.random((3, 5, 30)) > 0.3
    parts = list(composite_chunks(data, valid, "min-blue", quality=True, bands=(4, 3, 2)))
    want, want_w = _reference(data, valid, 1)  # band 2 = channel 1
    np.testing.assert_array_equal(np.concatenate([c for _, c, _ in parts], axis=-1), want)
    np.testing.assert_allclose(np.concatenate([q for _, _, q in parts], axis=-1), want_w,
                               rtol=1e-6)
    with pytest.raises(WsfusionError, match="last network band \\(5\\).*4 band"):
        list(composite_chunks(data, valid, "min-blue", quality=False, bands=(1, 2, 5)))


# ------------------------------------------------------------------ real GeoTIFFs, the CLI


def _read(path):
    with rasterio.open(path) as src:
        return src.read(), src.dataset_mask() > 0


@pytest.mark.parametrize("dtype,bands", [("uint8", 3), ("uint16", 4)])
def test_cli_min_blue_writes_the_composite_and_selection_weights(tmp_path, make_raster, dtype,
                                                                 bands):
    """Three inputs with nodata (0) and many ties; all bands are written, blue is band 3 (the
    last of the default network bands 1,2,3); a permuted input order gives the same file and
    the same weights, permuted."""
    rng = np.random.default_rng(3)
    top = 4 if dtype == "uint8" else 3000
    arrays = [rng.integers(1, top, (bands, 40, 70)).astype(dtype) for _ in range(3)]
    for i, a in enumerate(arrays):
        a[:, 5 * i:5 * i + 12, 10 * i:10 * i + 30] = 0  # nodata holes, overlapping at places
    arrays[0][:, :4, :4] = arrays[1][:, :4, :4] = arrays[2][:, :4, :4] = 0  # none valid
    paths = [make_raster(tmp_path / f"in{i}.tif", a, nodata=0) for i, a in enumerate(arrays)]
    runs = {}
    for name, order in (("abc", [0, 1, 2]), ("cab", [2, 0, 1])):
        out, q = tmp_path / f"{name}.tif", tmp_path / f"{name}_q.tif"
        res = CliRunner().invoke(cli.main, ["fuse", *[str(paths[i]) for i in order], "-o",
                                            str(out), "--method", "min-blue", "--quality",
                                            str(q), "-q"])
        assert res.exit_code == 0, res.output
        runs[name] = (_read(out), _read(q), order)

    data = np.stack(arrays)
    valid = data.any(axis=1)
    want, want_w = _reference(data, valid, 2)
    (fused, fused_valid), (weights, _), _ = runs["abc"]
    with rasterio.open(tmp_path / "abc.tif") as src:
        assert (src.count, src.dtypes[0], src.nodata) == (bands, dtype, 0)
        assert src.tags()["WSFUSION_METHOD"] == "min-blue"
    np.testing.assert_array_equal(fused_valid, valid.any(axis=0))
    np.testing.assert_array_equal(fused[:, fused_valid], want[:, fused_valid])
    np.testing.assert_allclose(weights[:, fused_valid], want_w[:, fused_valid], rtol=1e-6)
    (fused2, valid2), (weights2, _), order = runs["cab"]
    np.testing.assert_array_equal(valid2, fused_valid)
    np.testing.assert_array_equal(fused2, fused)
    np.testing.assert_array_equal(weights2[np.argsort(order)][:, fused_valid],
                                  weights[:, fused_valid])


def test_cli_min_blue_without_a_blue_band_is_one_error_line(tmp_path, make_raster):
    grey = [make_raster(tmp_path / f"g{i}.tif", np.full((1, 8, 8), i + 1, np.uint8))
            for i in range(2)]
    res = CliRunner().invoke(cli.main, ["fuse", *map(str, grey), "-o", str(tmp_path / "o.tif"),
                                        "--method", "min-blue", "-q"])
    assert res.exit_code == 1
    assert "last network band (3)" in res.output and "1 band(s)" in res.output
    assert not (tmp_path / "o.tif").exists()


def test_cli_min_blue_reads_blue_from_the_last_of_bands(tmp_path, make_raster):
    """Sentinel-2 order --bands 4,3,2: band 2 decides, not band 3 (the default bands' blue)."""
    rng = np.random.default_rng(4)
    arrays = [rng.integers(1, 3000, (4, 30, 40)).astype(np.uint16) for _ in range(2)]
    paths = [make_raster(tmp_path / f"s{i}.tif", a, nodata=0) for i, a in enumerate(arrays)]
    out = tmp_path / "mb.tif"
    res = CliRunner().invoke(cli.main, ["fuse", *map(str, paths), "-o", str(out), "--method",
                                        "min-blue", "--bands", "4,3,2", "-q"])
    assert res.exit_code == 0, res.output
    data = np.stack(arrays)
    want, _ = _reference(data, np.ones((2, 30, 40), bool), 1)
    np.testing.assert_array_equal(_read(out)[0], want)
    assert not np.array_equal(want, _reference(data, np.ones((2, 30, 40), bool), 2)[0])


def test_a_missing_blue_band_is_refused_before_anything_is_written(tmp_path, make_raster):
    """Single-band inputs have no blue among the default bands (1, 2, 3): one line naming the
    cause, raised before reading, and no output left behind."""
    from wsfusion_core import fuse

    rng = np.random.default_rng(3)
    inputs = [make_raster(tmp_path / f"g{i}.tif", rng.integers(0, 255, (1, 40, 50), np.uint8))
              for i in range(2)]
    out = tmp_path / "out.tif"
    with pytest.raises(WsfusionError, match="last network band \\(3\\).*1 band"):
        fuse(inputs, out, method="min-blue")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g0.tif", "g1.tif"]


def test_the_segmented_composite_chooses_on_the_stored_values():
    """min-blue of the network views takes the inputs chosen on the stored values (what the
    written image shows), even where a per-input scale would order the views differently."""
    from wsfusion_core.composite import min_blue_like

    stored = np.array([[[[10]], [[10]], [[50]]], [[[200]], [[200]], [[60]]]], np.float32)
    valid = np.ones((2, 1, 1), bool)
    view = np.array([[[[0.9]], [[0.9]], [[0.9]]], [[[0.1]], [[0.1]], [[0.1]]]], np.float32)
    # stored blue (channel 2): input 0 has 50 < 60, so input 0's view, although its view is
    # the brighter one
    np.testing.assert_array_equal(min_blue_like(view, stored, valid, 2)[:, 0, 0], view[0, :, 0, 0])
