"""Time of the QGIS plugin's dependency installer from a fresh profile, with QGIS's own Python.

Each run installs into a new temporary profile folder: ``local`` from a wheel folder built
offline from this machine (the venv's installed distributions repacked, plus ``/opt/wheels``),
``network`` from PyPI with ``--pip-args`` as given (e.g. a constraint pinning a local CPU torch
wheel where the PyTorch CPU index cannot be reached). Prints one table.

    .venv/bin/python bench/bench_install.py                      # local only
    .venv/bin/python bench/bench_install.py --network "--index-url https://pypi.org/simple"
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "qgis"))
QGIS_PYTHON = "/usr/bin/python3"


def run(pip_args: str, profile: Path) -> dict:
    target = profile / "python" / "wsfusion_deps" / f"py{sys.version_info[0]}{sys.version_info[1]}"
    t0 = time.perf_counter()
    proc = subprocess.run([QGIS_PYTHON, str(REPO / "qgis_plugin" / "dependencies.py"),
                           "--target", str(target), "--pip-args", pip_args],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin",
                                                               "HOME": str(Path.home())})
    seconds = time.perf_counter() - t0
    text = proc.stdout + proc.stderr
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) if target.is_dir() else 0
    planned = re.search(r"to install into [^:]+: (.*)", text)
    downloaded = 0.0
    for value, unit in re.findall(r"Downloading \S+ \(([\d.]+) (kB|MB|GB)\)", text):
        downloaded += float(value) * {"kB": 1e-3, "MB": 1.0, "GB": 1e3}[unit]
    return {"ok": proc.returncode == 0, "seconds": seconds, "installed_mb": size / 1e6,
            "downloaded_mb": downloaded,
            "packages": len(planned.group(1).split(", ")) if planned else 0,
            "tail": text.strip().splitlines()[-1] if text.strip() else ""}


def main() -> None:
    import wheelhouse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--network", default=None, help="also run over the network, these args")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        wheels = Path(tmp) / "wheels"
        wheelhouse.build(wheels)
        rows.append(("local wheel folder", run(f"--no-index --find-links {wheels}",
                                               Path(tmp) / "p1")))
        if args.network is not None:
            rows.append((f"network ({shlex.join(shlex.split(args.network))})",
                         run(args.network, Path(tmp) / "p2")))
    print(f"{'source':60} {'ok':>3} {'seconds':>8} {'packages':>8} {'downloaded MB':>13} "
          f"{'installed MB':>12}")
    for name, r in rows:
        print(f"{name[:60]:60} {'yes' if r['ok'] else 'no':>3} {r['seconds']:8.1f} "
              f"{r['packages']:8d} {r['downloaded_mb']:13.1f} {r['installed_mb']:12.0f}")
        if not r["ok"]:
            print("   ", r["tail"])


if __name__ == "__main__":
    main()
