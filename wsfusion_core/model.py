"""The networks of the paper: a quarter-width U-Net used as quality net and segmentation net,
and the masked-softmax fusion that ties them together.

Two quality architectures: ``paper`` scores every input alone (the paper's); ``set`` also shows
each input the per-pixel median, minimum and maximum of all *valid* inputs at that place, so
"brighter than the other dates here" is visible (clouds, haze) while a bright roof that every
date shares is not penalised. The set statistics are symmetric functions of the inputs, so the
logits are permutation-equivariant by construction, for any K >= 1.

One definition serves inference (wsfusion_core) and training (training/).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_WIDTHS: tuple[int, ...] = (16, 32, 64, 128, 128)
ARCHITECTURES: tuple[str, ...] = ("paper", "set")
SET_STATS = 3  # median, minimum, maximum over the valid inputs


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
                 architecture: str = "paper") -> None:
        super().__init__()
        if fusion not in ("learned", "mean"):
            raise ValueError(f"fusion must be 'learned' or 'mean', not {fusion!r}")
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, not {architecture!r}")
        self.fusion = fusion
        self.architecture = architecture
        q_in = in_channels * (1 + SET_STATS) if architecture == "set" else in_channels
        self.quality = UNet(q_in, 1, widths) if fusion == "learned" else None
        self.segmentation = UNet(in_channels, num_classes, widths)

    def quality_logits(self, images: torch.Tensor, valid: torch.Tensor | None = None
                       ) -> torch.Tensor:
        """(B, K, C, H, W) → (B, K, H, W). All K inputs go through the net as one batch, so
        BatchNorm sees every artifact type together (a flaw of the authors' code). The ``set``
        architecture needs ``valid`` (B, K, H, W) to keep invalid pixels out of its statistics;
        None means every pixel is valid."""
        b, k = images.shape[:2]
        if self.quality is None:
            return torch.zeros((b, k) + images.shape[-2:], device=images.device)
        flat = images.flatten(0, 1)
        if self.architecture == "set":
            stats = set_statistics(images, valid).to(images.dtype)
            stats = stats.unsqueeze(1).expand(b, k, *stats.shape[1:]).flatten(0, 1)
            flat = torch.cat([flat, stats], dim=1)
        return self.quality(flat).view(b, k, *images.shape[-2:])

    def forward(self, images: torch.Tensor, valid: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images (B, K, C, H, W) scaled to 0..1 → (fused, weights, segmentation logits)."""
        fused, weights = fuse_by_quality(images, self.quality_logits(images, valid), valid)
        return fused, weights, self.segmentation(fused)
