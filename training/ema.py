"""An exponential moving average of the weights during training.

The real-cloud score of consecutive epochs of one run swings by up to 13 points (CPU run 3:
62–75 %), while their synthetic loss barely moves: single SGD iterates land at different points
of a flat valley whose edges rank real clouds differently. Averaging the iterates (Polyak) picks a
point inside it. BatchNorm's running statistics are averaged like the parameters, so the
averaged model is evaluated with statistics of the same horizon.
"""

from __future__ import annotations

import copy
from typing import Any


class WeightAverage:
    """``avg ← decay · avg + (1 − decay) · current`` after every optimiser step.

    ``decay`` sets the horizon: about ``1 / (1 − decay)`` steps (0.998 → 500 steps).
    """

    def __init__(self, model: Any, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def update(self, model: Any) -> None:
        import torch

        with torch.no_grad():
            current = model.state_dict()
            for name, avg in self.model.state_dict().items():
                value = current[name]
                if avg.dtype.is_floating_point:
                    avg.lerp_(value.detach(), 1.0 - self.decay)
                else:  # counters (num_batches_tracked) follow the current model
                    avg.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state)
