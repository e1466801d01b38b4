"""The dependency installer as a user meets it: the shipped zip in a fresh QGIS profile, QGIS's
own Python (no venv, no torch), ``qgis_process.bin`` running *Install Python dependencies* with a
local wheel folder and no network; then nothing QGIS imports is shadowed, mean runs without
torch, and the learned fusion runs on what was installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import wheelhouse
from helpers import REPO, qgis_env, write_raster

QGIS_PROCESS = shutil.which("qgis_process.bin") or "/usr/bin/qgis_process.bin"
QGIS_PYTHON = "/usr/bin/python3"
pytestmark = [
    pytest.mark.skipif(not Path(QGIS_PROCESS).is_file(),
                       reason="qgis_process.bin is not installed"),
    pytest.mark.skipif(sys.platform != "linux" or not Path(QGIS_PYTHON).is_file(),
                       reason="needs QGIS's system Python at /usr/bin/python3 (Linux)"),
]
PY = f"py{sys.version_info.major}{sys.version_info.minor}"


def _system_has(module: str) -> bool:
    return subprocess.run([QGIS_PYTHON, "-c", f"import {module}"], capture_output=True,
                          env=qgis_env()).returncode == 0


def _qgis_process(root: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([QGIS_PROCESS, *args], env=qgis_env(QGIS_CUSTOM_CONFIG_PATH=str(root)),
                          cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    """The local wheel folder; skipped (with the reason) when it cannot satisfy QGIS's Python."""
    if _system_has("torch"):
        pytest.skip("QGIS's Python already has torch: nothing for the installer to do")
    folder = tmp_path_factory.mktemp("wheels")
    try:
        wheelhouse.build(folder)
    except Exception as exc:  # a venv without the packages, unreadable wheel folders
        pytest.skip(f"cannot build a local wheel folder: {exc}")
    probe = subprocess.run(
        [QGIS_PYTHON, "-m", "pip", "install", "--dry-run", "--report", os.devnull, "--no-index",
         "--find-links",
         str(folder), "torch", "rasterio", "shapely", "safetensors",
         f"numpy=={_system_numpy()}"], capture_output=True, text=True, env=qgis_env())
    if probe.returncode != 0:
        pytest.skip("the local wheel folder cannot satisfy QGIS's Python offline: "
                    + probe.stdout[-300:] + probe.stderr[-300:])
    return folder


def _system_numpy() -> str:
    return subprocess.run([QGIS_PYTHON, "-c", "import numpy; print(numpy.__version__)"],
                          capture_output=True, text=True, env=qgis_env()).stdout.strip()


