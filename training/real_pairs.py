"""Real cloudy/clear Sentinel-2 pairs as training samples (issue 18/24 recipe).

Every pair (``../shared/data/real_clouds``): a cloudy L1C acquisition and a clear one of the
same ground, 13 bands, reflectance x 10000. The clear image is the answer wherever the cloudy
one is degraded. A sample is a random crop turned into K = 2..6 inputs:

- the clear image and the real cloudy image, each with a small gain change (dates differ);
- K - 2 more, drawn from: the clear image with a *real* cloud transplanted from another pair
  (its cloudy pixels, all 13 bands, through that pair's cloud mask as alpha: real spectra in
  cirrus and SWIR too, nothing invented), the clear image under a synthetic cloud shadow (every
  band darkened: physically sound in all bands), another gain-changed copy of the cloudy or
  the clear image, the clear image with a declared fill (nodata) block, or (``veil_prob``) the
  clear image under a synthetic cirrus or haze veil (:func:`veil`: spectra that hold in every
  band); with ``veil_prob`` the real cloudy input itself is replaced by a veiled copy that
  often. Thin whole-scene veils are rare among the real pairs (581, 6780), common in real use.

Degraded pixels (where the loss applies): the pair's cloud mask where there is one (the 20
training pairs), else the project's brightening rule (realclouds.s2_clouded), plus a cloud
shadow rule (NIR below 0.75 x the clear NIR and darker by more than 0.03), dilated by 2 px;
and the synthetic artifacts' own masks. Outside them any input is acceptable.

Folds are by place (region-held-out validation): ROI 136, ROI 85 (the 8 ``sen12mscr_pairs``),
and four groups of the 20 ``sen12mscr_train`` pairs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

REFLECTANCE = 1e-4  # stored value -> reflectance
SHADOW_RATIO, SHADOW_NIR = 0.75, 0.03
NIR = 7  # B8, 0-based in the 13-band stack
RGB = (3, 2, 1)  # B4, B3, B2, 0-based
EDGE_PX = 2
TRAIN_IDS = (316, 581, 746, 1302, 2266, 2729, 3968, 4065, 4287, 4294, 4433, 4438, 5254, 5278,
             5349, 6317, 6553, 6780, 7264, 7657)
# Four groups of the 20 training pairs, round-robin over their sorted ids (each id a place).
GROUPS = {f"g{g + 1}": tuple(TRAIN_IDS[i] for i in range(g, len(TRAIN_IDS), 4))
          for g in range(4)}
FOLDS = ("roi136", "roi85", *GROUPS)


@dataclass
class Pair:
    """One real pair, as reflectance (13, H, W) float32, with what is known of its clouds."""

    name: str
    fold: str
    clear: np.ndarray
    cloudy: np.ndarray
    degraded: np.ndarray  # (H, W) bool: the cloudy image is cloud, haze or shadow here
    cloud: np.ndarray  # (H, W) float32 0..1: cloud opacity estimate (transplant alpha)

    @property
    def cloud_share(self) -> float:
        return float(self.cloud.mean())


def fold_of(name: str) -> str:
    """The fold (place group) of a pair's file stem."""
    m = re.search(r"_(136|85)_p\d+", name)
    if m:
        return f"roi{m.group(1)}"
    num = int(re.sub(r"\D", "", name) or -1)
    for g, ids in GROUPS.items():
        if num in ids:
            return g
    return "other"


