"""Segmentation and reconstruction metrics (paper §4.2), from one accumulated confusion matrix.

Accumulating counts over the whole evaluation set and scoring once avoids the authors' bias of
averaging per-batch scores where an absent class counted as 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wsfusion_core.classes import SEGMENTATION_NODATA


class ConfusionMatrix:
    """``m[t, p]`` counts pixels of true class t predicted as p; ignore-label pixels are skipped."""

    def __init__(self, num_classes: int = 3, ignore: int = SEGMENTATION_NODATA) -> None:
        self.n = num_classes
        self.ignore = ignore
        self.m = np.zeros((num_classes, num_classes), np.int64)

    def update(self, truth: Any, pred: Any) -> None:
        t = np.asarray(truth).reshape(-1).astype(np.int64)
        p = np.asarray(pred).reshape(-1).astype(np.int64)
        keep = t != self.ignore
        self.m += np.bincount(t[keep] * self.n + p[keep], minlength=self.n ** 2
                              ).reshape(self.n, self.n)

    def scores(self) -> dict[str, float]:
        return segmentation_scores(self.m)


def segmentation_scores(m: np.ndarray) -> dict[str, float]:
    """Mean per-class pixel accuracy, mIoU and frequency-weighted IoU.

    Classes absent from both truth and prediction are left out of the means (not scored 0)."""
    m = np.asarray(m, np.float64)
    truth = m.sum(axis=1)
    pred = m.sum(axis=0)
    tp = np.diag(m)
    union = truth + pred - tp
    present = truth > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(present, tp / truth, np.nan)
        iou = np.where(union > 0, tp / union, np.nan)
    freq = truth / max(truth.sum(), 1)
    return {
        "pixel_accuracy": float(tp.sum() / max(m.sum(), 1)),
        "mean_accuracy": float(np.nanmean(acc)) if present.any() else float("nan"),
        "miou": float(np.nanmean(iou)) if (union > 0).any() else float("nan"),
        "fwiou": float(np.nansum(freq * np.nan_to_num(iou))),
        "iou_per_class": [float(v) for v in iou],
    }


def l1(fused: Any, clean: Any) -> float:
    """Mean absolute difference on 0..1 values, over pixels and bands."""
    return float(np.mean(np.abs(np.asarray(fused, np.float64) - np.asarray(clean, np.float64))))
