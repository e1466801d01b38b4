"""Artifact synthesis: the realised share matches the request, and only affected pixels change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.artifacts import (
    SHARE_TOLERANCE,
    TEST_CLOUDS,
    TRAIN_CLOUDS,
    CloudBank,
    corrupt,
    fractal_noise,
    perlin,
)

CLOUDS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "clouds"


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(5)
    # Textured, never exactly 0 or 1, so any blend with a cloud or a gap is visible.
    return (0.1 + 0.8 * rng.random((160, 200, 3))).astype(np.float32)


@pytest.fixture(scope="module")
def bank() -> CloudBank | None:
    if not (CLOUDS / "ukis_csmask" / "sentinel2.npz").is_file():
        return None
    return CloudBank.from_sources(CLOUDS, TRAIN_CLOUDS)


def test_perlin_is_smooth_and_bounded() -> None:
    rng = np.random.default_rng(0)
    n = perlin((64, 96), (4, 6), rng)
    assert n.shape == (64, 96)
    assert np.abs(n).max() < 1.0
    assert np.abs(np.diff(n, axis=1)).max() < 0.2  # gradient noise: neighbours are close
    f = fractal_noise((64, 96), rng, octaves=4)
    assert f.std() > 0.05 and np.abs(f).max() <= 1.5


@pytest.mark.parametrize("kind", ["cloud", "missing"])
@pytest.mark.parametrize("share", [0.1, 0.25, 0.5, 0.6])
def test_realised_share_matches_request(image, bank, kind, share) -> None:
    rng = np.random.default_rng(int(share * 100) + (kind == "cloud"))
    for _ in range(3):
        out, affected = corrupt(image, kind, share, rng, bank)
        assert abs(affected.mean() - share) <= SHARE_TOLERANCE
        changed = np.any(out != image, axis=2)
        # "share" is the fraction of pixels actually changed, not a bounding box.
        assert np.array_equal(changed, affected)
        if kind == "missing":
            assert np.all(out[affected] == 0)


def test_clouds_are_bright_and_shaped(image, bank) -> None:
    rng = np.random.default_rng(3)
    out, affected = corrupt(image, "cloud", 0.4, rng, bank, opacity=1.0)
    # Clouds brighten the scene and are not one rectangle: many boundary pixels.
    assert out[affected].mean() > image[affected].mean()
    rows, cols = np.nonzero(affected)
    bbox = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert affected.sum() < 0.95 * bbox


def test_held_out_clouds_load() -> None:
    if not (CLOUDS / "cloud38").is_dir():
        pytest.skip(f"{CLOUDS / 'cloud38'} absent")
    bank = CloudBank.from_sources(CLOUDS, TEST_CLOUDS)
    tex = bank.texture((64, 64), np.random.default_rng(0))
    assert tex.shape == (64, 64, 3) and 0 <= tex.min() and tex.max() <= 1
    assert tex.mean() > 0.4  # cloud colour, not ground


def test_bad_arguments(image) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        corrupt(image, "smoke", 0.2, rng)
    with pytest.raises(ValueError):
        corrupt(image, "cloud", 1.5, rng)
