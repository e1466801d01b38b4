"""Synthetic artifacts (paper §4.1): missing data and clouds with Perlin-noise shapes and the
colour and texture of real clouds seen from above.

Everything is vectorised numpy (plus scipy.ndimage once per cloud scene); no GDAL, so the
training data path stays light. "Share" always means the fraction of pixels actually changed
(not a bounding box), and ``corrupt`` returns that mask so callers and tests can check it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .splits import CLOUD_SOURCES, TEST_CLOUDS, TRAIN_CLOUDS, VAL_CLOUDS

__all__ = ["CLOUD_SOURCES", "TRAIN_CLOUDS", "VAL_CLOUDS", "TEST_CLOUDS"]

# Tolerance (absolute, in share units) that ``corrupt`` guarantees and the tests check.
SHARE_TOLERANCE = 0.01


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Classic 2-D gradient noise with ``res`` lattice cells per axis; values roughly -0.7..0.7."""
    h, w = shape
    ry, rx = max(1, int(res[0])), max(1, int(res[1]))
    angles = rng.uniform(0, 2 * np.pi, (ry + 1, rx + 1))
    gy, gx = np.sin(angles), np.cos(angles)
    y = np.linspace(0, ry, h, endpoint=False)
    x = np.linspace(0, rx, w, endpoint=False)
    yi = np.minimum(y.astype(int), ry - 1)[:, None]
    xi = np.minimum(x.astype(int), rx - 1)[None, :]
    fy = (y - yi[:, 0])[:, None]
    fx = (x - xi[0])[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        return gy[yi + dy, xi + dx] * (fy - dy) + gx[yi + dy, xi + dx] * (fx - dx)

    u, v = _fade(fx), _fade(fy)
    top = corner(0, 0) * (1 - u) + corner(0, 1) * u
    bottom = corner(1, 0) * (1 - u) + corner(1, 1) * u
    return (top * (1 - v) + bottom * v).astype(np.float32)


def fractal_noise(shape: tuple[int, int], rng: np.random.Generator, octaves: int = 4,
                  base_res: int = 2, persistence: float = 0.5) -> np.ndarray:
    """Several octaves of Perlin noise, normalised to about -1..1."""
    out = np.zeros(shape, np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        r = base_res * 2 ** o
        aspect = shape[1] / max(shape[0], 1)
        out += amp * perlin(shape, (r, max(1, round(r * aspect))), rng)
        total += amp
        amp *= persistence
    return out / (0.7 * total)


_NOISE_TILE = 384
_noise_tiles: list[np.ndarray] = []


def _noise_tile_bank() -> list[np.ndarray]:
    """Fractal noise tiles made once per process (fixed seed); cropping, strided sampling and
    sign/orientation changes of these are as random as fresh noise and ~50x cheaper."""
    if not _noise_tiles:
        rng = np.random.default_rng(20240611)
        for i in range(12):
            _noise_tiles.append(fractal_noise((_NOISE_TILE, _NOISE_TILE), rng, octaves=5,
                                              base_res=2 + i % 3))
    return _noise_tiles


def blob_noise(shape: tuple[int, int], rng: np.random.Generator, cells: float = 3.0
               ) -> np.ndarray:
    """About -1..1 fractal noise with roughly ``cells`` large features across ``shape``,
    drawn from the cached tiles (fresh noise where the request exceeds them)."""
    tiles = _noise_tile_bank()
    i = int(rng.integers(len(tiles)))
    base_cells = 2 + i % 3  # features across a whole tile
    # Use a stride so the window shows about `cells` features.
    span = _NOISE_TILE * cells / base_cells
    step = max(1, min(int(round(span / max(shape))), _NOISE_TILE // max(shape)))
    need_h, need_w = shape[0] * step, shape[1] * step
    if need_h > _NOISE_TILE or need_w > _NOISE_TILE:
        return fractal_noise(shape, rng, octaves=4, base_res=max(1, round(cells)))
    t = tiles[i] if rng.random() < 0.5 else tiles[i].T
    y = int(rng.integers(0, _NOISE_TILE - need_h + 1))
    x = int(rng.integers(0, _NOISE_TILE - need_w + 1))
    out = t[y:y + need_h:step, x:x + need_w:step]
    if rng.random() < 0.5:
        out = out[::-1]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return -out if rng.random() < 0.5 else out


def _resize_nearest(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Cheap index-based resize, for smooth fields (blurred textures, soft shapes)."""
    iy = np.minimum((np.arange(shape[0]) + 0.5) * a.shape[0] / shape[0], a.shape[0] - 1)
    ix = np.minimum((np.arange(shape[1]) + 0.5) * a.shape[1] / shape[1], a.shape[1] - 1)
    return a[iy.astype(int)][:, ix.astype(int)]


def _random_dihedral(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a = np.rot90(a, int(rng.integers(4)))
    if rng.random() < 0.5:
        a = a[:, ::-1]
    return np.ascontiguousarray(a)


@dataclass
class CloudBank:
    """Real cloud textures (RGB where a scene's mask says cloud, gaps filled from the nearest
    cloud pixel) and optional real cloud shapes (soft probabilities) to modulate Perlin masks."""

    textures: list[np.ndarray] = field(default_factory=list)  # (H, W, 3) float32, median luma 1
    shapes: list[np.ndarray] = field(default_factory=list)  # (h, w) float32 0..1
    names: list[str] = field(default_factory=list)

    @classmethod
    def from_sources(cls, root: str | Path, sources: Sequence[str]) -> CloudBank:
        """Load the named sources from ``root`` (the ``clouds`` folder of the shared data)."""
        root = Path(root)
        bank = cls()
        for name in sources:
            if name not in CLOUD_SOURCES:
                raise ValueError(f"unknown cloud source {name!r}; choose from {CLOUD_SOURCES}")
            if name.startswith("ukis_"):
                path = root / "ukis_csmask" / f"{name[5:]}.npz"
                with np.load(path) as d:
                    rgb = d["img"][..., [2, 1, 0]].astype(np.float32)
                    cloud = d["msk"][..., 0] == 4
                bank.textures.append(_cloud_texture(rgb, cloud))
            elif name == "cloud38":
                from PIL import Image

                stem = "patch_192_10_by_12_LC08_L1TP_002053_20160520_20170324_01_T1.jpg"
                rgb = np.asarray(Image.open(root / "cloud38" / f"truecolor_{stem}"), np.float32)
                gt = np.asarray(Image.open(root / "cloud38" / f"gt_{stem}"))
                cloud = (gt[..., 0] if gt.ndim == 3 else gt) > 127
                bank.textures.append(_cloud_texture(rgb / 255.0, cloud))
            else:  # eolearn: 68 dates of soft cloud probability — shapes only
                clp = np.load(root / "eolearn_slovenia" / "CLP.npy")[..., 0]
                for frame in clp:
                    if 0.05 < (frame > 0.5).mean() < 0.9:
                        bank.shapes.append(frame.astype(np.float32))
            bank.names.append(name)
        if not bank.textures:
            # Shapes-only banks still need a colour: plain bright cloud with Perlin texture.
            bank.textures.append(np.ones((256, 256, 3), np.float32))
        return bank

    def texture(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """A (H, W, 3) cloud texture: random source, crop, rotation, flip, scale, brightness."""
        tex = self.textures[int(rng.integers(len(self.textures)))]
        scale = rng.uniform(0.5, 2.0)
        ch = int(min(tex.shape[0], max(16, shape[0] / scale)))
        cw = int(min(tex.shape[1], max(16, shape[1] / scale)))
        y = int(rng.integers(0, tex.shape[0] - ch + 1))
        x = int(rng.integers(0, tex.shape[1] - cw + 1))
        crop = _random_dihedral(tex[y:y + ch, x:x + cw], rng)
        if crop.shape[:2] != shape:
            crop = _resize_nearest(crop, shape)
        return np.clip(crop * rng.uniform(0.75, 1.0), 0.0, 1.0).astype(np.float32)

    def shape_mask(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray | None:
        if not self.shapes:
            return None
        s = _random_dihedral(self.shapes[int(rng.integers(len(self.shapes)))], rng)
        return _resize_nearest(s, shape)


def _cloud_texture(rgb: np.ndarray, cloud: np.ndarray) -> np.ndarray:
    """Texture from the brighter half of a scene's cloud pixels (cloud edges are mostly ground),
    gaps filled from the nearest such pixel and smoothed; chroma reduced to 40 % (mask edges still
    carry ground colour), scaled so the median luma is 1."""
    from scipy import ndimage

    if cloud.sum() < 100:
        raise ValueError("cloud scene has almost no cloud pixels")
    luma = rgb.mean(axis=2)
    core = cloud & (luma >= np.percentile(luma[cloud], 50))
    idx = ndimage.distance_transform_edt(~core, return_distances=False, return_indices=True)
    filled = ndimage.gaussian_filter(rgb[idx[0], idx[1]], sigma=(3, 3, 0))
    grey = filled.mean(axis=2, keepdims=True)
    filled = grey + 0.4 * (filled - grey)
    return (filled / max(float(np.median(grey[core])), 1e-3)).astype(np.float32)


def _white_texture(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    t = 0.9 + 0.08 * blob_noise(shape, rng, cells=4.0)
    return np.repeat(t[..., None], 3, axis=2).clip(0, 1)


def _texture(clouds: CloudBank | None, shape: tuple[int, int], channels: int,
             rng: np.random.Generator) -> np.ndarray:
    """(H, W, channels) cloud colour: a real texture from ``clouds`` (else plain white with
    some noise); images that are not RGB get its grey in every channel."""
    tex = clouds.texture(shape, rng) if clouds is not None else _white_texture(shape, rng)
    if channels != 3:
        tex = np.repeat(tex.mean(axis=2, keepdims=True), channels, axis=2)
    return tex


def cloud_alpha(shape: tuple[int, int], share: float, rng: np.random.Generator,
                clouds: CloudBank | None = None) -> np.ndarray:
    """Alpha (H, W) in 0..1 whose non-zero pixels are ``share`` of the image.

    Several random windows each carry a Perlin-noise blob (optionally modulated by a real cloud
    shape); their sum is thresholded at the quantile that leaves exactly ``share`` above it, so
    the share is met to the pixel whatever the shapes turned out to be."""
    h, w = shape
    n = h * w
    if share <= 0:
        return np.zeros(shape, np.float32)
    field_ = 1e-3 * (blob_noise(shape, rng, cells=2.0) + 1.0)  # breaks ties
    covered = np.zeros(shape, bool)
    for _ in range(64):
        if covered.mean() >= min(0.95, 1.6 * share + 0.05):
            break
        area = n * min(1.0, rng.uniform(0.5, 1.5) * max(share, 0.05))
        aspect = np.exp(rng.uniform(-0.7, 0.7))
        wh = int(np.clip(np.sqrt(area / aspect), 8, h))
        ww = int(np.clip(np.sqrt(area * aspect), 8, w))
        y0 = int(rng.integers(-wh // 4, h - 3 * wh // 4 + 1))
        x0 = int(rng.integers(-ww // 4, w - 3 * ww // 4 + 1))
        ys, xs = slice(max(y0, 0), min(y0 + wh, h)), slice(max(x0, 0), min(x0 + ww, w))
        if ys.stop <= ys.start or xs.stop <= xs.start:
            continue
        yy = (np.arange(ys.start, ys.stop) - y0 + 0.5) / wh * 2 - 1
        xx = (np.arange(xs.start, xs.stop) - x0 + 0.5) / ww * 2 - 1
        envelope = np.clip(1 - (yy[:, None] ** 2 + xx[None, :] ** 2), 0, 1) ** 0.5
        sub = (ys.stop - ys.start, xs.stop - xs.start)
        blob = envelope * (0.6 + 0.5 * blob_noise(sub, rng, cells=rng.uniform(2, 4)))
        shp = clouds.shape_mask(sub, rng) if clouds is not None and rng.random() < 0.5 else None
        if shp is not None:
            blob = blob * (0.3 + 0.7 * shp)
        field_[ys, xs] += np.clip(blob, 0, None)
        covered[ys, xs] |= envelope > 0
    q = np.quantile(field_, 1.0 - share)
    above = field_ > q
    soft = max(float(np.quantile(field_[above], 0.5) - q), 1e-6) if above.any() else 1.0
    ramp = np.clip((field_ - q) / soft, 0, 1)
    return np.where(above, 0.1 + 0.9 * ramp, 0.0).astype(np.float32)


def missing_mask(shape: tuple[int, int], share: float, rng: np.random.Generator) -> np.ndarray:
    """Union of random rectangles (random position and aspect, some anchored at an edge as
    swath borders are) covering ``share`` of the pixels within SHARE_TOLERANCE."""
    h, w = shape
    n = h * w
    mask = np.zeros(shape, bool)
    target = int(round(share * n))
    if target <= 0:
        return mask
    pieces = int(rng.integers(1, 4))
    for _ in range(200):
        need = target - int(mask.sum())
        if need <= SHARE_TOLERANCE * n / 2:
            break
        area = max(need, n * share / pieces) * rng.uniform(0.6, 1.2)
        aspect = np.exp(rng.uniform(-1.2, 1.2))
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        if rng.random() < 0.3:  # anchored at an edge
            if rng.random() < 0.5:
                cy = 0.0 if rng.random() < 0.5 else float(h)
            else:
                cx = 0.0 if rng.random() < 0.5 else float(w)

        def rect(scale: float, cy: float = cy, cx: float = cx, area: float = area,
                 aspect: float = aspect) -> np.ndarray:
            rh = np.sqrt(area / aspect) * scale
            rw = np.sqrt(area * aspect) * scale
            m = np.zeros(shape, bool)
            m[max(0, int(cy - rh / 2)):max(0, int(np.ceil(cy + rh / 2))),
              max(0, int(cx - rw / 2)):max(0, int(np.ceil(cx + rw / 2)))] = True
            return m

        new = mask | rect(1.0)
        if new.sum() > target + SHARE_TOLERANCE * n / 2:
            lo, hi = 0.0, 1.0  # shrink this rectangle about its centre until it fits
            for _ in range(20):
                mid = (lo + hi) / 2
                if (mask | rect(mid)).sum() > target:
                    hi = mid
                else:
                    lo = mid
            new = mask | rect(lo)
        mask = new
    return mask


def corrupt(image: np.ndarray, kind: str, share: float, rng: np.random.Generator,
            clouds: CloudBank | None = None, opacity: float | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Spoil ``share`` of an (H, W, C) 0..1 image with clouds or missing data.

    Returns (corrupted float32 copy, affected bool (H, W)). Missing pixels are 0 in all
    channels. ``opacity`` (clouds only) defaults to a random draw: mostly thick, sometimes thin."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be within 0..1, not {share}")
    image = np.asarray(image, np.float32)
    shape = image.shape[:2]
    if kind == "missing":
        affected = missing_mask(shape, share, rng)
        out = image.copy()
        out[affected] = 0.0
        return out, affected
    if kind != "cloud":
        raise ValueError(f"kind must be 'cloud' or 'missing', not {kind!r}")
    alpha = cloud_alpha(shape, share, rng, clouds)
    if opacity is None:
        opacity = rng.uniform(0.85, 1.0) if rng.random() < 0.75 else rng.uniform(0.35, 0.85)
    alpha *= opacity
    tex = _texture(clouds, shape, image.shape[2], rng)
    a = alpha[..., None]
    out = (1 - a) * image + a * tex
    return out.astype(np.float32), alpha > 0


# ---------------------------------------------------------------- artifacts like real ones
# Each generator takes a float32 (H, W, C) 0..1 image and returns (spoiled copy, mask) where the
# mask marks the pixels it changed materially; shares are met within SHARE_TOLERANCE where a
# share is asked for. ``spoil_input`` composes them into one date of a multi-date stack.


def haze(image: np.ndarray, share: float, rng: np.random.Generator,
         strength: tuple[float, float] = (0.25, 0.6)) -> tuple[np.ndarray, np.ndarray]:
    """A thin cloud / haze veil: large, smooth, translucent, low contrast, slightly blue-white.
    ``share`` of the pixels get a veil of opacity >= 0.1 (peaks drawn from ``strength``)."""
    image = np.asarray(image, np.float32)
    shape = image.shape[:2]
    if share <= 0:
        return image.copy(), np.zeros(shape, bool)
    field_ = blob_noise(shape, rng, cells=rng.uniform(1.0, 2.0)) \
        + 1e-3 * blob_noise(shape, rng, cells=6.0)
    q = np.quantile(field_, 1.0 - share)
    above = field_ > q
    top = max(float(field_.max() - q), 1e-6)
    ramp = np.clip((field_ - q) / top, 0, 1) ** 0.7
    peak = rng.uniform(*strength)
    alpha = np.where(above, 0.1 + (peak - 0.1) * ramp, 0.0).astype(np.float32) \
        if peak > 0.1 else np.where(above, 0.1, 0.0).astype(np.float32)
    colour = np.clip(np.array([0.82, 0.85, 0.9], np.float32) + rng.uniform(-0.06, 0.08), 0, 1)
    if image.shape[2] != 3:
        colour = np.full(image.shape[2], colour.mean(), np.float32)
    a = alpha[..., None]
    return ((1 - a) * image + a * colour).astype(np.float32), above


def cloud_with_shadow(image: np.ndarray, share: float, rng: np.random.Generator,
                      clouds: CloudBank | None = None, opacity: float | None = None,
                      shadow: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thick (or semi-thick) cloud of ``share`` and its shadow: a darkened copy of the cloud's
    shape displaced by up to a few cloud widths (the sun is low and to one side), cut where the
    cloud itself covers it. Returns (image, cloud mask, shadow mask)."""
    image = np.asarray(image, np.float32)
    shape = image.shape[:2]
    h, w = shape
    alpha = cloud_alpha(shape, share, rng, clouds)
    if opacity is None:
        opacity = rng.uniform(0.85, 1.0) if rng.random() < 0.7 else rng.uniform(0.4, 0.85)
    out = image.copy()
    shadow_mask = np.zeros(shape, bool)
    if shadow and share > 0:
        dist = rng.uniform(0.04, 0.25) * max(h, w)
        ang = rng.uniform(0, 2 * np.pi)
        dy, dx = int(round(dist * np.sin(ang))), int(round(dist * np.cos(ang)))
        shifted = np.zeros_like(alpha)
        ys = slice(max(dy, 0), h + min(dy, 0))
        xs = slice(max(dx, 0), w + min(dx, 0))
        yt = slice(max(-dy, 0), h + min(-dy, 0))
        xt = slice(max(-dx, 0), w + min(-dx, 0))
        shifted[ys, xs] = alpha[yt, xt]
        darkness = rng.uniform(0.35, 0.7) * min(1.0, opacity + 0.1)
        dark = 1.0 - darkness * np.clip(shifted / 0.5, 0, 1)
        out = out * dark[..., None]
        shadow_mask = (shifted > 0) & (alpha <= 0)
    tex = _texture(clouds, shape, image.shape[2], rng)
    a = (alpha * opacity)[..., None]
    out = (1 - a) * out + a * tex
    return out.astype(np.float32), alpha > 0, shadow_mask


def overcast(image: np.ndarray, rng: np.random.Generator, clouds: CloudBank | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """A wholly overcast date: every pixel is cloud (a thick deck with some texture)."""
    image = np.asarray(image, np.float32)
    shape = image.shape[:2]
    tex = _texture(clouds, shape, image.shape[2], rng)
    deck = 0.88 + 0.12 * (0.5 + 0.5 * blob_noise(shape, rng, cells=3.0))
    a = np.clip(rng.uniform(0.93, 1.0) * deck, 0, 1)[..., None]
    base = np.clip(tex * rng.uniform(0.8, 1.05), 0, 1)
    return ((1 - a) * image + a * base).astype(np.float32), np.ones(shape, bool)


def fill(image: np.ndarray, share: float, rng: np.random.Generator, value: float = 0.0
         ) -> tuple[np.ndarray, np.ndarray]:
    """Undeclared fill: rectangles (swath edges, tile seams) of constant ``value`` (0 black or
    1 white) covering ``share`` of the pixels; the caller decides whether it is declared."""
    image = np.asarray(image, np.float32)
    mask = missing_mask(image.shape[:2], share, rng)
    out = image.copy()
    out[mask] = value
    return out, mask


def stripes(image: np.ndarray, share: float, rng: np.random.Generator, value: float = 0.0
            ) -> tuple[np.ndarray, np.ndarray]:
    """Landsat 7 SLC-off style gaps: parallel, slightly tilted stripes whose width grows away
    from the scene centre line, covering ``share`` of the pixels (within SHARE_TOLERANCE)."""
    image = np.asarray(image, np.float32)
    h, w = image.shape[:2]
    if share <= 0:
        return image.copy(), np.zeros((h, w), bool)
    ang = rng.uniform(-0.3, 0.3) + (np.pi / 2 if rng.random() < 0.5 else 0.0)
    period = rng.uniform(12, 40)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    across = yy * np.cos(ang) + xx * np.sin(ang)
    along = -yy * np.sin(ang) + xx * np.cos(ang)
    # The gap width grows linearly away from a centre line: phase position within each stripe
    # compared with a threshold that rises along the stripe.
    phase = (across / period + rng.uniform(0, 1)) % 1.0
    centre = rng.uniform(along.min(), along.max())
    growth = np.abs(along - centre) / max(float(np.ptp(along)), 1.0)
    score = phase - 0.5 * growth  # low score = in the gap
    q = np.quantile(score, share)
    mask = score <= q
    out = image.copy()
    out[mask] = value
    return out, mask


def radiometric_shift(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0
                      ) -> np.ndarray:
    """Between-date differences of one place: gain, offset, per-band tint and gamma (sun angle,
    atmosphere, sensor), slight blur (another sensor or view angle)."""
    if strength <= 0:
        return np.asarray(image, np.float32)
    c = image.shape[2]
    gain = 1 + strength * rng.uniform(-0.2, 0.2)
    offset = strength * rng.uniform(-0.04, 0.04)
    tint = 1 + strength * rng.uniform(-0.06, 0.06, c)
    gamma = np.exp(strength * rng.uniform(-0.2, 0.2))
    out = np.clip(image, 0, 1) ** gamma * gain * tint + offset
    if rng.random() < 0.3 * strength:
        from scipy import ndimage

        out = ndimage.gaussian_filter(out, sigma=(rng.uniform(0.4, 1.2),) * 2 + (0,))
    return np.clip(out, 0, 1).astype(np.float32)


def misregister(image: np.ndarray, rng: np.random.Generator, max_shift: int = 2) -> np.ndarray:
    """A shift of up to ``max_shift`` pixels (edge pixels repeated), as co-registered archives
    of different dates really are."""
    dy, dx = (int(v) for v in rng.integers(-max_shift, max_shift + 1, 2))
    if dy == 0 and dx == 0:
        return image
    h, w = image.shape[:2]
    pad = np.pad(image, ((abs(dy), abs(dy)), (abs(dx), abs(dx)), (0, 0)), mode="edge")
    return np.ascontiguousarray(pad[abs(dy) + dy:abs(dy) + dy + h, abs(dx) + dx:abs(dx) + dx + w])


@dataclass
class ArtifactMix:
    """Probabilities of each artifact in one date of a stack (drawn independently; an overcast
    date replaces the rest). Defaults follow what real archives show: cumulus with shadows most
    often, haze often, fills and stripes now and then, an overcast date sometimes."""

    cloud: float = 0.55
    shadow: float = 0.7  # of the clouded dates
    haze: float = 0.3
    # Peak opacity of a haze veil, and how often a hazy date is veiled over its whole frame. A
    # veil stays translucent (the ground shows), unlike an overcast deck (opacity >= 0.82):
    # without heavy, whole-frame veils in training, a uniformly hazy clear date reads as
    # overcast and loses to another date's thick cloud (docs/realclouds.md, round 3).
    haze_strength: tuple[float, float] = (0.25, 0.6)
    haze_whole: float = 0.0
    overcast: float = 0.06
    fill: float = 0.15
    white_fill: float = 0.3  # of the fills
    stripes: float = 0.08
    declared: float = 0.5  # fills/stripes marked invalid (else bare values the net must reject)
    share: tuple[float, float] = (0.1, 0.7)
    radiometry: float = 1.0
    misregistration: int = 2


def spoil_input(clean: np.ndarray, rng: np.random.Generator, mix: ArtifactMix,
                clouds: CloudBank | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One date: radiometric shift, misregistration, then the drawn artifacts.
    Returns (image (H, W, C) float32, valid (H, W) bool, affected (H, W) bool)."""
    img = radiometric_shift(clean, rng, mix.radiometry)
    if mix.misregistration > 0 and rng.random() < 0.5:
        img = misregister(img, rng, mix.misregistration)
    shape = img.shape[:2]
    valid = np.ones(shape, bool)
    affected = np.zeros(shape, bool)
    if rng.random() < mix.overcast:
        img, aff = overcast(img, rng, clouds)
        return img, valid, aff
    if rng.random() < mix.haze:
        whole = mix.haze_whole > 0 and rng.random() < mix.haze_whole  # no draw when off
        img, aff = haze(img, 1.0 if whole else rng.uniform(0.3, 1.0), rng, mix.haze_strength)
        affected |= aff
    if rng.random() < mix.cloud:
        img, cl, sh = cloud_with_shadow(img, rng.uniform(*mix.share), rng, clouds,
                                        shadow=rng.random() < mix.shadow)
        affected |= cl | sh
    for prob, gen in ((mix.fill, fill), (mix.stripes, stripes)):
        if rng.random() < prob:
            value = 1.0 if rng.random() < mix.white_fill else 0.0
            share = rng.uniform(0.05, 0.4) if gen is fill else rng.uniform(0.1, 0.3)
            img, m = gen(img, share, rng, value)
            affected |= m
            if rng.random() < mix.declared:
                valid &= ~m
    return img, valid, affected
