#!/usr/bin/env bash
# The one GPU check (issues 9 and 12) for a lent machine, within about 7 minutes wall-clock:
#   1. the CUDA tests (CUDA outputs within 1 grey level / 99.99 % classes of the CPU path)
#   2. bench/bench_fuse.py --device cuda at 2048² and 8192², K = 2 and 6, with the I/O floor
#   3. trainings on the one GPU (training/device_runs.py), started first and running beside 1-2
# Files back in $OUT: tests.txt, bench.txt, summary.md, <run>/weights.safetensors.
# The machine has python3 + torch + CUDA but no rasterio: carry .whl (rasterio, affine, cligj,
# click-plugins, shapely, and dask, distributed, tornado, tblib, zict, partd, locket wheels for
# its Python) and .device/data (python -m
# training.prepare_device_data). GPU_SMOKE=1: a tiny CPU schedule that checks the path.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:?set OUT to the folder whose files come back}"
mkdir -p "$OUT"
T0=$(date +%s)
TRAIN_MIN="${GPU_TRAIN_MIN:-4.8}"
RUNS="${GPU_RUNS:-run3}"
ONLY="${GPU_ONLY:-cont cont_haze cont_set_haze}"
export PYTHONUNBUFFERED=1
if [ -d .whl ] && ! python3 -c "import rasterio" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "${GPU_TRAIN:-1}" != "0" ] && [ ! -f .device/data/manifest.json ]; then
  echo "gpu_check: .device/data is missing (make it with python -m training.prepare_device_data)" >&2
  exit 2
fi
python3 -c "import torch, numpy, rasterio; print('torch', torch.__version__, 'numpy', numpy.__version__, 'GDAL', rasterio.__gdal_version__, 'cuda', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none')"

# GPU_TRAIN=0 / GPU_BENCH=0 / GPU_DASK=0 leave a part out (the device time may be split in calls)
# 3 first: the trainings run in the background for TRAIN_MIN minutes (10 data workers)
if [ "${GPU_TRAIN:-1}" = "0" ]; then
  true &
elif [ "${GPU_SMOKE:-0}" = "1" ]; then
  python3 -m training.device_runs --data .device/data --out "$OUT" --smoke --minutes 0.3 \
    --grace 90 --workers 3 --set "$RUNS" --only $ONLY --select-real --select-jobs 3 \
    > "$OUT/train.log" 2>&1 &
else
  python3 -m training.device_runs --data .device/data --out "$OUT" --minutes "$TRAIN_MIN" \
    --grace 30 --workers 10 --set "$RUNS" --only $ONLY --select-real --select-jobs 14 \
    > "$OUT/train.log" 2>&1 &
fi
TRAIN_PID=$!

# 1. CUDA tests, then the precision of each network against the CPU path
timeout 100 python3 -m pytest -p no:pytest_qgis -p no:cacheprovider -q -m cuda \
  tests/core/test_runner.py > "$OUT/tests.txt" 2>&1
echo "pytest -m cuda exit $?" | tee -a "$OUT/tests.txt"; tail -3 "$OUT/tests.txt"
if [ "${GPU_SMOKE:-0}" != "1" ]; then
  timeout 100 python3 scripts/gpu_precision_check.py --out /tmp/gpc >> "$OUT/tests.txt" 2>&1
  echo "gpu_precision_check exit $?" >> "$OUT/tests.txt"; grep "^|\|exit" "$OUT/tests.txt" | tail -12
fi

# 2. benchmark (beside the trainings: the CPU side is shared, said in the table's notes)
if [ "${GPU_SMOKE:-0}" != "1" ] && [ "${GPU_BENCH:-1}" = "1" ]; then
  timeout 170 python3 bench/bench_fuse.py --device cuda --sizes 2048,8192 --k 2,6 \
    --configs learned,learned+seg --budget 130 --max-seconds 60 > "$OUT/bench.txt" 2>&1
  echo "bench exit $?" >> "$OUT/bench.txt"; cat "$OUT/bench.txt"
  if [ $(( $(date +%s) - T0 )) -lt 290 ]; then  # what the pipeline costs around free networks
    timeout 80 python3 bench/bench_overhead.py --device cuda --size 4096 --k 6 --no-ops \
      >> "$OUT/bench.txt" 2>&1; echo "bench_overhead exit $?" >> "$OUT/bench.txt"
    # the host's share alone (device work free) on this machine's CPU, against reading alone
    timeout 50 python3 bench/bench_overhead.py --device meta --size 4096 --k 6 --no-ops \
      >> "$OUT/bench.txt" 2>&1; echo "bench_overhead meta exit $?" >> "$OUT/bench.txt"
  fi
fi

# 4. the Dask path on the GPU: a LocalCluster whose one worker holds the GPU vs the local run
if [ "${GPU_SMOKE:-0}" != "1" ] && [ "${GPU_DASK:-1}" = "1" ] \
    && python3 -c "import distributed" 2>/dev/null; then
  timeout 150 python3 scripts/gpu_dask_check.py --size 2048 --k 3 --out /tmp/gdc \
    > "$OUT/dask.txt" 2>&1
  echo "gpu_dask_check exit $?" >> "$OUT/dask.txt"; cat "$OUT/dask.txt" >> "$OUT/bench.txt"
  rm -f "$OUT/dask.txt"
fi

wait $TRAIN_PID
echo "device_runs exit $?; total $(( $(date +%s) - T0 )) s"
[ -f "$OUT/train.log" ] && { tail -40 "$OUT/train.log"; rm -f "$OUT/train.log"; }
ls -la "$OUT" "$OUT"/*/ 2>/dev/null
exit 0
