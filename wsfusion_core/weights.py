"""The weight file format: one safetensors file whose header carries the model's JSON metadata
(architecture, tile size, classes, colours, normalisation, provenance, metrics).

Loading never executes code (no pickle). A human-readable copy of the metadata may sit beside
the weights as ``<name>.json``; the header is authoritative.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from safetensors import safe_open

from .classes import CLASS_COLOURS, CLASS_NAMES
from .errors import WeightsError, first_line
from .publish import fsync_file, temp_path
from .weights_schema import problems as metadata_problems

if TYPE_CHECKING:  # torch loads only when a model is built: ``info`` and read_info stay light
    import torch

    from .model import FusionModel

FORMAT = "wsfusion-weights/1"
METADATA_KEY = "wsfusion"
DEFAULT_WEIGHTS_NAME = "default.safetensors"
# The way out when no model is available, in words every front end can show.
NO_MODEL_HINT = "choose a weights file, or use the mean or median method (no model needed)"


def _default_widths() -> list[int]:
    from .model import DEFAULT_WIDTHS

    return list(DEFAULT_WIDTHS)


@dataclass
class ModelInfo:
    """Everything a caller needs to run the model right, read from the weight file itself."""

    tile_size: int = 300
    in_channels: int = 3
    widths: list[int] = field(default_factory=_default_widths)
    fusion: str = "learned"
    # Quality-net architecture (model.ARCHITECTURES); files without it are the paper's.
    architecture: str = "paper"
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    class_colours: list[list[int]] = field(default_factory=lambda: [list(c) for c in CLASS_COLOURS])
    # The 0..1 network view (view.py) becomes (x - mean) / std before the networks.
    normalisation: dict[str, Any] = field(
        default_factory=lambda: {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    )
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    name: str = "wsfusion"
    # The evidence contract (sensors.py): bands only the quality net reads, by STAC EO common
    # name, as reflectance (the layout's or the file's rule) normalised by ``mean``/``std``;
    # ``image_scale`` "reflectance" means the image bands were seen as reflectance / 0.3 (the
    # ``s2`` rule) in training, so inference uses the layout's reflectance for them too.
    # Files without it are RGB models (no evidence), as before.
    evidence: dict[str, Any] = field(default_factory=dict)
    # [finest, coarsest] ground pixel size in metres the model was trained on; None: not
    # recorded (older files), resolution.py then assumes the shipped models' provenance.
    training_resolutions_m: list[float] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def evidence_bands(self) -> list[str]:
        """The evidence bands' common names, in the order the quality net reads them."""
        return list(self.evidence.get("bands", []))

    @property
    def dtypes(self) -> list[str]:
        """Input data types an RGB model is chosen for under ``auto`` (evidence.py); [] = none."""
        return list(self.evidence.get("dtypes", []))

    @property
    def layouts(self) -> list[str]:
        """The sensor layouts (sensors.LAYOUTS keys) the model was trained for; [] = any RGB."""
        return list(self.evidence.get("layouts", []))

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "<metadata>") -> ModelInfo:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WeightsError(f"metadata is not valid JSON ({exc.msg})", path=source) from None
        if not isinstance(data, dict) or data.pop("format", None) != FORMAT:
            raise WeightsError(f"not a {FORMAT} file", path=source)
        bad = metadata_problems(data)  # before any tensor is built from these numbers
        if bad:
            raise WeightsError(f"invalid metadata: {'; '.join(bad[:3])}", path=source)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def build_model(info: ModelInfo) -> FusionModel:
    from .model import ARCHITECTURES, FusionModel

    if info.architecture not in ARCHITECTURES:
        raise WeightsError(f"unknown quality-net architecture {info.architecture!r} in the "
                           f"metadata (this version knows {', '.join(ARCHITECTURES)})")
    return FusionModel(num_classes=info.num_classes, in_channels=info.in_channels,
                       widths=info.widths, fusion=info.fusion, architecture=info.architecture,
                       evidence_channels=len(info.evidence_bands))


def save_weights(path: str | os.PathLike, model: FusionModel, info: ModelInfo,
                 write_card: bool = True) -> Path:
    """Write weights + metadata atomically; also a ``.json`` model card beside them."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path, "tmp", ".safetensors")
    try:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: info.to_json()})
        os.chmod(tmp, 0o644)  # weights are data to share, not secrets
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if write_card:
        path.with_suffix(".json").write_text(info.to_json() + "\n")
    return path


def read_info(path: str | os.PathLike) -> ModelInfo:
    """Read only the metadata (cheap: the header, not the tensors)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError("weights file not found", path=path)
    try:
        with safe_open(str(path), framework="numpy") as f:  # the header only, no torch
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for a bad header
        raise WeightsError(f"not a safetensors weights file ({exc})", path=path) from None
    if METADATA_KEY not in meta:
        raise WeightsError("safetensors file has no wsfusion metadata", path=path)
    return ModelInfo.from_json(meta[METADATA_KEY], source=str(path))


def load_weights(path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
                 ) -> tuple[FusionModel, ModelInfo]:
    """Build the model its metadata describes and load its tensors, in eval mode."""
    path = resolve_weights(path)
    info = read_info(path)
    try:
        model = build_model(info)
    except WeightsError as exc:  # raised without the file: name it
        raise WeightsError(exc.message, path=path, hint=exc.hint) from None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # torch: RuntimeError; safetensors: its own error types
        first = first_line(exc)
        raise WeightsError(f"tensors do not match the architecture in its metadata ({first})",
                           path=path) from None
    return model.to(device).eval(), info


def default_weights_path() -> Path:
    """Where the model shipped inside the package lives (the file may be absent)."""
    return Path(str(resources.files("wsfusion_core") / "data" / "weights" / DEFAULT_WEIGHTS_NAME))


def resolve_weights(weights: Union[str, os.PathLike] | None = None) -> Path:
    """The one default-weights lookup: the given file, else the shipped model, else a
    WeightsError whose hint says how to go on without one."""
    if weights is not None:
        return Path(weights)
    path = default_weights_path()
    if not path.is_file():
        raise WeightsError("no default weights are shipped with this build", path=path,
                           hint=NO_MODEL_HINT)
    return path