def _fresh_profile(tmp_path_factory, name: str) -> Path:
    zipped = tmp_path_factory.mktemp("dist") / "wsfusion.zip"
    subprocess.run(["bash", str(REPO / "scripts" / "build_plugin.sh"), str(zipped)], check=True,
                   capture_output=True, timeout=120)
    root = tmp_path_factory.mktemp(name)
    plugins = root / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(zipped) as z:
        z.extractall(plugins)
    proc = _qgis_process(root, ["plugins", "enable", "wsfusion"], root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


def _deps(root: Path) -> Path:
    return root / "profiles" / "default" / "python" / "wsfusion_deps" / PY


@pytest.fixture(scope="module")
def installed(wheels, tmp_path_factory) -> tuple[Path, float, str]:
    """A fresh profile after *Install Python dependencies* (offline): (root, seconds, log)."""
    root = _fresh_profile(tmp_path_factory, "qgis_full")
    t0 = time.perf_counter()
    proc = _qgis_process(root, ["run", "wsfusion:install_dependencies", "--",
                                f"PIP_ARGS=--no-index --find-links {wheels}"], root)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    print(f"\ninstall from a fresh profile, local wheel folder: {seconds:.1f} s, "
          f"{sum(f.stat().st_size for f in _deps(root).rglob('*') if f.is_file()) / 1e6:.0f} MB")
    return root, seconds, proc.stdout + proc.stderr


def test_install_from_a_fresh_profile(installed):
    root, seconds, log = installed
    deps = _deps(root)
    assert (deps / "torch").is_dir() and (deps / "rasterio").is_dir()
    # resolved against QGIS's Python: what it has at a usable version is not installed again
    assert not (deps / "numpy").exists() and not (deps / "jinja2").exists()
    assert "torch 2" in log and "+cpu" in log  # the CPU build, from the plan
    assert "All wsfusion dependencies import" in log
    assert [p.name for p in deps.parent.iterdir()] == [PY], "pip's work files were left behind"


SHADOW_CHECK = r"""
import importlib.util, json, sys
from pathlib import Path
from qgis.core import QgsApplication
app = QgsApplication([], False)
app.initQgis()
sys.path.append(str(Path(app.pkgDataPath()) / "python" / "plugins"))
from processing.core.Processing import Processing
Processing.initialize()
import jinja2, sympy  # system packages a QGIS session may well have imported (Processing does)
before = {n: getattr(m, "__file__", None) for n, m in list(sys.modules.items())}
folder = Path(sys.argv[1])
tops = sorted({p.name.split(".")[0] for p in folder.iterdir()
               if p.suffix in ("", ".py") and not p.name.endswith((".dist-info", ".libs"))
               and p.name not in ("bin", "share", "__pycache__")})
origins = {}
for name in tops:
    try:
        spec = importlib.util.find_spec(name)
    except Exception:
        spec = None
    origins[name] = spec.origin if spec else None
sys.path.append(str(Path(sys.argv[2])))  # the plugins folder of the profile
import wsfusion  # the plugin: it activates the private folder at import
from wsfusion import dependencies
assert str(folder) in sys.path, sys.path
import torch, rasterio, shapely, safetensors  # what the private folder is for
changed_modules = [n for n, f in before.items()
                   if n in sys.modules and getattr(sys.modules[n], "__file__", None) != f]
changed_specs = {}
for name, origin in origins.items():
    if origin is None:
        continue
    spec = importlib.util.find_spec(name)
    if spec.origin != origin:
        changed_specs[name] = [origin, spec.origin]
print(json.dumps({"changed_modules": changed_modules, "changed_specs": changed_specs,
                  "modules_checked": len(before),
                  "overlap": sorted(n for n, o in origins.items() if o),
                  "jinja2": jinja2.__file__, "sympy": sympy.__file__,
                  "torch": torch.__file__}))
"""


def test_no_module_qgis_imports_is_shadowed(installed, tmp_path):
    """In QGIS's Python with Processing loaded: adding the folder changes no imported module's
    file, and every package QGIS's Python has (jinja2, sympy, ...) still resolves to its copy,
    although the folder holds newer versions of some of them."""
    root = installed[0]
    plugins = root / "profiles" / "default" / "python" / "plugins"
    proc = subprocess.run([QGIS_PYTHON, "-c", SHADOW_CHECK, str(_deps(root)), str(plugins)],
                          env=qgis_env(QGIS_CUSTOM_CONFIG_PATH=str(root)), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["modules_checked"] > 500
    assert report["changed_modules"] == [] and report["changed_specs"] == {}
    assert report["overlap"], "the folder holds no package QGIS's Python has: nothing was tested"
    assert report["jinja2"].startswith("/usr/") and report["sympy"].startswith("/usr/")
    assert Path(report["torch"]).is_relative_to(_deps(root))


def _scene(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(5)
    img = rng.integers(1, 255, size=(3, 64, 72), dtype=np.uint8)
    cloudy = img.copy()
    cloudy[:, 5:30, 10:40] = 250
    return [write_raster(tmp_path / "a.tif", cloudy, nodata=0),
            write_raster(tmp_path / "b.tif", img, nodata=0)]


def test_learned_fusion_runs_on_the_installed_packages(installed, tmp_path, tiny_weights):
    import rasterio

    root = installed[0]
    a, b = _scene(tmp_path)
    out, seg = tmp_path / "fused.tif", tmp_path / "seg.tif"
    proc = _qgis_process(root, ["run", "wsfusion:fuse", "--", f"INPUTS={a}", f"INPUTS={b}",
                                f"OUTPUT={out}", f"SEGMENTATION={seg}",
                                f"WEIGHTS={tiny_weights}"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Device: cpu (device 'auto', but this PyTorch" in proc.stdout, proc.stdout[-2000:]
    with rasterio.open(out) as dst:
        assert dst.count == 3 and dst.read().max() > 0
    assert seg.is_file()


def test_second_run_finds_nothing_to_install(installed, wheels):
    root = installed[0]
    proc = _qgis_process(root, ["run", "wsfusion:install_dependencies", "--",
                                f"PIP_ARGS=--no-index --find-links {wheels}"], root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Missing: nothing" in proc.stdout


def test_mean_runs_without_torch(wheels, tmp_path_factory, tmp_path):
    """Only what the composites need (rasterio, shapely) installed: mean runs, learned is
    refused before it starts with a sentence naming torch."""
    root = _fresh_profile(tmp_path_factory, "qgis_composite")
    installer = root / "profiles/default/python/plugins/wsfusion/dependencies.py"
    proc = subprocess.run([QGIS_PYTHON, str(installer), "--target", str(_deps(root)),
                           "--only", "rasterio,shapely",
                           f"--pip-args=--no-index --find-links {wheels}"],
                          env=qgis_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not (_deps(root) / "torch").exists()
    a, b = _scene(tmp_path)
    out = tmp_path / "mean.tif"
    proc = _qgis_process(root, ["run", "wsfusion:fuse", "--", f"INPUTS={a}", f"INPUTS={b}",
                                f"OUTPUT={out}", "METHOD=1"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert out.is_file() and "no network" in proc.stdout
    learned = _qgis_process(root, ["run", "wsfusion:fuse", "--", f"INPUTS={a}",
                                   f"OUTPUT={tmp_path / 'l.tif'}", "METHOD=0"], tmp_path)
    text = learned.stdout + learned.stderr
    assert learned.returncode != 0 and "torch" in text and "Install Python dependencies" in text
    assert not (tmp_path / "l.tif").exists()
