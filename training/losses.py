"""Losses: the paper's class-weighted cross-entropy generalised to partial labels, and the
optional auxiliary reconstruction loss.

A label code names a *set* of classes the pixel may belong to (LABEL_SETS): codes 0..C-1 are
the classes themselves; NOT_BUILDING (Banepa: outside every OSM footprint) is {background,
road}. The loss of a pixel is -α · log Σ_{c in set} p_c: the unlabelled distinction (background
vs road) is marginalised, so a source that labels only buildings never teaches "roads are
background". With singleton codes it is exactly the weighted cross-entropy of the paper.
"""

from __future__ import annotations

from typing import Any

import torch

from wsfusion_core.classes import CLASS_NAMES

IGNORE = 255
_BG, _ROAD, _BUILDING = (CLASS_NAMES.index(n) for n in ("background", "road", "building"))
# Row = label code, column = class: may the pixel be this class?
LABEL_SETS = torch.tensor([
    [c == k for c in range(len(CLASS_NAMES))] for k in range(len(CLASS_NAMES))
] + [[True, True, False]])  # NOT_BUILDING = background or road
# α of each label code: the class's own α; a set takes its background α (what it mostly is).
SET_ALPHA_FROM = list(range(len(CLASS_NAMES))) + [_BG]


def partial_label_loss(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor
                       ) -> torch.Tensor:
    """Weighted mean over labelled pixels of -α · log Σ_{c∈set(label)} softmax(logits)_c.

    logits (B, C, H, W), labels (B, H, W) int64 codes (IGNORE = no label), class_weights (C,).
    Normalised like F.cross_entropy(weight=…): Σ α·nll / Σ α."""
    sets = LABEL_SETS.to(logits.device)
    alpha_all = class_weights.to(logits.dtype)[torch.tensor(SET_ALPHA_FROM, device=logits.device)]
    known = labels != IGNORE
    code = torch.where(known, labels, torch.zeros_like(labels))
    log_p = torch.log_softmax(logits.float(), dim=1)  # (B, C, H, W)
    member = sets[code].permute(0, 3, 1, 2)  # (B, C, H, W)
    log_set = torch.logsumexp(log_p.masked_fill(~member, float("-inf")), dim=1)
    alpha = alpha_all[code] * known
    return -(alpha * log_set).sum() / alpha.sum().clamp_min(1e-8)


def reconstruction_loss(fused: torch.Tensor, clean: torch.Tensor,
                        valid: torch.Tensor | None = None) -> torch.Tensor:
    """Auxiliary L1 between the fused image and the clean one, over pixels where some input is
    valid (synthetic training has the clean image; the paper's recipe does not use this)."""
    err = (fused.float() - clean.float()).abs().mean(dim=1)
    if valid is None:
        return err.mean()
    m = valid.any(dim=1).float()
    return (err * m).sum() / m.sum().clamp_min(1.0)


def describe() -> dict[str, Any]:
    return {"label_sets": {"not_building": ["background", "road"]},
            "loss": "-alpha * log sum_{c in label set} p_c (partial labels marginalised)"}
