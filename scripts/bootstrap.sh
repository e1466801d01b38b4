#!/usr/bin/env bash
# Creates .venv (QGIS-visible, numpy<2, CPU torch) and installs the project into it.
# Installs Debian's QGIS first when it is missing and we are root.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

if ! /usr/bin/python3 -c "import qgis.core, osgeo.gdal" >/dev/null 2>&1 || ! command -v Xvfb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing QGIS 3.22 and GDAL from Debian" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends qgis python3-qgis qgis-providers python3-gdal gdal-bin python3-venv xvfb xauth
  else
    echo "bootstrap: QGIS is missing; run as root or: sudo apt-get install qgis python3-qgis qgis-providers python3-gdal gdal-bin python3-venv xvfb" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q -c requirements-constraints.txt)
[ -d /opt/wheels ] && PIP+=(--find-links /opt/wheels)
stamp="$VENV/.installed-$(cat pyproject.toml requirements-constraints.txt | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  "${PIP[@]}" --upgrade "attrs>=23" "setuptools>=68" wheel
  "${PIP[@]}" torch==2.13.0
  "${PIP[@]}" -e ".[dev,distributed]"
  touch "$stamp"
fi