def _read(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read().astype(np.float32) * REFLECTANCE


def shadow_rule(cloudy: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """Cloud shadow: NIR below 0.75 x the clear NIR and darker by more than 0.03 (the rule the
    real-cloud yardstick scores with)."""
    yn, cn = cloudy[NIR], clear[NIR]
    return (yn < SHADOW_RATIO * cn) & (cn - yn > SHADOW_NIR)


def load_pairs(root: str | Path, folds: Sequence[str] | None = None,
               exclude: Sequence[str] = ()) -> list[Pair]:
    """All real S2 pairs under ``root`` (the shared ``data`` folder), optionally only these
    folds or without those; [] where the data is absent."""
    from .realclouds import s2_clouded

    base = Path(root) / "real_clouds"
    out: list[Pair] = []
    for sub in ("sen12mscr_pairs", "sen12mscr_train"):
        for clear_p in sorted((base / sub / "clear").glob("*.tif")):
            cloudy_p = base / sub / "cloudy" / clear_p.name
            if not cloudy_p.exists():
                cloudy_p = base / sub / "cloudy" / clear_p.name.replace("_s2_", "_s2_cloudy_")
            if not cloudy_p.exists():
                continue
            fold = fold_of(clear_p.stem)
            if (folds and fold not in folds) or fold in exclude:
                continue
            clear, cloudy = _read(clear_p), _read(cloudy_p)
            if clear.shape[0] != 13:
                continue
            mask_p = base / sub / "mask" / clear_p.name
            if mask_p.exists():
                import rasterio

                with rasterio.open(mask_p) as m:
                    cloud = m.read(1) > 0
                bad = ndimage.binary_dilation(cloud | shadow_rule(cloudy, clear),
                                              iterations=EDGE_PX)
            else:
                dn = lambda a: a / REFLECTANCE  # noqa: E731 - the rule works in DN
                bad = s2_clouded(dn(cloudy), dn(clear))
                cloud = bad & ~shadow_rule(cloudy, clear)
            soft = ndimage.gaussian_filter(cloud.astype(np.float32), 1.5)
            out.append(Pair(f"{sub}/{clear_p.stem}", fold, clear, cloudy, bad, soft))
    return out


def evidence_stats(pairs: Sequence[Pair], bands: Sequence[int]) -> tuple[list[float], list[float]]:
    """Mean and std of each evidence band (0-based) over every pixel of the pairs: the
    normalisation the weights file records."""
    if not bands:
        return [], []
    vals = np.concatenate([np.stack([p.clear[list(bands)], p.cloudy[list(bands)]]).reshape(
        2, len(bands), -1).transpose(1, 0, 2).reshape(len(bands), -1) for p in pairs], axis=1)
    return ([round(float(v), 6) for v in vals.mean(axis=1)],
            [round(float(max(v, 1e-4)), 6) for v in vals.std(axis=1)])


def _blob(shape: tuple[int, int], rng: np.random.Generator, share: float) -> np.ndarray:
    """A soft 0..1 blob covering about ``share`` of the crop (synthetic shadow or fill shape)."""
    from .artifacts import blob_noise

    n = blob_noise(shape, rng, cells=rng.uniform(1.5, 4.0))
    t = np.quantile(n, 1 - share)
    return np.clip((n - t) * 8.0, 0.0, 1.0).astype(np.float32)


def _gain(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """A small radiometric change between dates: one gain, a slight tint per band."""
    g = 1 + strength * rng.uniform(-0.07, 0.07)
    tint = 1 + strength * rng.uniform(-0.02, 0.02, (img.shape[0], 1, 1))
    return (img * g * tint).astype(np.float32)


# Low haze (aerosol) brightens short wavelengths most and leaves the cirrus band (B10: absorbed
# below the high troposphere) untouched; per band of the 13-band stack, relative to blue.
HAZE_SPECTRUM = (1.3, 1.0, 0.8, 0.65, 0.55, 0.5, 0.45, 0.4, 0.38, 0.35, 0.0, 0.12, 0.06)
CIRRUS = 10  # B10, 0-based


def veil(img: np.ndarray, rng: np.random.Generator, kind: str
         ) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic veil over a (13, h, w) reflectance crop, physically sound in every band.

    ``cirrus``: thin ice cloud adds about the same reflectance to every band and a part of it to
    B10 (the visible gain over B10 is 1.2-2.5, as in the cirrus corrections of the
    literature and the real veil of pair 6780: +0.06 in RGB for +0.034 in B10). ``haze``: low
    aerosol haze, strongest in coastal and blue, absent from B10 (HAZE_SPECTRUM), with a slight
    loss of contrast. Returns (veiled image, degraded pixels: visible brightening > 0.01)."""
    c = img.shape[-1]
    field = np.clip(0.6 + 0.4 * _blob_field((c, c), rng), 0.2, 1.0).astype(np.float32)
    if kind == "cirrus":
        t = rng.uniform(0.008, 0.05) * field
        gamma = rng.uniform(1.2, 2.5)
        out = img + gamma * t[None]
        out[CIRRUS] = img[CIRRUS] + t
        added = gamma * t
    else:
        h = rng.uniform(0.02, 0.12) * field
        spec = np.asarray(HAZE_SPECTRUM, np.float32)[:, None, None]
        out = img * (1 - 0.3 * h[None]) + spec * h[None]
        added = h
    return out.astype(np.float32), added > 0.01


def _blob_field(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    from .artifacts import blob_noise

    return blob_noise(shape, rng, cells=rng.uniform(1.0, 3.0))


def make_real_sample(pairs: Sequence[Pair], index: int, k: int, crop: int,
                     rng: np.random.Generator, veil_prob: float = 0.0
                     ) -> dict[str, np.ndarray]:
    """One sample from pair ``index``: inputs (K, 13, c, c) reflectance, valid (K, c, c),
    target (13, c, c) (the clear input as given), degraded (K, c, c), and ``loss`` (c, c): the
    pixels where some input is degraded and the clear one is valid."""
    p = pairs[index]
    h, w = p.degraded.shape
    c = min(crop, h, w)
    y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
    win = (slice(None), slice(y, y + c), slice(x, x + c))
    clear = _gain(p.clear[win], rng, 0.5)
    if rng.random() < veil_prob:  # the second input a veiled copy instead of the real cloudy
        v, d = veil(_gain(p.clear[win], rng), rng, "cirrus" if rng.random() < 0.5 else "haze")
        inputs, degraded = [clear, v], [np.zeros((c, c), bool), d]
    else:
        inputs = [clear, _gain(p.cloudy[win], rng)]
        degraded = [np.zeros((c, c), bool), p.degraded[win[1:]]]
    valid = [np.ones((c, c), bool), np.ones((c, c), bool)]
    donors = [q for q in pairs if q is not p and q.cloud_share > 0.15]
    for _ in range(k - 2):
        kind = rng.choice(["transplant", "shadow", "cloudy", "clear", "fill", "veil"],
                          p=[0.3, 0.15, 0.15, 0.1, 0.1, 0.2] if veil_prob else
                          [0.4, 0.2, 0.15, 0.15, 0.1, 0.0])
        if kind == "veil":
            v, d = veil(_gain(p.clear[win], rng), rng, "cirrus" if rng.random() < 0.5 else "haze")
            inputs.append(v)
            degraded.append(d)
            valid.append(np.ones((c, c), bool))
        elif kind == "transplant" and donors:
            q = donors[int(rng.integers(len(donors)))]
            qy, qx = int(rng.integers(0, q.cloud.shape[0] - c + 1)), \
                int(rng.integers(0, q.cloud.shape[1] - c + 1))
            qw = (slice(None), slice(qy, qy + c), slice(qx, qx + c))
            a = q.cloud[qw[1:]][None]
            img = (1 - a) * _gain(p.clear[win], rng) + a * q.cloudy[qw]
            inputs.append(img.astype(np.float32))
            degraded.append(ndimage.binary_dilation(a[0] > 0.1, iterations=EDGE_PX))
            valid.append(np.ones((c, c), bool))
        elif kind == "shadow":
            a = _blob((c, c), rng, rng.uniform(0.1, 0.5)) * rng.uniform(0.4, 0.8)
            inputs.append((_gain(p.clear[win], rng) * (1 - a[None])).astype(np.float32))
            degraded.append(a > 0.1)
            valid.append(np.ones((c, c), bool))
        elif kind == "cloudy":
            inputs.append(_gain(p.cloudy[win], rng))
            degraded.append(p.degraded[win[1:]])
            valid.append(np.ones((c, c), bool))
        elif kind == "fill":
            inputs.append(_gain(p.clear[win], rng))
            degraded.append(np.zeros((c, c), bool))
            valid.append(_blob((c, c), rng, rng.uniform(0.1, 0.5)) < 0.5)
        else:
            inputs.append(_gain(p.clear[win], rng))
            degraded.append(np.zeros((c, c), bool))
            valid.append(np.ones((c, c), bool))
    order = rng.permutation(k)
    ins = np.stack(inputs)[order]
    val = np.stack(valid)[order]
    deg = np.stack(degraded)[order]
    r, flip = int(rng.integers(4)), bool(rng.random() < 0.5)

    def aug(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a, r, axes=(-2, -1))
        return np.ascontiguousarray(a[..., ::-1] if flip else a)

    loss = (deg & val).any(axis=0) & valid[0]
    return {"inputs": aug(ins), "valid": aug(val), "degraded": aug(deg),
            "target": aug(clear), "loss": aug(loss)}


__all__ = ["FOLDS", "GROUPS", "Pair", "evidence_stats", "fold_of", "load_pairs",
           "make_real_sample"]
