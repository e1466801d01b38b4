"""The realistic artifact generators: each changes the share of pixels it is asked to, looks
like what it imitates (haze: translucent and low contrast; shadow: darker, displaced from its
cloud; stripes: thin parallel gaps), and bright ground stays untouched in the clean image."""

from __future__ import annotations

import numpy as np
import pytest

from training.artifacts import (
    SHARE_TOLERANCE,
    ArtifactMix,
    cloud_with_shadow,
    fill,
    haze,
    misregister,
    overcast,
    radiometric_shift,
    spoil_input,
    stripes,
)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(7)
    return (0.1 + 0.6 * rng.random((150, 190, 3))).astype(np.float32)


@pytest.mark.parametrize("share", [0.1, 0.35, 0.8])
def test_haze_share_and_translucency(image: np.ndarray, share: float) -> None:
    out, mask = haze(image, share, np.random.default_rng(1))
    assert abs(mask.mean() - share) <= SHARE_TOLERANCE
    assert np.array_equal(out[~mask], image[~mask])
    # Translucent: the ground's texture still shows through (correlated), but with less contrast.
    a, b = image[mask].ravel(), out[mask].ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.5
    assert b.std() < a.std()
    assert b.mean() > a.mean()


def test_whole_frame_heavy_haze_stays_translucent(image: np.ndarray) -> None:
    """A date veiled over its whole frame at the heaviest strength still shows its ground (the
    veil is not an overcast deck), and the veil is marked as affected everywhere."""
    mix = ArtifactMix(cloud=0, haze=1.0, overcast=0, fill=0, stripes=0, radiometry=0.0,
                      misregistration=0, haze_strength=(0.8, 0.8), haze_whole=1.0)
    out, valid, affected = spoil_input(image, np.random.default_rng(4), mix)
    assert valid.all() and affected.mean() > 0.999
    a, b = image.ravel(), out.ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.5
    assert b.std() < 0.8 * a.std() and b.mean() > a.mean()
    assert (out < 0.99).all()  # never an opaque white deck


@pytest.mark.parametrize("share", [0.15, 0.4])
def test_cloud_and_displaced_shadow(image: np.ndarray, share: float) -> None:
    out, cloud, shadow = cloud_with_shadow(image, share, np.random.default_rng(3), opacity=1.0)
    assert abs(cloud.mean() - share) <= SHARE_TOLERANCE
    assert shadow.any() and not (shadow & cloud).any()
    assert (out[shadow].mean(axis=1) < image[shadow].mean(axis=1) - 1e-6).all()
    untouched = ~(cloud | shadow)
    assert np.array_equal(out[untouched], image[untouched])


@pytest.mark.parametrize("share", [0.1, 0.25])
def test_stripes_share_and_shape(image: np.ndarray, share: float) -> None:
    out, mask = stripes(image, share, np.random.default_rng(5))
    assert abs(mask.mean() - share) <= SHARE_TOLERANCE
    assert (out[mask] == 0).all()
    # Many separate thin gaps, not one block: several runs along some row or column.
    runs = max(max(np.count_nonzero(np.diff(mask[r].astype(int)) == 1) for r in
                   range(mask.shape[0])),
               max(np.count_nonzero(np.diff(mask[:, c].astype(int)) == 1) for c in
                   range(mask.shape[1])))
    assert runs >= 3


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_black_and_white_fill(image: np.ndarray, value: float) -> None:
    out, mask = fill(image, 0.3, np.random.default_rng(2), value)
    assert abs(mask.mean() - 0.3) <= SHARE_TOLERANCE
    assert (out[mask] == value).all()


def test_overcast_covers_everything_and_hides_the_ground(image: np.ndarray) -> None:
    out, mask = overcast(image, np.random.default_rng(4))
    assert mask.all()
    assert out.mean() > 0.7
    # At most ~18 % of the ground's contrast shows through (slope of out on the ground).
    slope = np.polyfit(image.ravel(), out.ravel(), 1)[0]
    assert abs(slope) < 0.18


def test_radiometry_and_misregistration_change_dates_not_content(image: np.ndarray) -> None:
    rng = np.random.default_rng(9)
    shifted = radiometric_shift(image, rng)
    assert shifted.shape == image.shape and not np.allclose(shifted, image)
    assert np.corrcoef(shifted.ravel(), image.ravel())[0, 1] > 0.8
    moved = misregister(image, np.random.default_rng(0), 2)
    dy, dx = next((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                  if np.array_equal(moved[4:-4, 4:-4], image[4 + dy:-4 + dy or None,
                                                              4 + dx:-4 + dx or None]))
    assert max(abs(dy), abs(dx)) <= 2


def test_mixture_keeps_bright_ground_in_the_clean_image() -> None:
    """A bright roof (near 1) is ground, not cloud: spoiling other dates never alters the clean
    reference, and a date with no artifact drawn keeps the roof bright (only radiometry)."""
    img = np.full((96, 96, 3), 0.3, np.float32)
    img[30:60, 30:60] = 0.97  # a white roof
    mix = ArtifactMix(cloud=0, haze=0, overcast=0, fill=0, stripes=0, misregistration=0)
    for seed in range(5):
        out, valid, affected = spoil_input(img, np.random.default_rng(seed), mix)
        assert valid.all() and not affected.any()
        assert out[30:60, 30:60].mean() > out[:20, :20].mean() + 0.4
    assert img[30:60, 30:60].min() == np.float32(0.97)


def test_mixture_marks_declared_gaps_invalid() -> None:
    img = np.full((64, 64, 3), 0.4, np.float32)
    mix = ArtifactMix(cloud=0, haze=0, overcast=0, fill=1.0, stripes=0, declared=1.0,
                      white_fill=0.0, radiometry=0.0, misregistration=0)
    out, valid, affected = spoil_input(img, np.random.default_rng(0), mix)
    assert (~valid).any() and np.array_equal(~valid, affected)
    assert (out[~valid] == 0).all()


def test_joint_gain_keeps_the_order_of_dates_and_mixed_draws_both_kinds() -> None:
    """The joint gain changes every date of a sample (and the clean image) alike, so "brighter
    than the others here" survives; ``mixed`` gives both the paper's and the realistic
    artifacts."""
    from training.datasets import SampleConfig, make_sample

    rng0 = np.random.default_rng(3)
    img = (40 + 150 * rng0.random((200, 200, 3))).astype(np.uint8)
    lab = np.zeros((200, 200), np.uint8)
    base = SampleConfig(crop=64, artifacts="real", augment=False)
    gained = SampleConfig(crop=64, artifacts="real", augment=False, joint_gain=(0.4, 2.0))
    for seed in range(4):
        a = make_sample(img, lab, 3, base, np.random.default_rng(seed), None, at=(10, 10))
        b = make_sample(img, lab, 3, gained, np.random.default_rng(seed), None, at=(10, 10))
        order_a = np.argsort(a["inputs"].mean(axis=(1, 2, 3)))
        order_b = np.argsort(b["inputs"].mean(axis=(1, 2, 3)))
        assert np.array_equal(order_a, order_b)
        assert not np.allclose(a["clean"], b["clean"])
    kinds = set()
    mixed = SampleConfig(crop=64, artifacts="mixed", augment=False, share_range=(0.3, 0.3))
    for seed in range(12):
        s = make_sample(img, lab, 2, mixed, np.random.default_rng(seed), None, at=(0, 0))
        # The paper's artifacts change exactly 30 % of each input; the realistic mix does not.
        kinds.add(bool(np.all(np.abs(s["affected"].mean(axis=(1, 2)) - 0.3) < 0.02)))
    assert kinds == {True, False}
