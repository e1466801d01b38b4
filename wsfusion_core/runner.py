"""The loaded model on its device, run on batches of tiles cut from a strip: device choice,
how many images go through a network per call, precision, and the model's inference form.

Sized for the device (measured, docs/benchmark.md): on a CPU the U-Nets run fastest one or two
images per call in ``channels_last`` (oneDNN then needs no layout reorders and the activations
fit the caches), so B tiles × K inputs are fed two images at a time; on CUDA big batches in
float32 with TF32 off: on an H200 fp16 autocast was no faster end to end (2048², K = 3: 0.42 vs
0.45 s; the host side dominates) but moved the fused image by up to 2 grey levels and flipped
0.004-0.05 % of the classes (scripts/gpu_precision_check.py), so it stays out; ``bf16`` is the
opt-in. BatchNorm is folded into the convolutions (inference only).
Imported only when a network runs (``fuse`` imports it lazily), so composites never load torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import os
import sys
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Sequence, Union, cast

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .composite import blue_channel, composite, min_blue_like
from .errors import WeightsError, WsfusionError
from .model import quality_weights, weighted_sum
from .options import DEVICES, check_choice
from .view import network_view
from .windows import Tile, WindowPlan, pad_to

if TYPE_CHECKING:
    from .model import FusionModel
    from .weights import ModelInfo

TILES_CPU, TILES_GPU = 2, 32  # default tiles cut from the strip per runner call
# Whole-row device-path steps (Policy.row_tiles, opt-in): a row of 300 px tiles up to ~11000 px
# in one step. Not the default: on the CPU they measured slower than one batch per step, and
# on CUDA one batch is already 32 tiles, a whole row up to ~7500 px (docs/benchmark.md, host
# overhead); bench_overhead measures both on a GPU.
ROW_TILES = 48
IMAGES_PER_CALL_CPU = 2  # images per network call on a CPU (1 and 2 measure the same)


@dataclass(frozen=True)
class Policy:
    """How the networks run on one device."""

    device: str
    tiles: int  # tiles per runner call (the ``batch_size`` of the API)
    images_per_call: int | None  # None: the whole batch in one call
    amp: torch.dtype | None  # the quality net's autocast dtype, None for float32
    compile: bool = False
    # The network view, the weighting and the blending on the device (CUDA): the strip goes
    # up once as stored (uint8/uint16), only finished rows come back (device_blend.py).
    device_side: bool = False
    # The segmentation net's autocast dtype (None: float32, TF32 off); apart from ``amp`` so
    # that each network's precision can be measured alone (scripts/gpu_precision_check.py).
    seg_amp: torch.dtype | None = None
    # Tiles per device-path step (view, weights and blend as one set of operations per step;
    # None: one batch, ``tiles``).
    row_tiles: int | None = None

    @property
    def row_group(self) -> int:
        """Tiles per device-path step: ``row_tiles`` rounded up to whole batches, so the
        networks see the same batches whatever the step."""
        return -(-(self.row_tiles or self.tiles) // self.tiles) * self.tiles

    def describe(self) -> str:
        per_call = (f"{self.images_per_call} image(s) per network call"
                    if self.images_per_call else "whole batch per network call")
        names = {None: "float32", torch.float16: "fp16 autocast", torch.bfloat16: "bf16 autocast"}
        amp = names[self.amp] if self.amp == self.seg_amp else \
            f"quality net {names[self.amp]}, segmentation {names[self.seg_amp]}"
        return (f"{self.tiles} tile(s) per batch, {per_call}, {amp}"
                + (", torch.compile" if self.compile else "")
                + (f", view/weights/blend on the device, {self.row_group} tile(s) per step"
                   if self.device_side else ""))


def policy_for(device: str, batch_size: int | None = None, bf16: bool = False,
               compile: bool = False) -> Policy:
    """The measured best defaults per device; ``bf16`` (opt-in: outputs move by up to 12 grey
    levels) and ``compile`` (opt-in: pays off only on large rasters) on top."""
    if device.startswith("cuda"):
        return Policy(device, batch_size or TILES_GPU, None,
                      torch.bfloat16 if bf16 else None, compile, device_side=True,
                      seg_amp=torch.bfloat16 if bf16 else None)
    return Policy(device, batch_size or TILES_CPU, IMAGES_PER_CALL_CPU,
                  torch.bfloat16 if bf16 else None, compile,
                  seg_amp=torch.bfloat16 if bf16 else None)


class _Chunked(nn.Module):
    """Runs the wrapped network on at most ``n`` images per call, in channels_last."""

    def __init__(self, net: nn.Module, n: int | None) -> None:
        super().__init__()
        self.net, self.n = net, n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        if self.n is None or x.shape[0] <= self.n:
            return self.net(x)
        return torch.cat([self.net(c) for c in x.split(self.n)])


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every Conv2d → BatchNorm2d pair of a Sequential into one Conv2d (eval mode only:
    the same outputs to float rounding, one pass over the activations fewer)."""
    for name, child in module.named_children():
        if isinstance(child, nn.Sequential):
            mods, i = list(child), 0
            out: list[nn.Module] = []
            while i < len(mods):
                if (i + 1 < len(mods) and isinstance(mods[i], nn.Conv2d)
                        and isinstance(mods[i + 1], nn.BatchNorm2d)):
                    out.append(fuse_conv_bn_eval(cast(nn.Conv2d, mods[i]),
                                                 cast(nn.BatchNorm2d, mods[i + 1])))
                    i += 2
                else:
                    out.append(fold_batchnorm(mods[i]))
                    i += 1
            setattr(module, name, nn.Sequential(*out))
        else:
            fold_batchnorm(child)
    return module


