"""The dependency check, the exact pip commands, and the private-folder installer (run for real
with pip, offline, on wheels built here): plan, no shadowing, progress, cancel, CPU-only."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
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


def test_composites_need_no_torch():
    for method in ("mean", "median", "min-blue"):
        assert "torch" not in dependencies.required_modules(method)
        assert "safetensors" not in dependencies.required_modules(method)
    assert "torch" in dependencies.required_modules("learned")


def test_only_numpy_and_c_linked_packages_are_pinned():
    """Pinning pure-Python system packages (sympy, jinja2...) is what sent pip backtracking
    through every torch release; only numpy and what links GDAL/PROJ/GEOS keep QGIS's version."""
    pins = dependencies.pinned_versions()
    assert pins[0] == f"numpy=={numpy.__version__}"
    names = [p.split("==")[0] for p in pins]
    assert set(names) <= set(dependencies.PIN_IF_PRESENT)
    assert not {"sympy", "jinja2", "setuptools", "attrs", "certifi"} & set(names)
    assert "numpy" not in [p.split("==")[0] for p in dependencies.pinned_versions(["numpy"])]


def test_commands_are_exact(tmp_path):
    plan = dependencies.plan_command(["torch", "rasterio"], tmp_path / "deps", tmp_path / "c.txt",
                                     tmp_path / "plan.json", torch_cpu=True)
    assert Path(plan[0]).name.startswith("python") and Path(plan[0]).is_file()
    assert {"--dry-run", "--report", "--constraint"} <= set(plan)
    assert plan[plan.index("--index-url") + 1] == dependencies.TORCH_CPU_INDEX
    assert plan[plan.index("--extra-index-url") + 1] == dependencies.PYPI_INDEX
    assert "torch>=2.1" in plan and "rasterio>=1.3" in plan
    assert str(tmp_path / "deps") in plan  # the private folder counts as installed
    cuda = dependencies.plan_command(["torch"], tmp_path / "d", "c", "r", torch_cpu=False)
    assert "--index-url" not in cuda
    no_torch = dependencies.plan_command(["rasterio"], tmp_path / "d", "c", "r", torch_cpu=True)
    assert "--index-url" not in no_torch
    mirror = dependencies.plan_command(["torch"], tmp_path / "d", "c", "r", torch_cpu=True,
                                       extra_args=["--index-url", "https://mirror/simple"])
    assert mirror.count("--index-url") == 1 and "https://mirror/simple" in mirror
    pkgs = [dependencies.Package("torch", "2.13.0+cpu", "file:///w/torch.whl")]
    install = dependencies.install_command(pkgs, tmp_path / "deps")
    assert install[-1] == "torch @ file:///w/torch.whl"
    assert {"--no-deps", "--target"} <= set(install)


def test_installer_installs_only_what_is_missing(tmp_path, monkeypatch):
    """pip really runs (offline): the plan is resolved against this Python, so a dependency it
    already has (iniconfig) is not installed again; the new package lands in the folder."""
    import iniconfig  # present in the test environment: stands for a package QGIS ships

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    from importlib.metadata import version

    _wheel(wheels, "wsfdemo", "0.3", requires=("iniconfig",))
    _wheel(wheels, "iniconfig", version("iniconfig"))
    monkeypatch.setitem(dependencies.REQUIREMENTS, "wsfdemo", ("wsfdemo", "0.2"))
    target = tmp_path / "profile" / "wsfusion_deps" / "py3"
    log: list[str] = []
    steps: list[float] = []
    before = list(sys.path)
    try:
        folder = dependencies.install(target, modules=["wsfdemo"], log=log.append,
                                      progress=steps.append,
                                      extra_args=["--no-index", "--find-links", str(wheels)])
        assert folder == target and sys.path[-1] == str(target)  # appended, never first
        # the terminal command's entry point finds nothing left to do
        assert dependencies.main(["--target", str(target), "--pip-args=--no-index"]) == 0
        import wsfdemo

        assert Path(wsfdemo.__file__).parent.parent == target
        assert dependencies.missing(import_modules=True) == []
    finally:
        sys.path[:] = before
        sys.modules.pop("wsfdemo", None)
    assert not (target / "iniconfig").exists(), "a package this Python has was installed again"
    assert Path(iniconfig.__file__).parent.parent != target
    assert any(line.startswith("to install into") and "wsfdemo 0.3" in line for line in log)
    assert steps == sorted(steps) and steps[-1] == 1.0 and len(steps) >= 4, steps
    assert sorted(p.name for p in target.parent.iterdir()) == ["py3"], "pip's work files left"


def test_newer_dependency_is_installed_but_never_shadows(tmp_path, monkeypatch):
    """Like torch needing a newer sympy than Debian's: the newer copy goes into the folder, but
    the folder comes after this Python's packages, so importing it still finds the system copy."""
    import iniconfig

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "wsfdemo3", "1.0", requires=("iniconfig>=99",))
    _wheel(wheels, "iniconfig", "99.0")
    monkeypatch.setitem(dependencies.REQUIREMENTS, "wsfdemo3", ("wsfdemo3", "1.0"))
    target = tmp_path / "deps"
    before = list(sys.path)
    try:
        dependencies.install(target, modules=["wsfdemo3"], log=lambda _: None,
                             extra_args=["--no-index", "--find-links", str(wheels)])
        assert (target / "wsfdemo3").is_dir() and (target / "iniconfig").is_dir()
        spec = importlib.util.find_spec("iniconfig")
        assert spec is not None and Path(spec.origin) == Path(iniconfig.__file__)
    finally:
        sys.path[:] = before


