#!/usr/bin/env bash
# Issue 9's CUDA checks for a lent GPU machine, one short run (about 4 minutes): the
# cuda-marked tests (CUDA outputs within 1 grey level / 99.99 % classes of the CPU path), then
# the benchmark at 2048² and 8192², K = 2 and 6, against the I/O floor measured in the same run.
# Run from the repository root: bash scripts/gpu_check.sh   (PYTHON=... to pick the interpreter)
set -u
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
"$PY" - <<'PYEOF'
import numpy, rasterio, torch
print(f"torch {torch.__version__}, numpy {numpy.__version__}, GDAL {rasterio.__gdal_version__}, "
      f"CUDA: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
PYEOF
rc=0
timeout 150 "$PY" -m pytest -p no:pytest_qgis -p no:cacheprovider -q -m cuda \
    tests/core/test_runner.py || rc=1
timeout 300 "$PY" bench/bench_fuse.py --device cuda --sizes 2048,8192 --k 2,6 \
    --configs learned,learned+seg,mean --budget 170 --max-seconds 120 || rc=1
exit $rc
