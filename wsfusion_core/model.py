"""The networks of the paper: a quarter-width U-Net used as quality net and segmentation net,
and the masked-softmax fusion that ties them together.

Three quality architectures: ``paper`` scores every input alone (the paper's); ``set`` also
shows each input the per-pixel median, minimum and maximum of all *valid* inputs at that place,
so "brighter than the other dates here" is visible (clouds, haze) while a bright roof that every
date shares is not penalised; ``rank`` adds each input's rank among the valid inputs in blue and
in brightness, so that "the darkest-blue input here" (what the minimum-blue composite picks) is
one channel away and the net can follow it where it is right and depart from it where it is
not (shadows, black fill, water, snow). The set statistics and ranks are symmetric functions of
the inputs, so the logits are permutation-equivariant by construction, for any K >= 1.

A model may also read **evidence bands** (Sentinel-2 cirrus, SWIR, aerosol; ``evidence``):
extra channels that only the quality net sees, concatenated to the image channels before the
statistics. They change the weights, never what is averaged.

One definition serves inference (wsfusion_core) and training (training/).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_WIDTHS: tuple[int, ...] = (16, 32, 64, 128, 128)
ARCHITECTURES: tuple[str, ...] = ("paper", "set", "rank")
SET_STATS = 3  # median, minimum, maximum over the valid inputs
RANKS = 2  # rank in blue and in brightness among the valid inputs (architecture ``rank``)
BLUE = 2  # the image channels are red, green, blue


def quality_channels(architecture: str, in_channels: int, evidence_channels: int = 0) -> int:
    """Input channels of the quality net: the image and evidence channels, plus the set
    statistics of both (``set``, ``rank``) and the two ranks (``rank``)."""
    c = in_channels + evidence_channels
    if architecture == "set":
        return c * (1 + SET_STATS)
    if architecture == "rank":
        return c * (1 + SET_STATS) + RANKS
    return c


def ranks(values: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Each input's rank among the valid inputs at every pixel, 0 (lowest) .. 1 (highest).

    values (B, K, H, W), valid (B, K, H, W) bool or None → (B, K, H, W). Ties share the mean
    rank, so the result is permutation-equivariant; a lone valid input and invalid inputs get
    0.5 and 0. Pairwise, O(K²) per pixel: K is at most a few dozen."""
    x = values.float()
    v = torch.ones_like(x, dtype=torch.bool) if valid is None else valid
    vf = v.float()
    xi, xj = x.unsqueeze(2), x.unsqueeze(1)  # (B, K, 1, H, W), (B, 1, K, H, W)
    vj = vf.unsqueeze(1)
    below = ((xj < xi).float() * vj).sum(dim=2)
    ties = ((xj == xi).float() * vj).sum(dim=2) - vf  # other valid inputs with the same value
    n = vf.sum(dim=1, keepdim=True)
    r = (below + 0.5 * ties) / (n - 1).clamp_min(1.0)
    r = torch.where(n > 1, r, torch.full_like(r, 0.5))
    return r * vf


