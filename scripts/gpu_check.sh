#!/usr/bin/env bash
# The GPU check of issue 12, for a lent machine (python3 with torch + CUDA; no rasterio/GDAL).
# Run from the repository root with the prepared data carried in .device/data
# (python -m training.prepare_device_data). Everything fits in 8 minutes wall-clock:
#   1. the CUDA tests          → $OUT/tests.txt (folded into summary.md at the end)
#   2. the lead's benchmark    (# BENCH below)
#   3. five trainings at once on the one GPU (training/device_runs.py): the main recipe on the
#      paper's 20-epoch schedule + 4 ablation lines → $OUT/<run>/weights.safetensors (best by
#      validation), $OUT/main/last.safetensors and $OUT/summary.md (table, per-epoch validation,
#      test output): 7 files, the bench may add one. The training budget is what is left.
# GPU_SMOKE=1: a tiny CPU schedule that checks the whole path in about a minute.
# GPU_RUNS=run2: the follow-up set of runs (training/device_runs.py RUNS2); default run1.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:?set OUT to the folder whose files come back}"
mkdir -p "$OUT"
T0=$(date +%s)
TOTAL_S="${GPU_TOTAL_S:-480}"   # the machine's wall-clock limit for this script
MARGIN_S=75                     # start-up, last validation, copying, safety
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

if [ ! -f .device/data/manifest.json ]; then
  echo "gpu_check: .device/data is missing (carry it; make it with python -m training.prepare_device_data)" >&2
  exit 2
fi
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"

# 1. CUDA tests (none selected = exit 5 is fine)
timeout 150 python3 -m pytest -m cuda tests -q -p no:cacheprovider > "$OUT/tests.txt" 2>&1
rc=$?
echo "pytest -m cuda exit $rc (5 = none selected)" | tee -a "$OUT/tests.txt"
tail -3 "$OUT/tests.txt"

# 2. benchmark
# BENCH

# 3. trainings: the budget is what is left of the 8 minutes
ELAPSED=$(( $(date +%s) - T0 ))
if [ "${GPU_SMOKE:-0}" = "1" ]; then
  python3 -m training.device_runs --data .device/data --out "$OUT" --smoke --minutes 0.3 \
    --grace 90 --workers 5 --set "${GPU_RUNS:-run1}"
else
  MIN=$(python3 -c "print(f'{max(0.5, min(5.0, ($TOTAL_S - $ELAPSED - $MARGIN_S - 45) / 60)):.2f}')")
  echo "training budget per run: $MIN min (elapsed so far ${ELAPSED}s)"
  python3 -m training.device_runs --data .device/data --out "$OUT" --minutes "$MIN" --grace 45 \
    --set "${GPU_RUNS:-run1}"
fi
rc=$?
echo "device_runs exit $rc; total $(( $(date +%s) - T0 )) s"
ls -la "$OUT" "$OUT"/*/ 2>/dev/null
exit 0
