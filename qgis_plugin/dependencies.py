"""Finds, explains and installs the Python packages wsfusion needs inside QGIS's own Python.

Why this exists: QGIS ships its own Python whose GDAL bindings were compiled against one numpy;
a plain ``pip install torch rasterio`` can pull numpy 2 and break ``osgeo`` (and QGIS with it).

How it avoids the traps users meet with ML plugins:

* **Resolve against QGIS's packages, pin only what must not move.** A dry run of pip (``--dry-run
  --report``) against QGIS's own Python says which distributions are missing or too old; only
  those are installed (``--no-deps``, from the exact files the dry run chose). Only numpy and the
  packages that link QGIS's C libraries (GDAL, PROJ, GEOS) are pinned: pinning pure-Python
  system packages (sympy, jinja2, ...) only makes pip backtrack through every torch release.
* **Never shadow QGIS.** The private folder is *appended* to ``sys.path``: a module QGIS has
  (imported or not) keeps resolving to QGIS's copy; the folder only supplies what QGIS lacks.
* **CPU-only means CPU-only.** The PyTorch CPU wheel index is the index and PyPI the extra one;
  if that index cannot be reached, or the plan holds a torch that is not a CPU build, nothing is
  installed and one sentence says why. The CUDA build is offered when an NVIDIA GPU is detected.
* **Progress and cancel.** One step per package; cancel kills pip's whole process tree, and
  pip's temporary files live in a folder that is removed on every exit path.

No ``qgis`` import at module level: the checks are plain Python and testable without QGIS.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import importlib.util
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
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
# The composites (mean, median, min-blue) read, align and write rasters: no network, no model.
COMPOSITE_MODULES = ("numpy", "rasterio", "shapely")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYPI_INDEX = "https://pypi.org/simple"
# Pinned to QGIS's version when QGIS's Python has them: numpy (GDAL's bindings were compiled
# against it) and the packages that link QGIS's own C libraries (GDAL, PROJ, GEOS).
PIN_IF_PRESENT = ("numpy", "gdal", "pyproj", "shapely", "fiona", "rasterio")

# (cap, dependency, version): releases whose metadata under-declares a dependency. With the
# folder after QGIS's packages, QGIS's older copy of the dependency is the one imported, so the
# cap applies whenever QGIS's copy is older than the version that works. affine 3 declares
# attrs>=21.3 but needs attrs>=23.2 (cached_property on slotted classes): with Debian 12's attrs
# 22.2 every rasterio transform fails with "No '__dict__' attribute on 'Affine' instance".
COMPAT_CAPS = (("affine<3", "attrs", "23.2"),)

Log = Callable[[str], None]
Progress = Callable[[float], None]


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
    """Append the private folder to ``sys.path`` if it exists.

    Appended, not prepended: every package QGIS's Python has keeps resolving to QGIS's copy
    (whether QGIS imported it already or imports it later); the folder only adds what is absent.
    """
    path = Path(path) if path is not None else private_dir()
    if not path.is_dir():
        return None
    text = str(path)
    if text not in sys.path:
        sys.path.append(text)
        importlib.invalidate_caches()
    return path


def _installed_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def required_modules(method: str = "learned") -> tuple[str, ...]:
    """The import names a fusion method needs: the composites run without torch."""
    from wsfusion_core.options import COMPOSITES  # numpy-free; bundled beside the plugin

    return COMPOSITE_MODULES if method in COMPOSITES else tuple(REQUIREMENTS)


def missing(import_modules: bool = False, modules: Iterable[str] | None = None) -> list[str]:
    """Requirements (import names) that are absent, too old or, with ``import_modules``, that
    fail to import (e.g. a wheel built against another numpy). Without it the check is cheap."""
    out = []
    for module in REQUIREMENTS if modules is None else modules:
        dist, minimum = REQUIREMENTS[module]
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
    """``name==version`` for numpy and the C-library-linked packages QGIS's Python has.

    numpy's version comes from the module that actually imports (a venv can hold a newer numpy
    than the system's). Pure-Python packages are never pinned: torch needs newer ones than
    QGIS ships, and since the private folder comes after QGIS's, a newer copy cannot shadow.
    """
    skip = {_canonical(n) for n in exclude}
    pins = []
    for name in PIN_IF_PRESENT:
        if name in skip:
            continue
        version = _imported_numpy_version() if name == "numpy" else _installed_version(name)
        if version:
            pins.append(f"{name}=={version}")
    return pins


def compat_caps() -> list[str]:
    """The COMPAT_CAPS that apply to QGIS's Python (its dependency copy is too old)."""
    out = []
    for cap, dependency, works_from in COMPAT_CAPS:
        version = _installed_version(dependency)
        if version is not None and _version_tuple(version) < _version_tuple(works_from):
            out.append(cap)
    return out


