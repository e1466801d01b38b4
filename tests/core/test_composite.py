"""Mean and median composites over the valid inputs only; equal weights; chunked strips."""

from __future__ import annotations

import numpy as np
import pytest

from wsfusion_core import composite as comp_mod
from wsfusion_core.composite import composite, composite_chunks, equal_weights


def _stack():
    # three inputs, one band, 1 x 4 pixels; the 999s are invalid sentinels
    data = np.array([[[[1, 2, 999, 999]]], [[[3, 999, 5, 999]]], [[[8, 4, 6, 999]]]], np.uint16)
    valid = data[:, 0] != 999
    return data, valid


def test_mean_and_median_ignore_invalid_inputs():
    data, valid = _stack()
    mean, any_valid = composite(data, valid, "mean")
    median, _ = composite(data, valid, "median")
    np.testing.assert_allclose(mean[0, 0], [4.0, 3.0, 5.5, 0.0])
    np.testing.assert_allclose(median[0, 0], [3.0, 3.0, 5.5, 0.0])
    np.testing.assert_array_equal(any_valid[0], [True, True, True, False])


def test_unknown_method_is_refused():
    data, valid = _stack()
    with pytest.raises(ValueError, match="one of mean, median, min-blue, not 'max'"):
        composite(data, valid, "max")


def test_equal_weights_are_one_over_the_valid_count():
    _, valid = _stack()
    w = equal_weights(valid)
    np.testing.assert_allclose(w[:, 0], [[1 / 3, 1 / 2, 0, 0], [1 / 3, 0, 1 / 2, 0],
                                         [1 / 3, 1 / 2, 1 / 2, 0]])


def test_chunks_equal_the_whole_strip(monkeypatch):
    monkeypatch.setattr(comp_mod, "CHUNK", 7)  # several chunks and a short last one
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (3, 2, 5, 30)).astype(np.uint8)
    valid = rng.random((3, 5, 30)) > 0.4
    whole, _ = composite(data, valid, "median")
    parts = list(composite_chunks(data, valid, "median", quality=True))
    assert [x0 for x0, _, _ in parts] == [0, 7, 14, 21, 28]
    np.testing.assert_array_equal(np.concatenate([c for _, c, _ in parts], axis=-1), whole)
    np.testing.assert_array_equal(np.concatenate([q for _, _, q in parts], axis=-1),
                                  equal_weights(valid))


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32"])
@pytest.mark.parametrize("k", [1, 2, 5, 6])
def test_composites_equal_numpys_nan_reductions(dtype, k):
    """The vectorised mean and median (sorting network) give what np.nanmean / np.nanmedian
    give, with garbage (NaN, sentinels) in the invalid pixels and pixels with no valid input."""
    rng = np.random.default_rng(k)
    data = rng.integers(-50 if dtype == "int16" else 0, 255, (k, 3, 6, 40)).astype(dtype)
    valid = rng.random((k, 6, 40)) > 0.3
    valid[:, 0, :5] = False
    garbage = np.nan if dtype == "float32" else 77
    data = np.where(valid[:, None], data, np.array(garbage, dtype=dtype))
    ref = np.where(valid[:, None], data.astype(np.float64), np.nan)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        want_mean = np.nan_to_num(np.nanmean(ref, axis=0))
        want_median = np.nan_to_num(np.nanmedian(ref, axis=0))
    mean, any_valid = composite(data, valid, "mean")
    median, _ = composite(data, valid, "median")
    np.testing.assert_allclose(mean, want_mean, rtol=1e-6)
    np.testing.assert_array_equal(median, want_median)
    np.testing.assert_array_equal(any_valid, valid.any(axis=0))
