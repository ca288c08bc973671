#!/usr/bin/env bash
# The GPU check: one command on a machine with a CUDA GPU and no network.
# Builds the extension from source for the visible GPU's architecture, runs the
# test suite (CUDA tests included: CPU/CUDA bitwise parity, statistical tests on
# CUDA), compute-sanitizer memcheck on small cases, and the kernel benchmarks.
# Writes everything under $OUT (default gpu_results/). Budget: under 8 minutes
# on an H100. Uses the machine's own python/torch (no venv, no downloads).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
log() { echo "[gpu_check $(date +%T)] $*" | tee -a "$OUT/summary.txt"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
cap=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
log "torch $("$PY" -c 'import torch; print(torch.__version__)'), capability $cap"

log "build (TORCH_CUDA_ARCH_LIST=$cap)"
if ! TORCH_CUDA_ARCH_LIST="$cap" DMMD_EXT_CUDA=1 DMMD_EXT_PTXAS_VERBOSE=1 PYTHON="$PY" \
    BUILD_DIR=build/gpu JOBS=16 bash scripts/dev_build.sh >"$OUT/build.log" 2>&1; then
  log "BUILD FAILED"; tail -n 40 "$OUT/build.log"; exit 1
fi
"$PY" scripts/ptxas_summary.py "$OUT/build.log" >"$OUT/ptxas.txt"

log "tests"
PYTHONPATH=. timeout 240 "$PY" -m pytest tests -q -x -ra -m "not slow" -p no:cacheprovider \
  >"$OUT/tests.log" 2>&1
log "tests rc=$? :: $(tail -n 1 "$OUT/tests.log")"

if command -v compute-sanitizer >/dev/null; then
  log "compute-sanitizer memcheck"
  PYTHONPATH=. timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 \
    "$PY" python/sanitizer_cases.py >"$OUT/memcheck.log" 2>&1
  log "memcheck rc=$? :: $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -n 1)"
fi

for b in python/bench_*.py; do
  [ -f "$b" ] || continue
  name=$(basename "$b" .py)
  log "benchmark $name"
  PYTHONPATH=. timeout 150 "$PY" "$b" --device cuda --json "$OUT/$name.json" >"$OUT/$name.md" 2>&1
  log "$name rc=$?"
done
log "done"