class Pointwise(nn.Module):
    """A 1×1 convolution as one matrix product over the channels of a channels_last tensor.

    oneDNN's 1×1 convolution with few output channels (the networks' heads: 16 → 1 and 16 → 3)
    splits its work by the number of threads and rounds differently with 1 thread than with 2
    (up to 1e-6 in the logits), so a Dask worker (one torch thread) and a local run (all
    cores) differed by a grey level at a few pixels. The matrix product splits the pixels, not
    the sums, across threads: each pixel's sum is the same with any thread count (tested)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        out_ch, in_ch = conv.weight.shape[:2]
        self.weight = nn.Parameter(conv.weight.detach().reshape(out_ch, in_ch).t().contiguous(),
                                   requires_grad=False)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(out_ch)
        self.bias = nn.Parameter(bias.clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.matmul(x.permute(0, 2, 3, 1), self.weight) + self.bias
        return y.permute(0, 3, 1, 2)  # (N, C, H, W) in channels_last layout


def pointwise_heads(module: nn.Module) -> nn.Module:
    """Every plain 1×1 Conv2d of ``module`` replaced by ``Pointwise`` (in place)."""
    for name, child in module.named_children():
        if (isinstance(child, nn.Conv2d) and child.kernel_size == (1, 1)
                and child.stride == (1, 1) and child.padding == (0, 0)
                and child.dilation == (1, 1) and child.groups == 1):
            setattr(module, name, Pointwise(child))
        else:
            pointwise_heads(child)
    return module


def prepare(model: FusionModel, policy: Policy, tile: int,
            log: Callable[[str], None] = lambda _m: None) -> FusionModel:
    """The inference form of a loaded model (changed in place; the runner owns it). On a CPU
    the 1×1 heads become ``Pointwise``, so the outputs do not depend on the thread count."""
    fold_batchnorm(model.eval())
    if policy.device == "cpu":
        pointwise_heads(model)
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    for name in ("quality", "segmentation"):
        net = getattr(model, name, None)
        if net is None:
            continue
        if policy.compile:
            net = _compiled(net, policy, tile, log,
                            policy.amp if name == "quality" else policy.seg_amp)
        setattr(model, name, _Chunked(net, policy.images_per_call))
    return model


def _compiled(net: nn.Module, policy: Policy, tile: int, log: Callable[[str], None],
              amp_dtype: torch.dtype | None = None) -> nn.Module:
    """``torch.compile`` of one network, compiled now on a tile of the real shape (a minute or
    more on a CPU), or the eager network with a log line where compiling fails."""
    cin = next(m for m in net.modules() if isinstance(m, nn.Conv2d)).in_channels
    n = policy.images_per_call or 1
    x = torch.zeros(n, cin, tile, tile, device=policy.device).contiguous(
        memory_format=torch.channels_last)
    try:
        compiled = cast(nn.Module, torch.compile(net, dynamic=False))
        with torch.inference_mode(), precision(policy.device, amp_dtype):
            compiled(x)
        return compiled
    except Exception as exc:  # e.g. no C++ compiler: the eager network gives the same outputs
        log(f"torch.compile failed ({str(exc).strip().splitlines()[0][:200]}); running eagerly")
        return net


def precision(device: str, amp: torch.dtype | None) -> ContextManager[Any]:
    """Autocast to ``amp``, or plain float32 (None): on CUDA with TF32 off for convolutions, so
    float32 there means what it means on a CPU."""
    kind = device.split(":")[0]
    if amp is not None:
        return torch.autocast(kind, dtype=amp)
    if kind != "cuda":
        return contextlib.nullcontext()
    cudnn = torch.backends.cudnn
    return cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark,
                       deterministic=cudnn.deterministic, allow_tf32=False)


def keep_freed_memory() -> None:
    """Stop glibc from returning each call's freed activations to the OS and faulting them back
    in on the next call (measured: ~6000 page faults per image otherwise). Linux/glibc only."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-3, 256 * 2**20)  # M_MMAP_THRESHOLD: activations come from the heap
    libc.mallopt(-1, 512 * 2**20)  # M_TRIM_THRESHOLD: keep up to this much freed heap