def set_statistics(images: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel median, minimum and maximum over the valid inputs, per channel.

    images (B, K, C, H, W), valid (B, K, H, W) bool or None → (B, 3*C, H, W). Invalid inputs
    never enter the statistics; where no input is valid they are 0. The median of an even
    count is the lower middle value (torch.nanmedian), still a symmetric function."""
    x = images.float()
    if valid is None:
        med = x.median(dim=1).values
        return torch.cat([med, x.amin(dim=1), x.amax(dim=1)], dim=1)
    v = valid.unsqueeze(2).expand_as(x)
    med = torch.where(v, x, torch.full_like(x, float("nan"))).nanmedian(dim=1).values
    lo = torch.where(v, x, torch.full_like(x, float("inf"))).amin(dim=1)
    hi = torch.where(v, x, torch.full_like(x, float("-inf"))).amax(dim=1)
    stats = torch.cat([med, lo, hi], dim=1)
    any_valid = valid.any(dim=1, keepdim=True)
    return torch.where(any_valid, stats, torch.zeros_like(stats))


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Quarter-width U-Net (paper §3.3, §4.3): 16-32-64-128-128 encoder, bilinear upsampling
    with skip concatenation back to 16 channels, then a 1×1 head. Any input size works
    (upsampling snaps to the skip's size), so 300 px tiles need no padding to a power of two."""

    def __init__(self, in_channels: int, out_channels: int,
                 widths: Sequence[int] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        self.encoders = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.encoders.append(_double_conv(cin, w))
            cin = w
        # Decoder: level i merges the upsampled deeper features with skip widths[i];
        # output width halves the skip width, ending at widths[0].
        self.decoders = nn.ModuleList()
        deeper = widths[-1]
        for i in range(len(widths) - 2, -1, -1):
            out = widths[0] if i == 0 else max(widths[0], widths[i] // 2)
            self.decoders.append(_double_conv(deeper + widths[i], out))
            deeper = out
        self.head = nn.Conv2d(deeper, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, enc in enumerate(self.encoders):
            if i:
                x = F.max_pool2d(x, 2)
            x = enc(x)
            skips.append(x)
        x = skips.pop()
        for dec in self.decoders:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = dec(torch.cat([x, skip], dim=1))
        return self.head(x)


def fuse_by_quality(images: torch.Tensor, logits: torch.Tensor,
                    valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax across the K inputs at every pixel (eq. 1) and the weighted average (eq. 2).

    images: (B, K, C, H, W); logits: (B, K, H, W); valid: (B, K, H, W) bool or None.
    Invalid pixels get weight exactly 0; where no input is valid all weights are 0 and the
    fused value is 0 (the caller writes nodata there). Returns (fused (B,C,H,W), weights (B,K,H,W)).
    """
    weights = quality_weights(logits, valid)
    return weighted_sum(images, weights), weights


def weighted_sum(images: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 2: (B, K, C, H, W) images and (B, K, H, W) weights → (B, C, H, W)."""
    return (images.float() * weights.unsqueeze(2)).sum(dim=1)


def quality_weights(logits: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """The weights of :func:`fuse_by_quality` alone (B, K, H, W): inference without the
    segmentation needs no fused network view."""
    logits = logits.float()
    if valid is None:
        return torch.softmax(logits, dim=1)
    logits = logits.masked_fill(~valid, float("-inf"))
    any_valid = valid.any(dim=1, keepdim=True)
    # A column of all -inf would give NaN; give it zeros and mask the weights afterwards.
    logits = logits.masked_fill(~any_valid, 0.0)
    return torch.softmax(logits, dim=1) * any_valid


class FusionModel(nn.Module):
    """Quality net → masked softmax fusion → segmentation net, trained end to end (§3.5).

    ``fusion="mean"`` gives the paper's baseline: the plain average of the valid inputs,
    no quality net. ``architecture`` picks the quality net: ``paper`` (each input alone) or
    ``set`` (each input plus the set statistics of all valid inputs; see module docstring)."""

    def __init__(self, num_classes: int = 3, in_channels: int = 3,
                 widths: Sequence[int] = DEFAULT_WIDTHS, fusion: str = "learned",
                 architecture: str = "paper", evidence_channels: int = 0) -> None:
        super().__init__()
        if fusion not in ("learned", "mean"):
            raise ValueError(f"fusion must be 'learned' or 'mean', not {fusion!r}")
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, not {architecture!r}")
        self.fusion = fusion
        self.architecture = architecture
        self.in_channels = in_channels
        self.evidence_channels = evidence_channels
        q_in = quality_channels(architecture, in_channels, evidence_channels)
        self.quality = UNet(q_in, 1, widths) if fusion == "learned" else None
        self.segmentation = UNet(in_channels, num_classes, widths)

    def quality_logits(self, images: torch.Tensor, valid: torch.Tensor | None = None,
                       evidence: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, C, H, W) → (B, K, H, W). All K inputs go through the net as one batch, so
        BatchNorm sees every artifact type together (a flaw of the authors' code). The ``set``
        and ``rank`` architectures need ``valid`` (B, K, H, W) to keep invalid pixels out of
        their statistics; None means every pixel is valid. ``evidence`` (B, K, E, H, W): the
        evidence bands of a model that reads them (normalised like the images)."""
        b, k = images.shape[:2]
        if self.quality is None:
            return torch.zeros((b, k) + images.shape[-2:], device=images.device)
        if self.evidence_channels:
            if evidence is None or evidence.shape[2] != self.evidence_channels:
                raise ValueError(f"the quality net reads {self.evidence_channels} evidence "
                                 "band(s) and was given "
                                 f"{0 if evidence is None else evidence.shape[2]}")
            images = torch.cat([images, evidence.to(images.dtype)], dim=2)
        flat = images.flatten(0, 1)
        if self.architecture in ("set", "rank"):
            stats = set_statistics(images, valid).to(images.dtype)
            stats = stats.unsqueeze(1).expand(b, k, *stats.shape[1:]).flatten(0, 1)
            parts = [flat, stats]
            if self.architecture == "rank":
                rgb = images[:, :, :3]
                r = torch.stack([ranks(rgb[:, :, BLUE], valid),
                                 ranks(rgb.mean(dim=2), valid)], dim=2)
                parts.append(r.to(images.dtype).flatten(0, 1))
            flat = torch.cat(parts, dim=1)
        return self.quality(flat).view(b, k, *images.shape[-2:])

    def forward(self, images: torch.Tensor, valid: torch.Tensor | None = None,
                evidence: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images (B, K, C, H, W) scaled to 0..1 → (fused, weights, segmentation logits)."""
        logits = self.quality_logits(images, valid, evidence)
        fused, weights = fuse_by_quality(images, logits, valid)
        return fused, weights, self.segmentation(fused)