def _imported_numpy_version() -> str | None:
    try:
        import numpy

        return numpy.__version__
    except Exception:
        return _installed_version("numpy")


def write_constraints(path: str | os.PathLike, pins: Sequence[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ("# Generated by the wsfusion QGIS plugin: numpy and the packages linked to QGIS's\n"
              "# GDAL/PROJ/GEOS stay at QGIS's versions; nothing else is pinned.\n")
    path.write_text(header + "\n".join(pins) + "\n")
    return path


def requirement_specs(modules: Iterable[str]) -> list[str]:
    return [f"{REQUIREMENTS[m][0]}>={REQUIREMENTS[m][1]}" for m in modules]


def index_args(modules: Sequence[str], torch_cpu: bool) -> list[str]:
    """CPU-only: the PyTorch CPU index first, PyPI for the rest. Otherwise PyPI's defaults."""
    if torch_cpu and "torch" in modules:
        return ["--index-url", TORCH_CPU_INDEX, "--extra-index-url", PYPI_INDEX]
    return []


def _own_index(extra_args: Sequence[str]) -> bool:
    """The user chose the sources (offline wheel folder, a mirror): keep out of their way; the
    plan's torch must still be a CPU build when CPU-only is asked for."""
    return any(a == "--no-index" or a in ("-i", "--index-url") or a.startswith("--index-url=")
               for a in extra_args)


def _proxy(extra_args: Sequence[str]) -> str | None:
    for i, a in enumerate(extra_args):
        if a == "--proxy" and i + 1 < len(extra_args):
            return extra_args[i + 1]
        if a.startswith("--proxy="):
            return a.split("=", 1)[1]
    return None


def _pip(args: Sequence[str], append_path: str | os.PathLike | None = None) -> list[str]:
    """``python -m pip ARGS`` for QGIS's Python, optionally seeing ``append_path`` as installed
    after its own site-packages (as QGIS sees the private folder)."""
    if append_path is None:
        return [python_executable(), "-m", "pip", *args]
    code = ("import runpy, sys; sys.path.append(sys.argv.pop(1)); sys.argv[0] = 'pip'; "
            "runpy.run_module('pip', run_name='__main__', alter_sys=True)")
    return [python_executable(), "-c", code, str(append_path), *args]


def plan_command(modules: Sequence[str], target: str | os.PathLike, constraints: str | os.PathLike,
                 report: str | os.PathLike, torch_cpu: bool = True,
                 extra_args: Sequence[str] = ()) -> list[str]:
    """The pip dry run that resolves ``modules`` against what QGIS's Python (plus the private
    folder) already has and writes the list of distributions to install to ``report``."""
    indexes = [] if _own_index(extra_args) else index_args(modules, torch_cpu)
    return _pip(["install", "--dry-run", "--report", str(report),
                 "--constraint", str(constraints), *indexes, *extra_args,
                 *requirement_specs(modules)], append_path=target)


def install_command(packages: Sequence[Package], target: str | os.PathLike,
                    extra_args: Sequence[str] = ()) -> list[str]:
    """The pip command that puts exactly the planned files into ``target``."""
    return _pip(["install", "--no-deps", "--upgrade", "--target", str(target), *extra_args,
                 *(p.requirement for p in packages)])


def format_command(cmd: Sequence[str]) -> str:
    if os.name == "nt":
        return subprocess.list2cmdline(list(cmd))
    return shlex.join(cmd)


@dataclass(frozen=True)
class Package:
    """One distribution of the install plan, with the file pip chose for it."""

    name: str
    version: str
    url: str

    @property
    def requirement(self) -> str:
        return f"{self.name} @ {self.url}" if self.url else f"{self.name}=={self.version}"


def read_plan(report: str | os.PathLike) -> list[Package]:
    """The distributions pip's installation report says must be installed."""
    data = json.loads(Path(report).read_text(encoding="utf-8"))
    return [Package(item["metadata"]["name"], item["metadata"]["version"],
                    (item.get("download_info") or {}).get("url", ""))
            for item in data.get("install", [])]


def check_torch_build(packages: Sequence[Package], torch_cpu: bool) -> None:
    """CPU-only must mean CPU-only: refuse a plan whose torch is a CUDA build (Linux/Windows
    CPU wheels carry the ``+cpu`` local version; macOS wheels are CPU builds anyway)."""
    if not torch_cpu or sys.platform == "darwin":
        return
    for p in packages:
        if _canonical(p.name) == "torch" and not p.version.endswith("+cpu"):
            raise RuntimeError(
                f"CPU-only PyTorch was asked for, but pip chose torch {p.version} "
                f"({p.url or 'unknown source'}), which is not a CPU build; nothing was installed")


def check_index_reachable(url: str | None = None, timeout: float = 20.0,
                          proxy: str | None = None) -> None:
    """Fail in one sentence when the CPU wheel index cannot be reached: pip would otherwise
    warn and quietly take PyPI's torch, which on Linux is the CUDA build (several GB)."""
    url = url or TORCH_CPU_INDEX
    handlers = [urllib.request.ProxyHandler({"http": proxy, "https": proxy})] if proxy else []
    try:
        with urllib.request.build_opener(*handlers).open(url.rstrip("/") + "/torch/",
                                                         timeout=timeout) as r:
            r.read(1)
    except Exception as exc:
        reason = getattr(exc, "reason", None) or exc
        raise RuntimeError(
            f"The PyTorch CPU wheel index {url} cannot be reached ({reason}); nothing was "
            "installed. Check the network or proxy (Extra pip arguments: --proxy URL), or give "
            "a local wheel folder (--no-index --find-links FOLDER).") from None


def nvidia_gpus() -> list[str]:
    """Names of the NVIDIA GPUs the driver reports (nvidia-smi, else /proc/driver/nvidia):
    detected, not guessed from the platform."""
    smi = shutil.which("nvidia-smi")
    if smi is None and os.name == "nt":
        candidate = Path(os.environ.get("SystemRoot", r"C:\Windows")) / "System32" / \
            "nvidia-smi.exe"
        smi = str(candidate) if candidate.is_file() else None
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=15)
            names = [re.sub(r"^GPU \d+:\s*|\s*\(UUID.*$", "", line).strip()
                     for line in out.stdout.splitlines() if line.startswith("GPU ")]
            if out.returncode == 0 and names:
                return names
        except (OSError, subprocess.SubprocessError):
            pass
    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        try:
            text = info.read_text(errors="replace")
        except OSError:
            continue
        m = re.search(r"^Model:\s*(.+)$", text, re.M)
        names.append(m.group(1).strip() if m else "NVIDIA GPU")
    return names


def shell_command(target: str | os.PathLike | None = None) -> list[str]:
    """The one command a user can paste into a terminal: this file run by QGIS's own Python,
    doing what the installer algorithm does."""
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


def install(target: str | os.PathLike | None = None, modules: Sequence[str] | None = None,
            torch_cpu: bool = True, extra_args: Sequence[str] = (), log: Log = print,
            cancel: Callable[[], bool] | None = None,
            progress: Progress | None = None) -> Path:
    """Install what ``modules`` need and QGIS's Python lacks into the private folder.

    Two pip runs: a dry run that resolves against QGIS's packages, then one ``--no-deps``
    install of exactly the planned files. Raises RuntimeError (one sentence, plus pip's last
    lines) on failure or cancel; nothing is left in the profile but the packages installed.
    """
    target = Path(target) if target is not None else private_dir()
    modules = list(missing(import_modules=True) if modules is None else modules)
    step = progress or (lambda _f: None)
    if not modules:
        log("all wsfusion dependencies are already importable; nothing to install")
        step(1.0)
        return target
    extra_args = list(extra_args)
    if torch_cpu and "torch" in modules and not _own_index(extra_args):
        check_index_reachable(proxy=_proxy(extra_args))
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-pip-", dir=target.parent))
    try:
        # QGIS's environment as is (a PYTHONPATH QGIS was started with counts as installed)
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", TMPDIR=str(work),
                   TEMP=str(work), TMP=str(work), PYTHONUNBUFFERED="1")
        pins = pinned_versions(exclude=[REQUIREMENTS[m][0] for m in modules]) + compat_caps()
        constraints = write_constraints(work / "constraints.txt", pins)
        report = work / "plan.json"
        cmd = plan_command(modules, target, constraints, report, torch_cpu, extra_args)
        log("resolving against QGIS's Python: " + format_command(cmd))
        step(0.02)
        code, tail = _run(cmd, env, log, cancel)
        if code != 0:
            raise RuntimeError("pip could not resolve the packages: " + _pip_error(tail))
        packages = read_plan(report)
        check_torch_build(packages, torch_cpu)
        if not packages:
            log("QGIS's Python already has everything needed; nothing to install")
            step(1.0)
            return target
        log(f"to install into {target}: "
            + ", ".join(f"{p.name} {p.version}" for p in packages))
        step(0.1)
        # pip writes into a staging folder beside the target; only a finished install is moved
        # in, so a cancel or a failure leaves the profile as it was.
        stage = work / "stage"
        cmd = install_command(packages, stage, extra_args)
        log("running: " + format_command(cmd))
        names = [_canonical(p.name) for p in packages]
        seen: set[str] = set()

        def on_line(line: str) -> None:  # one step per package pip starts on
            m = re.match(r"\s*(?:Collecting|Processing|Downloading)\s+(?:\S*/)?([A-Za-z0-9_.\-]+)",
                         line)
            if m:
                name = _canonical(re.split(r"[@=<>! ]|-\d", m.group(1))[0])
                if name in names and name not in seen:
                    seen.add(name)
                    step(0.1 + 0.75 * len(seen) / len(names))
            elif line.startswith("Installing collected packages"):
                step(0.9)

        code, tail = _run(cmd, env, log, cancel, on_line)
        if code != 0:
            raise RuntimeError("pip failed: " + _pip_error(tail))
        _move_into(stage, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    activate_private_dir(target)
    log(f"installed {', '.join(p.name for p in packages)} into {target}")
    step(1.0)
    return target


def _move_into(stage: Path, target: Path) -> None:
    """Move a finished ``pip --target`` install into ``target``, replacing what it upgrades
    (pip's own ``--upgrade`` semantics for a target folder)."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(stage.iterdir()) if stage.is_dir() else ():
        dest = target / entry.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.exists() or dest.is_symlink():
            dest.unlink()
        os.replace(entry, dest)


def _pip_error(tail: Sequence[str]) -> str:
    """pip's ERROR lines (what went wrong), else its last lines."""
    errors = [t for t in tail if t.startswith("ERROR:")]
    return " | ".join(errors[-3:] or tail[-5:])


def _kill_tree(proc: subprocess.Popen) -> None:
    """Stop pip and everything it started (build backends, downloads)."""
    if proc.poll() is not None:
        return
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _run(cmd: Sequence[str], env: dict, log: Log, cancel: Callable[[], bool] | None,
         on_line: Callable[[str], None] | None = None) -> tuple[int, list[str]]:
    """Run pip, streaming its lines to ``log``; checks ``cancel`` several times a second even
    while pip is silent (a long download), and kills the process tree when it says so."""
    kwargs: dict = {}
    if os.name == "nt":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
    else:
        kwargs["start_new_session"] = True
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, **kwargs)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    tail: list[str] = []
    try:
        while True:
            if cancel is not None and cancel():
                _kill_tree(proc)
                raise RuntimeError("installation cancelled; nothing was installed")
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                return proc.wait(), tail
            line = line.rstrip()
            if line:
                log(line)
                tail = (tail + [line])[-40:]
                if on_line is not None:
                    on_line(line)
    finally:
        _kill_tree(proc)  # only when still running: cancel, or an exception in a callback


def main(argv: Sequence[str] | None = None) -> int:
    """``python dependencies.py --target DIR``: install what is missing, as the algorithm does."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--target", type=Path, default=None, help="private package folder")
    parser.add_argument("--cuda", action="store_true",
                        help="PyPI's default torch build (CUDA on Linux) instead of CPU-only")
    parser.add_argument("--pip-args", default="", help="extra pip arguments, one string")
    parser.add_argument("--only", default="",
                        help="comma-separated import names, e.g. rasterio,shapely for the mean, "
                             "median and min-blue composites without PyTorch (default: all "
                             "missing)")
    args = parser.parse_args(argv)
    activate_private_dir(args.target)  # what an earlier run installed already counts
    only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = [m for m in only if m not in REQUIREMENTS]
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(REQUIREMENTS)}")
    t0 = time.perf_counter()
    try:
        folder = install(args.target, torch_cpu=not args.cuda,
                         modules=missing(import_modules=True, modules=only) if only else None,
                         extra_args=shlex.split(args.pip_args))
    except (RuntimeError, OSError) as exc:
        print(f"wsfusion: installing dependencies failed: {exc}", file=sys.stderr)
        return 1
    print(f"wsfusion: dependencies are in {folder} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
