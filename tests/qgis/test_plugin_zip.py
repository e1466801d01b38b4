"""End to end through the shipped zip: build it, unzip it into a fresh profile, enable it with
``qgis_process.bin`` and run it from a shell, as a user would. (Debian's ``/usr/bin/qgis_process``
wrapper passes ``--noversioncheck``, which 3.22 rejects, hence ``qgis_process.bin``.)"""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, qgis_env, write_raster

QGIS_PROCESS = shutil.which("qgis_process.bin") or "/usr/bin/qgis_process.bin"
pytestmark = pytest.mark.skipif(not Path(QGIS_PROCESS).is_file(),
                                reason="qgis_process.bin is not installed")


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist") / "wsfusion.zip"
    subprocess.run(["bash", str(REPO / "scripts" / "build_plugin.sh"), str(out)], check=True,
                   capture_output=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def profile(plugin_zip, tmp_path_factory) -> Path:
    """A throw-away QGIS config root with the zip installed and the plugin enabled."""
    root = tmp_path_factory.mktemp("qgis_config")
    plugins = root / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as z:
        z.extractall(plugins)
    proc = _qgis_process(root, ["plugins", "enable", "wsfusion"], site=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


def _qgis_process(root: Path, args: list[str], site: bool, cwd: Path | None = None
                  ) -> subprocess.CompletedProcess:
    env = qgis_env(QGIS_CUSTOM_CONFIG_PATH=str(root))
    if site:  # only the venv's packages: the plugin's own wsfusion_core must be what runs
        env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]
    return subprocess.run([QGIS_PROCESS, *args], env=env, cwd=cwd or root, capture_output=True,
                          text=True, timeout=300)


def test_zip_layout(plugin_zip):
    with zipfile.ZipFile(plugin_zip) as z:
        names = z.namelist()
    assert {n.split("/")[0] for n in names} == {"wsfusion"}
    for required in ("__init__.py", "metadata.txt", "icon.png", "plugin.py", "provider.py",
                     "fuse_algorithm.py", "dependencies.py", "wsfusion_core/__init__.py",
                     "wsfusion_core/model.py", "wsfusion_core/weights.py"):
        assert f"wsfusion/{required}" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    shipped = REPO / "wsfusion_core" / "data" / "weights" / "default.safetensors"
    if shipped.is_file():
        assert "wsfusion/wsfusion_core/data/weights/default.safetensors" in names
    with zipfile.ZipFile(plugin_zip) as z:
        meta = z.read("wsfusion/metadata.txt").decode()
    assert "qgisMinimumVersion=3.22" in meta and "hasProcessingProvider=yes" in meta


def test_qgis_process_lists_the_algorithm(profile):
    proc = _qgis_process(profile, ["list"], site=True)
    assert proc.returncode == 0, proc.stderr
    assert "wsfusion:fuse" in proc.stdout and "Fuse overhead images" in proc.stdout


def test_qgis_process_runs_fuse_from_the_zip(profile, tmp_path, tiny_weights):
    import rasterio

    rng = np.random.default_rng(3)
    img = rng.integers(1, 255, size=(3, 60, 70), dtype=np.uint8)
    cloudy = img.copy()
    cloudy[:, 5:30, 10:40] = 250
    a = write_raster(tmp_path / "a.tif", cloudy, nodata=0, origin=(500000.0, 4100000.0))
    # b.tif is in the neighbouring UTM zone: the core warps it and reprojects footprints with
    # rasterio's PROJ (no pyproj), which must not crash QGIS at exit
    b = write_raster(tmp_path / "b.tif", img, nodata=0, crs="EPSG:32617",
                     origin=(1033801.9 - 100, 4116874.0 + 100))
    out = tmp_path / "out.tif"
    args = ["run", "wsfusion:fuse", "--", f"INPUTS={a}", f"INPUTS={b}", f"OUTPUT={out}"]
    shipped = profile / "profiles/default/python/plugins/wsfusion/wsfusion_core/data/weights"
    if not (shipped / "default.safetensors").is_file():  # no trained model shipped in this build
        args.append(f"WEIGHTS={tiny_weights}")
    proc = _qgis_process(profile, args, site=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the bundled core ran, not the repo's editable install
    bundled = profile / "profiles" / "default" / "python" / "plugins" / "wsfusion" / "wsfusion_core"
    assert f"from {bundled}" in proc.stdout, proc.stdout[-3000:]
    assert "b.tif: warped" in proc.stdout, proc.stdout[-3000:]
    with rasterio.open(out) as dst, rasterio.open(a) as src:
        assert (dst.crs, dst.transform, dst.width, dst.height) == \
            (src.crs, src.transform, src.width, src.height)
        assert dst.count == 3 and dst.read().max() > 0


def test_missing_packages_fail_with_the_install_command(profile, tmp_path):
    """Without the venv on PYTHONPATH, QGIS's Python has no torch: the algorithm is still listed,
    and running it says exactly how to install what is missing."""
    probe = subprocess.run(["/usr/bin/python3", "-c", "import torch"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("QGIS's system Python has torch: nothing is missing")
    listed = _qgis_process(profile, ["list"], site=False)
    assert "wsfusion:fuse" in listed.stdout, listed.stderr[-2000:]
    a = write_raster(tmp_path / "a.tif", np.full((3, 20, 20), 9, np.uint8))
    out = tmp_path / "out.tif"
    proc = _qgis_process(profile, ["run", "wsfusion:fuse", "--", f"INPUTS={a}", f"OUTPUT={out}",
                                   "METHOD=0"], site=False, cwd=tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    installer = profile / "profiles/default/python/plugins/wsfusion/dependencies.py"
    assert "torch" in text and f"{installer} --target" in text, text[-3000:]
    assert "Install Python dependencies" in text
    assert not out.exists()
