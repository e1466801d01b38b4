"""A local wheel folder for the installer tests, built offline from what this machine has.

The test environment (the project's venv, made with ``--system-site-packages`` on top of QGIS's
Python) holds exactly the distributions QGIS's Python lacks or has too old: those are the ones
the installer must fetch. Each is repacked from its installed files (a wheel *is* those files
plus its dist-info); torch comes from a real wheel file where one with the same version lies in
``/opt/wheels`` (or ``$WSFUSION_WHEELS``), since repacking 1 GB is slow. No network is used.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import shutil
import sysconfig
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOTS = ("numpy", "torch", "rasterio", "shapely", "pyproj", "safetensors")
WHEEL_DIRS = [Path(p) for p in os.environ.get(
    "WSFUSION_WHEELS", "/opt/wheels:/opt/pypi/files:/opt/pypi-more/files").split(os.pathsep)]
# Releases the installer's COMPAT_CAPS can choose that a venv with a new attrs does not hold.
EXTRA = ("affine==2.4.0",)
_SKIP_INFO = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _venv_dists() -> dict[str, metadata.Distribution]:
    """Distributions installed in this venv itself (not in the system site it sees)."""
    paths = list(dict.fromkeys([sysconfig.get_paths()[k] for k in ("purelib", "platlib")]))
    return {_canonical(d.metadata["Name"]): d for d in metadata.distributions(path=paths)}


def closure(roots=ROOTS) -> list[metadata.Distribution]:
    """The venv's distributions reachable from ``roots`` through marker-true requirements."""
    venv = _venv_dists()
    env = default_environment()
    out: dict[str, metadata.Distribution] = {}
    todo = [_canonical(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in out:
            continue
        try:
            dist = venv.get(name) or metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if name in venv:
            out[name] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(dict(env, extra="")):
                todo.append(_canonical(req.name))
    return list(out.values())


def _tag(dist: metadata.Distribution) -> str:
    text = dist.read_text("WHEEL") or ""
    tags = [t.split("-") for t in re.findall(r"^Tag:\s*(\S+)", text, re.M)]
    if not tags:
        return "py3-none-any"
    return "-".join(".".join(dict.fromkeys(t[i] for t in tags)) for i in range(3))


def repack(dist: metadata.Distribution, folder: Path) -> Path:
    """A wheel of an installed distribution: its RECORDed files, its dist-info, a new RECORD."""
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    path = folder / f"{name}-{dist.version}-{_tag(dist)}.whl"
    written = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for f in dist.files or []:
            rel = f.as_posix()
            if rel.startswith("..") or "__pycache__" in f.parts or rel.endswith(".pyc"):
                continue
            if f.parts[0].endswith(".dist-info") and f.name in _SKIP_INFO:
                continue
            src = Path(str(dist.locate_file(f)))
            if src.is_file():
                z.write(src, rel)
                written.append(rel)
        info = next((p.parts[0] for p in dist.files or [] if p.parts[0].endswith(".dist-info")),
                    f"{name}-{dist.version}.dist-info")
        record = "".join(f"{r},,\n" for r in written) + f"{info}/RECORD,,\n"
        z.writestr(f"{info}/RECORD", record)
    return path


def _wheel_file(dist: metadata.Distribution) -> Path | None:
    prefix = f"{re.sub(r'[-_.]+', '_', dist.metadata['Name'])}-{dist.version}-".lower()
    for d in WHEEL_DIRS:
        for whl in sorted(d.glob("*.whl")) if d.is_dir() else []:
            if whl.name.lower().startswith(prefix):
                return whl
    return None


def _link(whl: Path, folder: Path) -> Path:
    target = folder / whl.name
    if not target.exists():
        try:
            os.link(whl, target)
        except OSError:
            shutil.copy2(whl, target)
    return target


def _download(spec: str, folder: Path) -> None:
    """One small wheel from a local folder, else from PyPI (the only network use; a failure
    leaves it out and the offline probe of the tests then skips with the reason)."""
    import subprocess
    import sys

    links = [a for d in WHEEL_DIRS if d.is_dir() for a in ("--find-links", str(d))]
    for extra in (["--no-index", *links], links):
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                               "--only-binary", ":all:", "--dest", str(folder), *extra, spec],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode == 0:
            return


def build(folder: Path, roots=ROOTS) -> list[Path]:
    """Fill ``folder`` with wheels for the venv-only closure of ``roots``, plus every other
    version of those distributions lying in the local wheel folders (QGIS's older numpy can
    need an older release than the venv's, e.g. shapely < 2.2 for numpy < 1.26)."""
    folder.mkdir(parents=True, exist_ok=True)
    dists = closure(roots)
    names = {re.sub(r"[-_.]+", "_", d.metadata["Name"]).lower() for d in dists}
    made = []
    for d in WHEEL_DIRS:
        for whl in sorted(d.glob("*.whl")) if d.is_dir() else []:
            if whl.name.split("-")[0].lower() in names:
                made.append(_link(whl, folder))
    for spec in EXTRA:  # older releases QGIS's Python may need (see COMPAT_CAPS)
        if not any(p.name.lower().startswith(spec.replace("==", "-")) for p in made):
            _download(spec, folder)
    for dist in dists:
        whl = _wheel_file(dist)
        if whl is not None:
            made.append(_link(whl, folder))
        else:
            made.append(repack(dist, folder))
    return made
