"""The weight file format: round trip through real files, and each malformed file refused with
an error naming it (no code is executed to read any of them)."""

from __future__ import annotations

import json

import pytest
from safetensors.numpy import save_file

from wsfusion_core import weights
from wsfusion_core.errors import WeightsError
from wsfusion_core.weights import (
    FORMAT,
    METADATA_KEY,
    ModelInfo,
    read_info,
    resolve_weights,
)


def test_round_trip_keeps_metadata_and_tensors(random_weights):
    torch = pytest.importorskip("torch")
    model, info = weights.load_weights(random_weights)
    assert info.name == "random-test" and info.tile_size == 300
    assert read_info(random_weights) == info
    assert json.loads(random_weights.with_suffix(".json").read_text())["format"] == FORMAT
    assert not model.training and all(p.device == torch.device("cpu")
                                      for p in model.parameters())


def _bad(tmp_path, name, metadata, tensors=None):
    import numpy as np

    path = tmp_path / name
    save_file(tensors or {"x": np.zeros(1, np.float32)}, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize("case", ["missing", "not safetensors", "no metadata", "bad json",
                                  "wrong format"])
def test_malformed_files_are_refused_with_their_path(tmp_path, case):
    if case == "missing":
        path = tmp_path / "none.safetensors"
    elif case == "not safetensors":
        path = tmp_path / "junk.safetensors"
        path.write_bytes(b"\x00" * 64)
    elif case == "no metadata":
        path = _bad(tmp_path, "plain.safetensors", {"other": "1"})
    elif case == "bad json":
        path = _bad(tmp_path, "badjson.safetensors", {METADATA_KEY: "{not json"})
    else:
        path = _bad(tmp_path, "other.safetensors",
                    {METADATA_KEY: json.dumps({"format": "someone-else/9"})})
    with pytest.raises(WeightsError) as info:
        read_info(path)
    assert info.value.path == path and str(info.value).startswith(f"{path}: ")


def test_tensors_that_do_not_fit_the_metadata_are_refused(tmp_path):
    pytest.importorskip("torch")
    path = _bad(tmp_path, "mismatch.safetensors", {METADATA_KEY: ModelInfo().to_json()})
    with pytest.raises(WeightsError, match="do not match the architecture"):
        weights.load_weights(path)


def test_unknown_metadata_fields_are_ignored():
    info = ModelInfo.from_json(json.dumps({"format": FORMAT, "name": "x", "future": 1}))
    assert info.name == "x" and not hasattr(info, "future")


def test_default_lookup(monkeypatch, tmp_path, random_weights):
    assert resolve_weights(random_weights) == random_weights  # a given file wins
    missing = tmp_path / "absent.safetensors"
    monkeypatch.setattr(weights, "default_weights_path", lambda: missing)
    with pytest.raises(WeightsError) as info:
        resolve_weights(None)
    assert info.value.path == missing and info.value.hint == weights.NO_MODEL_HINT
    monkeypatch.setattr(weights, "default_weights_path", lambda: random_weights)
    assert resolve_weights(None) == random_weights


def test_reading_metadata_does_not_import_torch():
    from helpers import run_python

    proc = run_python("import sys\nfrom wsfusion_core.report import inspect\n"
                      "from wsfusion_core.weights import read_info, resolve_weights\n"
                      "read_info(resolve_weights(None))\n"
                      "inspect(['wsfusion_core/data/sample/banepa/input_1.tif'])\n"
                      "print('torch' in sys.modules)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"