class ModelRunner:
    """The loaded model on its device, run tile batch by tile batch."""

    def __init__(self, model: FusionModel, info: ModelInfo, policy: Policy) -> None:
        self.model, self.info, self.policy = model, info, policy
        self.device, self.batch_size = policy.device, policy.tiles
        params = inspect.signature(model.quality_logits).parameters
        self._set_aware = "valid" in params  # quality nets that read all K inputs' validity
        # Evidence bands (evidence.py) follow the image bands in the view; only the quality
        # net reads them.
        self.evidence_count = len(info.evidence_bands)
        # The current strip on the device (learned_on_device): uploaded once for all its
        # batches, recognised by a weak reference to the numpy strip it came from. Replaced
        # as one tuple and read into locals, so threads sharing a runner never mix strips.
        self._strip: tuple[weakref.ref, torch.Tensor, torch.Tensor] | None = None
        self._consts: tuple[Any, tuple[int, ...], tuple[torch.Tensor, ...]] | None = None
        self._warming: Future | None = None

    def warm_up(self) -> None:
        """On CUDA: start a background thread that runs the segmentation net once on a batch
        of the tile shape, so cuDNN's handles and the lazily loaded kernels are ready while the
        inputs are opened and the first strip is read. The first network call waits for it; a
        failure there is left to that call. (``cudnn.benchmark`` stays off: a run sees up to
        four batch shapes (K inputs, each row's last batch), each tuned per layer; not measured
        yet against its gain.)"""
        net = getattr(self.model, "segmentation", None)
        if not self.device.startswith("cuda") or self._warming is not None or net is None:
            return
        t, n = self.info.tile_size, self.policy.tiles

        def run() -> None:
            x = torch.zeros(n, self.info.in_channels, t, t, device=self.device)
            with torch.inference_mode(), self._seg_precision():
                net(x)
            torch.cuda.synchronize(self.device)

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsfusion-warm")
        self._warming = pool.submit(run)
        pool.shutdown(wait=False)

    def _warm(self) -> None:
        if self._warming is not None:
            with contextlib.suppress(Exception):
                self._warming.result()
            self._warming = None

    @property
    def blend_device(self) -> str | None:
        """The device that blends a learned run's tiles (device_blend), None: numpy on the CPU."""
        return self.device if self.policy.device_side else None

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
        """The quality net's precision."""
        return precision(self.device, self.policy.amp)

    def _seg_precision(self) -> ContextManager[Any]:
        """The segmentation net's precision."""
        return precision(self.device, self.policy.seg_amp)

    def _to_device(self, a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(a)
        if self.device == "cpu":
            return t
        return t.pin_memory().to(self.device, non_blocking=True)

    def learned(self, batch: Sequence[Tile], plan: WindowPlan, data: np.ndarray,
                valid: np.ndarray, scales: Any, bands: tuple[int, ...], want_seg: bool,
                want_quality: bool
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Quality weights per input, applied to the original values of every band; the
        segmentation net reads the fused network view. → fused (B, C, T, T), weights
        (B, K, T, T) and class probabilities (B, N, T, T) where asked for."""
        self._warm()
        d, v = self._tiles(batch, plan, data, valid)
        view = self._view(d, v, scales, bands)
        ne = self.evidence_count
        ev_view = np.ascontiguousarray(view[:, :, -ne:]) if ne else None
        if ne:
            view = np.ascontiguousarray(view[:, :, :-ne])
        work = torch.float64 if d.dtype.itemsize > 2 else torch.float32
        if d.dtype not in (np.uint8, np.int16, np.float32, np.float64):
            d = d.astype(np.float64 if work == torch.float64 else np.float32)
        with torch.inference_mode():
            img = self._to_device(view)
            val = self._to_device(v)
            ev = self._to_device(ev_view) if ev_view is not None else None
            with self._autocast():
                logits = self._quality(img, val, ev)
            w = quality_weights(logits, val)
            # Invalid pixels may hold NaN or sentinels: zero them so a 0 weight stays 0.
            orig = self._to_device(d).to(work)
            orig = torch.where(val.unsqueeze(2), orig, torch.zeros((), dtype=work,
                                                                   device=orig.device))
            fused = weigh(orig, w, work)
            seg = None
            if want_seg:
                fused_view = weighted_sum(img, w)  # fuse_by_quality's, as trained
                with self._seg_precision():
                    seg_logits = self.model.segmentation(fused_view)
                seg = torch.softmax(seg_logits.float(), dim=1).cpu().numpy()
            return (fused.cpu().numpy(), w.cpu().numpy() if want_quality else None, seg)

    def _quality(self, img: torch.Tensor, val: torch.Tensor, ev: torch.Tensor | None
                 ) -> torch.Tensor:
        """The quality logits, with validity for set-aware nets and the evidence bands for a
        model that reads them."""
        quality_logits: Any = self.model.quality_logits
        if ev is not None:
            return quality_logits(img, val, ev)
        return quality_logits(img, val) if self._set_aware else quality_logits(img)

    def _device_strip(self, plan: WindowPlan, data: np.ndarray, valid: np.ndarray
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """The strip padded to the network tile (the per-tile ``pad_to`` of ``_tiles``: padding
        exists only along an axis with one tile) on the device, as stored."""
        cached = self._strip
        if cached is None or cached[0]() is not data:
            th, tw = plan.rows.tile, plan.cols.tile
            cached = (weakref.ref(data), upload(pad_to(data, th, tw), self.device),
                      upload(pad_to(valid, th, tw), self.device))
            self._strip = cached
        return cached[1], cached[2]

    def _view_consts(self, scales: Any, bands: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
        """``to_unit``'s and the normalisation's float32 constants on the device, (1, K, C, 1,
        1) each: lo, hi - lo (at least 1e-12), mean, std; and the bands' (0-based) index."""
        consts = self._consts
        if consts is None or consts[0] is not scales or consts[1] != bands:
            lo = np.stack([np.asarray(sc[:, 0], np.float32) for sc in scales])
            hi = np.stack([np.asarray(sc[:, 1], np.float32) for sc in scales])
            span = np.maximum(hi - lo, np.float32(1e-12))
            n = len(bands)
            norm = self.info.normalisation
            mean = np.asarray(norm.get("mean", [0.0] * n), np.float32)[:n][None].repeat(
                len(lo), 0)
            std = np.asarray(norm.get("std", [1.0] * n), np.float32)[:n][None].repeat(
                len(lo), 0)
            consts = (scales, bands, tuple(
                torch.from_numpy(np.ascontiguousarray(a)).to(self.device)[None, :, :, None, None]
                for a in (lo, span, mean, std)) + (
                torch.tensor([b - 1 for b in bands], device=self.device),))
            self._consts = consts
        return consts[2]

    def learned_on_device(self, batch: Sequence[Tile], plan: WindowPlan, data: np.ndarray,
                          valid: np.ndarray, scales: Any, bands: tuple[int, ...],
                          want_seg: bool, want_quality: bool
                          ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``learned`` with every step on the device, tensors returned there (for
        device_blend), for any number of tiles of one row (the engine passes one step,
        ``Policy.row_group``): the tiles cut from the strip, uploaded once as stored; the
        network view in the same float32 steps as ``view.network_view``; the networks called on
        ``batch_size`` tiles at a time (the calls of the per-batch path); the weighting in the
        same float type as ``learned``, each one operation over all the step's tiles."""
        self._warm()
        ds, vs = self._device_strip(plan, data, valid)
        # One copy of the tiles' slices each (measured on the CPU: 100x faster than an
        # index_select of their columns; one kernel on CUDA).
        tw = plan.cols.tile
        d = torch.stack([ds[..., t.x:t.x + tw] for t in batch])  # (B, K, C, T, T) as stored
        val = torch.stack([vs[..., t.x:t.x + tw] for t in batch])  # (B, K, T, T)
        lo, span, mean, std, bidx = self._view_consts(scales, bands)
        with torch.inference_mode():
            img = d.index_select(2, bidx).to(torch.float32)
            img = ((img - lo) / span).clamp_(0.0, 1.0)
            img = ((img - mean) / std).masked_fill_(~val.unsqueeze(2), 0.0)
            ne = self.evidence_count
            ev = img[:, :, -ne:].contiguous() if ne else None
            img = (img[:, :, :-ne] if ne else img).contiguous()
            n = self.batch_size
            with self._autocast():
                logits = torch.cat([
                    self._quality(i, v, e)
                    for i, v, e in zip(img.split(n), val.split(n),
                                       ev.split(n) if ev is not None else [None] * len(batch))])
            w = quality_weights(logits, val)
            work = torch.float64 if data.dtype.itemsize > 2 else torch.float32
            orig = d.to(work).masked_fill(~val.unsqueeze(2), 0.0)  # NaN/sentinels → 0
            fused = weigh(orig, w, work)
            seg = None
            if want_seg:
                fused_view = weighted_sum(img, w)
                with self._seg_precision():
                    seg_logits = torch.cat([self.model.segmentation(f)
                                            for f in fused_view.split(n)])
                seg = torch.softmax(seg_logits.float(), dim=1)
            return fused, (w if want_quality else None), seg

    def segment(self, batch: Sequence[Tile], plan: WindowPlan, data: np.ndarray,
                valid: np.ndarray, scales: Any, bands: tuple[int, ...], method: str
                ) -> np.ndarray:
        """Segmentation of a composite: its view is the composite of the inputs' network views
        (for mean, exactly the view of the composite; for min-blue, the views of the inputs
        chosen on their stored values, as in the written image)."""
        self._warm()
        d, v = self._tiles(batch, plan, data, valid)
        view = self._view(d, v, scales, bands)
        if method == "min-blue":
            blue = blue_channel(bands, d.shape[2])
            comp = np.stack([min_blue_like(vw, di, vi, blue) for vw, di, vi in zip(view, d, v)])
        else:
            comp = np.stack([composite(vw, vi, method)[0] for vw, vi in zip(view, v)])
        with torch.inference_mode():
            x = self._to_device(comp.astype(np.float32))
            with self._seg_precision():
                logits = self.model.segmentation(x)
            return torch.softmax(logits.float(), dim=1).cpu().numpy()


def weigh(orig: torch.Tensor, w: torch.Tensor, work: torch.dtype) -> torch.Tensor:
    """Σ_k w_k · x_k over the inputs: (B, K, C, T, T) values and (B, K, T, T) float32 weights
    → (B, C, T, T) in ``work``.

    The softmax weights sum to 1 only to float32 precision (~1e-7). That vanishes in the
    rounding to 8- and 16-bit outputs, but moved float32 outputs by an ulp and 32-bit integers
    by hundreds (x ~ 4e9), so identical inputs did not come back bit-exact. In float64 work
    the weights are renormalised in float64, which makes the error ~1e-16 relative: below
    half an ulp of float32 and of any 32-bit integer (float64 outputs: docs/engine.md).
    Narrower outputs keep the plain sum (their results are unchanged)."""
    wk = w.to(work)
    fused = (orig * wk.unsqueeze(2)).sum(dim=1)
    if work == torch.float64:
        total = wk.sum(dim=1, keepdim=True)
        fused = fused / torch.where(total > 0, total, torch.ones((), dtype=work,
                                                                 device=total.device))
    return fused


def upload(a: np.ndarray, device: str) -> torch.Tensor:
    """A numpy array on ``device`` as stored (the smallest transfer), through pinned memory
    without blocking on CUDA. uint16 goes up as its int16 bits and is widened there (torch's
    uint16 has few kernels); uint32 is widened on the CPU."""
    if a.dtype == np.uint16:
        return upload(a.view(np.int16), device).to(torch.int32) & 0xFFFF
    if a.dtype == np.uint32:
        a = a.astype(np.int64)
    t = torch.from_numpy(np.ascontiguousarray(a))
    if device == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def resolve_device(device: str | None) -> str:
    """"auto" → cuda when torch sees a GPU, else cpu; "cuda"/"cuda:N" only when one exists."""
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
    return TILES_GPU if dev.startswith("cuda") else TILES_CPU


def load_runner(weights: Union[str, os.PathLike] | None, device: str,
                batch_size: int | None, log: Callable[[str], None], purpose: str,
                compile: bool = False, bf16: bool = False) -> ModelRunner:
    """Load the model (the given weights or the shipped default) onto the chosen device, in
    its inference form. ``purpose`` names what needs the model, for the error when there is
    none."""
    from .weights import load_weights, resolve_weights

    try:
        path = resolve_weights(weights)
    except WeightsError as exc:
        raise WeightsError(f"{purpose} needs a model and none is shipped", path=exc.path,
                           hint=exc.hint) from None
    dev = resolve_device(device)
    if dev == "cpu":
        if "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                  else os.cpu_count() or 1)
        keep_freed_memory()
    policy = policy_for(dev, batch_size, bf16=bf16, compile=compile)
    model, info = load_weights(path, device=dev)
    runner = ModelRunner(prepare(model, policy, info.tile_size, log), info, policy)
    runner.warm_up()
    threads = f", {torch.get_num_threads()} threads" if dev == "cpu" else ""
    log(f"device: {dev}{threads}; {policy.describe()}")
    log(f"model: {runner.describe()} from {Path(path)}")
    return runner
