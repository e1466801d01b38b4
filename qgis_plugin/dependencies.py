"""Finds, explains and installs the Python packages wsfusion needs inside QGIS's own Python.

Why this exists: QGIS ships its own Python whose GDAL bindings were compiled against one numpy;
a plain ``pip install torch rasterio`` can pull numpy 2 and break ``osgeo`` (and QGIS with it).
So the installer writes a constraints file that pins every package QGIS's Python already has
(numpy first), installs only into a plugin-private folder, and prunes from that folder any
package QGIS already provides, so nothing QGIS relies on is ever shadowed.

No ``qgis`` import at module level: the checks are plain Python and testable without QGIS.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Callable, Iterable, Sequence

# import name -> (distribution name, minimum version); what wsfusion_core imports at run time.
REQUIREMENTS: dict[str, tuple[str, str]] = {
    "numpy": ("numpy", "1.22"),
    "torch": ("torch", "2.1"),
    "rasterio": ("rasterio", "1.3"),
    "shapely": ("shapely", "2.0"),
    "safetensors": ("safetensors", "0.4"),
}
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Never pinned (we are installing them, or pins on them only get in the way).
_NEVER_PIN = {"pip", "setuptools", "wheel", "wsfusion"}
_PEP440 = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[a-z0-9.]+)?$", re.I)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in re.split(r"[.+]", text):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def private_dir(settings_dir: str | os.PathLike | None = None) -> Path:
    """The plugin-private package folder for this QGIS profile and Python minor version.

    It lives in the profile (not the plugin folder) so that updating the plugin keeps it.
    """
    if settings_dir is None:
        try:
            from qgis.core import QgsApplication

            settings_dir = QgsApplication.qgisSettingsDirPath() if QgsApplication.instance() \
                else None
        except Exception:
            settings_dir = None
    if not settings_dir:  # outside QGIS (run as a script): the profile this plugin sits in
        here = Path(__file__).resolve().parent
        if here.parent.name == "plugins" and here.parent.parent.name == "python":
            settings_dir = here.parents[2]
        else:
            settings_dir = Path.home() / ".wsfusion"
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    return Path(settings_dir) / "python" / "wsfusion_deps" / tag


def activate_private_dir(path: str | os.PathLike | None = None) -> Path | None:
    """Put the private folder on ``sys.path`` (front) if it exists; it only ever holds packages
    QGIS lacks (the installer prunes the rest), so putting it first cannot shadow QGIS's numpy."""
    path = Path(path) if path is not None else private_dir()
    if not path.is_dir():
        return None
    text = str(path)
    if text not in sys.path:
        sys.path.insert(0, text)
        importlib.invalidate_caches()
    return path


def _installed_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def missing(import_modules: bool = False) -> list[str]:
    """Requirements (import names) that are absent, too old or, with ``import_modules``, that
    fail to import (e.g. a wheel built against another numpy). Without it the check is cheap."""
    out = []
    for module, (dist, minimum) in REQUIREMENTS.items():
        if importlib.util.find_spec(module) is None:
            out.append(module)
            continue
        version = _installed_version(dist)
        if version is not None and _version_tuple(version) < _version_tuple(minimum):
            out.append(module)
            continue
        if import_modules:
            try:
                importlib.import_module(module)
            except Exception:  # ImportError, or numpy ABI RuntimeError/AttributeError
                out.append(module)
    return out


def import_error_details(module: str) -> str:
    """The first line of the error importing ``module`` (or '' if it imports)."""
    try:
        importlib.import_module(module)
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
    return ""


def python_executable() -> str:
    """The Python interpreter behind this QGIS.

    Inside QGIS ``sys.executable`` is unreliable: an embedded interpreter guesses it by searching
    PATH for "python3" (and may find e.g. a pyenv shim for another Python). So a venv's own
    interpreter comes first, then the interpreter installed beside this Python's library.
    """
    exe = Path(sys.executable) if sys.executable else None
    if sys.prefix != sys.base_prefix and exe is not None and exe.is_file():
        return str(exe)  # a virtual environment (e.g. the project's .venv with QGIS visible)
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = []
    bindir = sysconfig.get_config_var("BINDIR")  # compiled in: right even when embedded
    if bindir:
        candidates += [Path(bindir) / f"python{ver}", Path(bindir) / "python3"]
    for prefix in dict.fromkeys([sys.base_exec_prefix, sys.exec_prefix, sys.prefix]):
        p = Path(prefix)
        candidates += [p / "python.exe", p / "python3.exe",  # Windows / OSGeo4W
                       p / "bin" / f"python{ver}", p / "bin" / "python3"]  # Linux, macOS
    if exe is not None and exe.name.lower().startswith("python"):
        candidates.append(exe)
    for c in candidates:
        if c.is_file():
            return str(c)
    return shutil.which(f"python{ver}") or shutil.which("python3") or "python3"


