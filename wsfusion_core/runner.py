"""The loaded model on its device: device choice, batch size, mixed precision, and running the
networks on batches of tiles cut from a strip. The only core module (with model.py and the
model half of weights.py) that imports torch."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Sequence, Union

import numpy as np

from .composite import composite, zero_invalid
from .errors import WeightsError, WsfusionError
from .options import DEVICES, check_choice
from .view import network_view
from .windows import Tile, WindowPlan, pad_to

if TYPE_CHECKING:
    from .model import FusionModel
    from .weights import ModelInfo

BATCH_GPU, BATCH_CPU = 16, 4  # default tiles per batch


class ModelRunner:
    """The loaded model on its device, run tile batch by tile batch."""

    def __init__(self, model: FusionModel, info: ModelInfo, device: str, batch_size: int
                 ) -> None:
        self.model, self.info, self.device, self.batch_size = model, info, device, batch_size

    def describe(self) -> str:
        """The model's name and a short provenance, for tags and logs."""
        prov = self.info.provenance or {}
        short = prov.get("summary") or ", ".join(
            f"{k}={v}" for k, v in list(prov.items())[:2] if isinstance(v, (str, int, float)))
        return f"{self.info.name} ({short})" if short else self.info.name

    def _tiles(self, batch: Sequence[Tile], plan: WindowPlan, data: np.ndarray,
               valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cut the batch's tiles out of the strip, padded to the network tile:
        (B, K, C, T, T) original values and (B, K, T, T) validity."""
        th, tw = plan.rows.tile, plan.cols.tile
        d = np.stack([pad_to(data[..., t.x:t.x + t.width], th, tw) for t in batch])
        v = np.stack([pad_to(valid[..., t.x:t.x + t.width], th, tw) for t in batch])
        return d, v

    def _view(self, d: np.ndarray, v: np.ndarray, scales: Any, bands: tuple[int, ...]
              ) -> np.ndarray:
        return np.stack([network_view(di, vi, bands, scales, self.info.normalisation)
                         for di, vi in zip(d, v)])

    def _autocast(self) -> ContextManager[Any]:
        import torch

        if self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def learned(self, batch: Sequence[Tile], plan: WindowPlan, data: np.ndarray,
                valid: np.ndarray, scales: Any, bands: tuple[int, ...], want_seg: bool,
                want_quality: bool
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Quality weights per input, applied to the original values of every band; the
        segmentation net reads the fused network view. → fused (B, C, T, T), weights
        (B, K, T, T) and class probabilities (B, N, T, T) where asked for."""
        import torch

        from .model import fuse_by_quality

        d, v = self._tiles(batch, plan, data, valid)
        view = self._view(d, v, scales, bands)
        d = zero_invalid(d, v)
        with torch.inference_mode():
            dev = self.device
            img = torch.from_numpy(view).to(dev)
            val = torch.from_numpy(v).to(dev)
            with self._autocast():
                logits = self.model.quality_logits(img, val)
            fused_view, w = fuse_by_quality(img, logits.float(), val)
            work = torch.float64 if d.dtype.itemsize > 2 else torch.float32
            orig = torch.from_numpy(d).to(dev, dtype=work)
            fused = (orig * w.to(work).unsqueeze(2)).sum(dim=1)
            seg = None
            if want_seg:
                with self._autocast():
                    seg_logits = self.model.segmentation(fused_view)
                seg = torch.softmax(seg_logits.float(), dim=1).cpu().numpy()
            return (fused.cpu().numpy(), w.cpu().numpy() if want_quality else None, seg)

    def segment(self, batch: Sequence[Tile], plan: WindowPlan, data: np.ndarray,
                valid: np.ndarray, scales: Any, bands: tuple[int, ...], method: str
                ) -> np.ndarray:
        """Segmentation of a mean/median composite: its view is the composite of the inputs'
        network views (for mean, exactly the view of the composite)."""
        import torch

        d, v = self._tiles(batch, plan, data, valid)
        view = self._view(d, v, scales, bands)
        comp = np.stack([composite(vw, vi, method)[0] for vw, vi in zip(view, v)])
        with torch.inference_mode():
            x = torch.from_numpy(comp.astype(np.float32)).to(self.device)
            with self._autocast():
                logits = self.model.segmentation(x)
            return torch.softmax(logits.float(), dim=1).cpu().numpy()


def resolve_device(device: str | None) -> str:
    """"auto" → cuda when torch sees a GPU, else cpu; "cuda"/"cuda:N" only when one exists."""
    import torch

    d = (device or "auto").lower()
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise WsfusionError(f"device {device!r} requested but torch finds no CUDA GPU",
                                hint="use device auto or cpu")
        return d
    try:
        check_choice(d, DEVICES, "device")
    except ValueError as exc:
        raise WsfusionError(str(exc)) from None
    return d


def default_batch(device: str) -> int:
    """Tiles per batch when none is given: more on a GPU (``auto`` as resolved here, or the
    device requested for a cluster's workers)."""
    dev = resolve_device(device) if device == "auto" else device
    return BATCH_GPU if dev.startswith("cuda") else BATCH_CPU


def load_runner(weights: Union[str, os.PathLike] | None, device: str,
                batch_size: int | None, log: Callable[[str], None], purpose: str
                ) -> ModelRunner:
    """Load the model (the given weights or the shipped default) onto the chosen device.
    ``purpose`` names what needs the model, for the error when there is none."""
    try:
        import torch
    except ImportError:
        raise WsfusionError(f"{purpose} needs PyTorch",
                            hint="install torch, or use the mean or median method") from None
    from .weights import load_weights, resolve_weights

    try:
        path = resolve_weights(weights)
    except WeightsError as exc:
        raise WeightsError(f"{purpose} needs a model and none is shipped", path=exc.path,
                           hint=exc.hint) from None
    dev = resolve_device(device)
    if dev == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(os.cpu_count() or 1)
    model, info = load_weights(path, device=dev)
    bs = batch_size or default_batch(dev)
    runner = ModelRunner(model, info, dev, bs)
    threads = f", {torch.get_num_threads()} threads" if dev == "cpu" else ""
    amp = ", mixed precision" if dev.startswith("cuda") else ""
    log(f"device: {dev}{threads}{amp}; batch {bs}")
    log(f"model: {runner.describe()} from {Path(path)}")
    return runner
