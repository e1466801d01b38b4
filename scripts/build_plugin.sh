#!/usr/bin/env bash
# Builds dist/wsfusion.zip: a QGIS plugin zip whose single top folder wsfusion/ holds the plugin
# modules, metadata.txt, and the pure-Python wsfusion_core package with its shipped data.
# Needs only bash and python3 (no venv): "Install from ZIP" in QGIS takes the result as is.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-dist/wsfusion.zip}
PYTHON=${PYTHON:-python3}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
dest="$stage/wsfusion"
mkdir -p "$dest"

copy_tree() {  # copy_tree SRC DST: everything but caches and compiled files
  (cd "$1" && find . -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -name '.*' -print0) |
    while IFS= read -r -d '' f; do
      mkdir -p "$2/$(dirname "$f")"
      cp "$1/$f" "$2/$f"
    done
}

copy_tree qgis_plugin "$dest"
cp metadata.txt "$dest/metadata.txt"
# Publisher fields plugins.qgis.org requires; the repository has no real values for them yet.
add_field() { if [ -n "$2" ]; then printf '%s=%s\n' "$1" "$2" >> "$dest/metadata.txt"; fi; }
add_field email "${WSFUSION_EMAIL:-}"
add_field repository "${WSFUSION_REPOSITORY:-}"
add_field tracker "${WSFUSION_TRACKER:-}"
add_field homepage "${WSFUSION_HOMEPAGE:-}"
cp LICENSE "$dest/LICENSE"
mkdir -p "$dest/docs"
cp docs/qgis.md "$dest/docs/qgis.md"  # the algorithms' help URL points here
mkdir -p "$dest/wsfusion_core"
copy_tree wsfusion_core "$dest/wsfusion_core"
# plugins.qgis.org takes zips up to 25 MB and each model is 6.7 MB: the zip carries the 8-bit
# default and the Sentinel-2 L1C model; the satellite RGB and L2A models ship with the Python
# package (docs/qgis.md says how to use them from QGIS). evidence.choose picks among the models
# an install holds, so info and fuse agree within each.
rm -f "$dest/wsfusion_core/data/weights/satellite-rgb."* "$dest/wsfusion_core/data/weights/s2-l2a."*

mkdir -p "$(dirname "$OUT")"
OUT="$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")"
tmp="$OUT.tmp.$$"
rm -f "$tmp"
(cd "$stage" && "$PYTHON" - "$tmp" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for root, dirs, files in os.walk("wsfusion"):
        dirs.sort()
        for name in sorted(files):
            z.write(os.path.join(root, name))
PY
)
mv -f "$tmp" "$OUT"
echo "built $OUT ($(du -h "$OUT" | cut -f1))"
