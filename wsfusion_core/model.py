"""The networks of the paper: a quarter-width U-Net used as quality net and segmentation net,
and the masked-softmax fusion that ties them together.

One definition serves inference (wsfusion_core) and training (training/).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_WIDTHS: tuple[int, ...] = (16, 32, 64, 128, 128)


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
    logits = logits.float()
    if valid is not None:
        logits = logits.masked_fill(~valid, float("-inf"))
        any_valid = valid.any(dim=1, keepdim=True)
        # A column of all -inf would give NaN; give it zeros and mask the weights afterwards.
        logits = torch.where(any_valid, logits, torch.zeros_like(logits))
        weights = torch.softmax(logits, dim=1) * any_valid
    else:
        weights = torch.softmax(logits, dim=1)
    fused = (images.float() * weights.unsqueeze(2)).sum(dim=1)
    return fused, weights


class FusionModel(nn.Module):
    """Quality net → masked softmax fusion → segmentation net, trained end to end (§3.5).

    ``fusion="mean"`` gives the paper's baseline: the plain average of the valid inputs,
    no quality net."""

    def __init__(self, num_classes: int = 3, in_channels: int = 3,
                 widths: Sequence[int] = DEFAULT_WIDTHS, fusion: str = "learned") -> None:
        super().__init__()
        if fusion not in ("learned", "mean"):
            raise ValueError(f"fusion must be 'learned' or 'mean', not {fusion!r}")
        self.fusion = fusion
        self.quality = UNet(in_channels, 1, widths) if fusion == "learned" else None
        self.segmentation = UNet(in_channels, num_classes, widths)

    def quality_logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, K, C, H, W) → (B, K, H, W). All K inputs go through the net as one batch, so
        BatchNorm sees every artifact type together (a flaw of the authors' code)."""
        b, k = images.shape[:2]
        if self.quality is None:
            return torch.zeros((b, k) + images.shape[-2:], device=images.device)
        flat = images.flatten(0, 1)
        return self.quality(flat).view(b, k, *images.shape[-2:])

    def forward(self, images: torch.Tensor, valid: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images (B, K, C, H, W) scaled to 0..1 → (fused, weights, segmentation logits)."""
        fused, weights = fuse_by_quality(images, self.quality_logits(images), valid)
        return fused, weights, self.segmentation(fused)
