"""The dependency check, the exact install command, and the private-folder installer (run for
real with pip, offline, on wheels built here)."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy
import pytest

from qgis_plugin import dependencies


def _wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel (what pip needs and no more)."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\n"
                            f"Name: {name}\nVersion: {version}\n"
                            + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: wsfusion-tests\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{p},,\n" for p in files) + f"{info}/RECORD,,\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, text in files.items():
            z.writestr(p, text)
    return path


def test_everything_present_in_this_environment():
    assert dependencies.missing(import_modules=True) == []


def test_pins_start_with_the_numpy_that_imports():
    pins = dependencies.pinned_versions()
    assert pins[0] == f"numpy=={numpy.__version__}"
    names = [p.split("==")[0].lower() for p in pins]
    assert len(names) == len(set(names))
    assert "pip" not in names and "wsfusion" not in names
    without_torch = dependencies.pinned_versions(exclude=["torch"])
    assert "torch" not in [p.split("==")[0] for p in without_torch]


def test_install_command_is_exact(tmp_path):
    modules, cmd = dependencies.prepare(tmp_path / "deps", modules=["torch", "rasterio"])
    assert modules == ["torch", "rasterio"]
    assert Path(cmd[0]).name.startswith("python") and Path(cmd[0]).is_file()
    assert cmd[1:4] == ["-m", "pip", "install"]
    assert cmd[cmd.index("--target") + 1] == str(tmp_path / "deps")
    constraints = Path(cmd[cmd.index("--constraint") + 1])
    assert constraints.read_text().count("numpy==") == 1
    assert "torch>=2.1" in cmd and "rasterio>=1.3" in cmd
    assert dependencies.TORCH_CPU_INDEX in cmd
    text = dependencies.format_command(cmd)
    assert "--constraint" in text and str(constraints) in text


def test_installer_installs_only_what_is_missing(tmp_path, monkeypatch):
    """pip really runs (offline): the new package lands in the private folder and imports; a
    dependency QGIS's Python already has at the pinned version is pruned, not duplicated."""
    import iniconfig  # present in the test environment: stands for a package QGIS ships

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    from importlib.metadata import version

    _wheel(wheels, "wsfdemo", "0.3", requires=("iniconfig",))
    _wheel(wheels, "iniconfig", version("iniconfig"))
    monkeypatch.setitem(dependencies.REQUIREMENTS, "wsfdemo", ("wsfdemo", "0.2"))
    target = tmp_path / "profile" / "wsfusion_deps" / "py3"
    log: list[str] = []
    before = list(sys.path)
    try:
        folder = dependencies.install(target, modules=["wsfdemo"], log=log.append,
                                      extra_args=["--no-index", "--find-links", str(wheels)])
        assert folder == target and sys.path[0] == str(target)
        # the terminal command's entry point finds nothing left to do
        assert dependencies.main(["--target", str(target), "--pip-args=--no-index"]) == 0
        import wsfdemo

        assert Path(wsfdemo.__file__).parent.parent == target
        assert dependencies.missing(import_modules=True) == []
    finally:
        sys.path[:] = before
        sys.modules.pop("wsfdemo", None)
    assert not (target / "iniconfig").exists(), "a package QGIS has was duplicated"
    assert Path(iniconfig.__file__).parent.parent != target
    assert any("kept QGIS's own iniconfig" in line for line in log)
    assert (tmp_path / "profile" / "wsfusion_deps" / "py3-constraints.txt").is_file()


def test_installer_retries_with_numpy_only_when_pins_conflict(tmp_path, monkeypatch):
    """Like torch needing a newer sympy than Debian's: the full pins cannot be met, so the
    installer retries with numpy alone pinned, and keeps the newer version it had to install."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "wsfdemo3", "1.0", requires=("iniconfig>=99",))
    _wheel(wheels, "iniconfig", "99.0")
    monkeypatch.setitem(dependencies.REQUIREMENTS, "wsfdemo3", ("wsfdemo3", "1.0"))
    target = tmp_path / "deps"
    log: list[str] = []
    before = list(sys.path)
    try:
        dependencies.install(target, modules=["wsfdemo3"], log=log.append,
                             extra_args=["--no-index", "--find-links", str(wheels)])
    finally:
        sys.path[:] = before
    assert any("retrying with numpy pinned only" in line for line in log)
    assert (target / "wsfdemo3").is_dir() and (target / "iniconfig").is_dir()
    constraints = (tmp_path / "deps-constraints.txt").read_text().splitlines()
    assert [c for c in constraints if not c.startswith("#")] == [f"numpy=={numpy.__version__}"]


def test_installer_reports_pip_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(dependencies.REQUIREMENTS, "wsfnothing", ("wsfnothing", "1.0"))
    with pytest.raises(RuntimeError, match="pip failed"):
        dependencies.install(tmp_path / "deps", modules=["wsfnothing"], log=lambda _: None,
                             extra_args=["--no-index", "--find-links", str(tmp_path)])
    code = dependencies.main(["--target", str(tmp_path / "deps"),
                              f"--pip-args=--no-index --find-links {tmp_path}"])
    assert code == 1 and "installing dependencies failed" in capsys.readouterr().err


def test_private_folder_is_activated_at_plugin_load(tmp_path, monkeypatch):
    folder = tmp_path / "py"
    assert dependencies.activate_private_dir(folder) is None  # absent: nothing happens
    folder.mkdir()
    before = list(sys.path)
    try:
        assert dependencies.activate_private_dir(folder) == folder
        assert sys.path[0] == str(folder)
        dependencies.activate_private_dir(folder)
        assert sys.path.count(str(folder)) == 1
    finally:
        sys.path[:] = before


def test_install_algorithm_through_processing(plugin, tmp_path, monkeypatch):
    """The toolbox installer end to end: processing.run → pip (offline) → package importable."""
    import processing
    from qgis.core import QgsProcessingFeedback

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "wsfdemo2", "1.0")
    monkeypatch.setitem(dependencies.REQUIREMENTS, "wsfdemo2", ("wsfdemo2", "1.0"))
    target = tmp_path / "profile" / "python" / "wsfusion_deps" / "py3"
    monkeypatch.setattr(dependencies, "private_dir", lambda settings_dir=None: target)
    lines: list[str] = []

    class Feedback(QgsProcessingFeedback):
        def pushConsoleInfo(self, text):  # noqa: N802 (QGIS's name)
            lines.append(text)

    before = list(sys.path)
    try:
        result = processing.run("wsfusion:install_dependencies",
                                {"PIP_ARGS": f"--no-index --find-links {wheels}"},
                                feedback=Feedback())
        import wsfdemo2

        assert Path(wsfdemo2.__file__).parent.parent == target
    finally:
        sys.path[:] = before
        sys.modules.pop("wsfdemo2", None)
    assert result["FOLDER"] == str(target)
    assert any(line.startswith("running: ") and "--constraint" in line for line in lines)