def pinned_versions(exclude: Iterable[str] = ()) -> list[str]:
    """``name==version`` for every package this Python already has, numpy first.

    numpy's version comes from the module that actually imports (a venv can hold a newer numpy
    than the system's), other packages from their metadata, first hit on ``sys.path`` wins.
    """
    skip = {_canonical(n) for n in exclude} | _NEVER_PIN
    pins: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if not name or _canonical(name) in skip or _canonical(name) in pins:
            continue
        if _PEP440.match(dist.version or ""):  # pip rejects a whole file with one bad version
            pins[_canonical(name)] = f"{name}=={dist.version}"
    numpy_version = _imported_numpy_version()
    if numpy_version and "numpy" not in skip:
        pins["numpy"] = f"numpy=={numpy_version}"
    first = [pins.pop("numpy")] if "numpy" in pins else []
    return first + sorted(pins.values(), key=str.lower)


def _imported_numpy_version() -> str | None:
    try:
        import numpy

        return numpy.__version__
    except Exception:
        return _installed_version("numpy")


def write_constraints(path: str | os.PathLike, pins: Sequence[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ("# Generated by the wsfusion QGIS plugin: the packages QGIS's Python already has.\n"
              "# numpy is pinned first: QGIS's GDAL bindings were built against it.\n")
    path.write_text(header + "\n".join(pins) + "\n")
    return path


def requirement_specs(modules: Iterable[str]) -> list[str]:
    return [f"{REQUIREMENTS[m][0]}>={REQUIREMENTS[m][1]}" for m in modules]


def install_command(modules: Sequence[str], target: str | os.PathLike,
                    constraints: str | os.PathLike, torch_cpu: bool = True,
                    extra_args: Sequence[str] = ()) -> list[str]:
    """The pip command line that installs ``modules`` into ``target`` under ``constraints``."""
    cmd = [python_executable(), "-m", "pip", "install", "--upgrade", "--target", str(target),
           "--constraint", str(constraints)]
    if torch_cpu and "torch" in modules:
        cmd += ["--extra-index-url", TORCH_CPU_INDEX]
    cmd += list(extra_args)
    return cmd + requirement_specs(modules)


def format_command(cmd: Sequence[str]) -> str:
    if os.name == "nt":
        return subprocess.list2cmdline(list(cmd))
    return shlex.join(cmd)


def prepare(target: str | os.PathLike | None = None, modules: Sequence[str] | None = None,
            torch_cpu: bool = True) -> tuple[list[str], list[str]]:
    """Write the constraints file beside ``target``; return (missing modules, pip command)."""
    target = Path(target) if target is not None else private_dir()
    modules = list(missing(import_modules=True) if modules is None else modules)
    dists = [REQUIREMENTS[m][0] for m in modules]
    constraints = write_constraints(target.parent / f"{target.name}-constraints.txt",
                                    pinned_versions(exclude=dists))
    return modules, install_command(modules, target, constraints, torch_cpu=torch_cpu)


def shell_command(target: str | os.PathLike | None = None) -> list[str]:
    """The one command a user can paste into a terminal: this file run by QGIS's own Python,
    doing what the installer algorithm does (pins, numpy-only retry, pruning)."""
    target = Path(target) if target is not None else private_dir()
    return [python_executable(), str(Path(__file__).resolve()), "--target", str(target)]


def missing_message(modules: Sequence[str]) -> str:
    """One clear message: what is missing and the exact command that installs it for this QGIS."""
    details = "; ".join(f"{m} ({import_error_details(m) or 'too old'})" for m in modules)
    return (
        f"wsfusion needs Python packages this QGIS does not have: {details}. "
        "Install them with the 'wsfusion ▸ Install Python dependencies' Processing algorithm "
        "(or the Raster ▸ wsfusion menu), or run this command in a terminal; it pip-installs them "
        "into a private folder with QGIS's own numpy pinned, no restart needed: "
        + format_command(shell_command())
    )


def _prune_provided(target: Path, provided: dict[str, str], log: Callable[[str], None]) -> None:
    """Delete from ``target`` the exact versions QGIS already has, so they cannot shadow them
    (a newer version pip needed, e.g. after the numpy-only retry, stays)."""
    for dist in metadata.distributions(path=[str(target)]):
        name = dist.metadata.get("Name") or ""
        if provided.get(_canonical(name)) != dist.version:
            continue
        for f in dist.files or []:
            p = Path(str(dist.locate_file(f)))
            try:
                if target in p.resolve().parents:
                    p.unlink(missing_ok=True)
            except OSError:
                pass
        log(f"kept QGIS's own {name} (removed the duplicate from the private folder)")
    for d in sorted(target.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()


def install(target: str | os.PathLike | None = None, modules: Sequence[str] | None = None,
            torch_cpu: bool = True, extra_args: Sequence[str] = (),
            log: Callable[[str], None] = print, cancel: Callable[[], bool] | None = None) -> Path:
    """pip-install the missing requirements into the private folder and activate it.

    If pip cannot satisfy the full set of pins (e.g. torch needs a newer sympy than QGIS's),
    it retries with numpy alone pinned. Raises RuntimeError with pip's last lines on failure.
    """
    target = Path(target) if target is not None else private_dir()
    modules = list(missing(import_modules=True) if modules is None else modules)
    if not modules:
        log("all wsfusion dependencies are already importable; nothing to install")
        return target
    dists = [REQUIREMENTS[m][0] for m in modules]
    all_pins = pinned_versions(exclude=dists)
    numpy_only = [p for p in all_pins if p.lower().startswith("numpy==")]
    constraints = target.parent / f"{target.name}-constraints.txt"
    target.mkdir(parents=True, exist_ok=True)
    tail: list[str] = []
    for pins in (all_pins, numpy_only):
        write_constraints(constraints, pins)
        cmd = install_command(modules, target, constraints, torch_cpu, extra_args)
        log("running: " + format_command(cmd))
        code, tail = _run(cmd, log, cancel)
        if code == 0:
            break
        pin_trouble = any(w in t.lower() for t in tail
                          for w in ("resolutionimpossible", "conflict", "invalid", "constraint"))
        if pins is numpy_only or not pin_trouble:
            raise RuntimeError("pip failed: " + " | ".join(tail[-5:]))
        log("the full set of pins conflicts with these packages; retrying with numpy pinned only")
    provided = dict(p.split("==", 1) for p in all_pins)
    provided = {_canonical(k): v for k, v in provided.items()}
    _prune_provided(target, provided, log)
    activate_private_dir(target)
    log(f"installed {', '.join(dists)} into {target}")
    return target


def _run(cmd: Sequence[str], log: Callable[[str], None],
         cancel: Callable[[], bool] | None) -> tuple[int, list[str]]:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            log(line)
            tail = (tail + [line])[-40:]
        if cancel is not None and cancel():
            proc.kill()
            proc.wait()
            raise RuntimeError("installation cancelled")
    return proc.wait(), tail


def main(argv: Sequence[str] | None = None) -> int:
    """``python dependencies.py --target DIR``: install what is missing, as the algorithm does."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--target", type=Path, default=None, help="private package folder")
    parser.add_argument("--cuda", action="store_true",
                        help="PyPI's default torch build (CUDA on Linux) instead of CPU-only")
    parser.add_argument("--pip-args", default="", help="extra pip arguments, one string")
    args = parser.parse_args(argv)
    activate_private_dir(args.target)  # what an earlier run installed already counts
    try:
        folder = install(args.target, torch_cpu=not args.cuda,
                         extra_args=shlex.split(args.pip_args))
    except (RuntimeError, OSError) as exc:
        print(f"wsfusion: installing dependencies failed: {exc}", file=sys.stderr)
        return 1
    print(f"wsfusion: dependencies are in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