def test_installer_reports_pip_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(dependencies.REQUIREMENTS, "wsfnothing", ("wsfnothing", "1.0"))
    with pytest.raises(RuntimeError, match="could not resolve.*wsfnothing"):
        dependencies.install(tmp_path / "deps", modules=["wsfnothing"], log=lambda _: None,
                             extra_args=["--no-index", "--find-links", str(tmp_path)])
    code = dependencies.main(["--target", str(tmp_path / "deps"), "--only", "wsfnothing",
                              f"--pip-args=--no-index --find-links {tmp_path}"])
    assert code == 1 and "installing dependencies failed" in capsys.readouterr().err
    assert not (tmp_path / "deps").exists()


def test_cancel_kills_pip_and_leaves_nothing(tmp_path, monkeypatch):
    """Cancel while pip is still silent: its process tree is killed at once, no debris."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "wsfdemo4", "1.0")
    monkeypatch.setitem(dependencies.REQUIREMENTS, "wsfdemo4", ("wsfdemo4", "1.0"))
    target = tmp_path / "profile" / "py3"
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="cancelled"):
        dependencies.install(target, modules=["wsfdemo4"], log=lambda _: None,
                             cancel=lambda: time.perf_counter() - started > 0.3,
                             extra_args=["--no-index", "--find-links", str(wheels)])
    assert list((tmp_path / "profile").iterdir()) == []
    assert not any(p.name == "wsfdemo4" for p in tmp_path.rglob("*") if "wheels" not in p.parts)


def test_cpu_only_fails_in_one_sentence_when_the_cpu_index_is_unreachable(tmp_path, monkeypatch):
    """Never a silent fallback to PyPI's CUDA torch (5 GB): nothing is run, nothing installed."""
    monkeypatch.setattr(dependencies, "TORCH_CPU_INDEX", "http://127.0.0.1:9/whl/cpu")
    with pytest.raises(RuntimeError, match=r"CPU wheel index http://127\.0\.0\.1:9/whl/cpu "
                                           r"cannot be reached.*nothing was installed"):
        dependencies.install(tmp_path / "deps", modules=["torch"], log=lambda _: None)
    assert not (tmp_path / "deps").exists()


def test_cpu_only_refuses_a_torch_that_is_not_a_cpu_build(tmp_path, monkeypatch):
    """A wheel folder (or an index) offering only a CUDA-style torch: refused before install."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "torch", "2.14.0")  # within any torch<=2.14.1 cap in pip.conf
    monkeypatch.setitem(dependencies.REQUIREMENTS, "torch", ("torch", "2.14"))
    with pytest.raises(RuntimeError, match="not a CPU build"):
        dependencies.install(tmp_path / "deps", modules=["torch"], log=lambda _: None,
                             extra_args=["--no-index", "--find-links", str(wheels)])
    assert not (tmp_path / "deps").exists()


def test_nvidia_gpu_detection_matches_this_machine(plugin):
    smi = shutil.which("nvidia-smi")
    proc_gpus = list(Path("/proc/driver/nvidia/gpus").glob("*"))
    gpus = dependencies.nvidia_gpus()
    if not smi and not proc_gpus:
        assert gpus == []
    else:
        assert gpus, "an NVIDIA driver is present but no GPU was detected"
    alg = plugin.provider.algorithm("install_dependencies")
    assert alg.parameterDefinition("TORCH_CPU").defaultValue() is (not gpus)


def test_private_folder_is_activated_at_plugin_load(tmp_path, monkeypatch):
    folder = tmp_path / "py"
    assert dependencies.activate_private_dir(folder) is None  # absent: nothing happens
    folder.mkdir()
    before = list(sys.path)
    try:
        assert dependencies.activate_private_dir(folder) == folder
        assert sys.path[-1] == str(folder)
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
    progress: list[float] = []

    class Feedback(QgsProcessingFeedback):
        def pushConsoleInfo(self, text):  # noqa: N802 (QGIS's name)
            lines.append(text)

    feedback = Feedback()
    feedback.progressChanged.connect(progress.append)

    before = list(sys.path)
    try:
        result = processing.run("wsfusion:install_dependencies",
                                {"PIP_ARGS": f"--no-index --find-links {wheels}"},
                                feedback=feedback)
        import wsfdemo2

        assert Path(wsfdemo2.__file__).parent.parent == target
    finally:
        sys.path[:] = before
        sys.modules.pop("wsfdemo2", None)
    assert result["FOLDER"] == str(target)
    assert any(line.startswith("resolving against") and "--constraint" in line
               for line in lines)
    assert any(line.startswith("running: ") and "--no-deps" in line for line in lines)
    assert progress and progress[-1] == 100.0 and len(set(progress)) >= 4, progress
