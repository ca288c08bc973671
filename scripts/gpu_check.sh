#!/usr/bin/env bash
# The GPU check: one command on a machine with a CUDA GPU and no network.
# Builds the extension from source for the visible GPU's architecture, runs the
# test suite (CUDA tests included: CPU/CUDA bitwise parity, statistical tests on
# CUDA, CUDA-graph capture), compute-sanitizer memcheck, racecheck and synccheck
# on small cases, and the kernel benchmarks.
# Budget: under 10 minutes on an H100 (the fused-head benchmark added 2026-12-02 is
# capped at 90 s, FUSED_HEAD_TIMEOUT). Uses the machine's own python/torch (no venv,
# no downloads). Logs go to $WORK; on exit the results that matter are copied to $OUT
# (default gpu_results/) and everything else is packed into $OUT/logs.tar.gz, because
# the device tool brings back at most 8 files.
set -uo pipefail
cd "$(dirname "$0")/.."
FINAL=${OUT:-gpu_results}
OUT=${WORK:-$(mktemp -d)}
mkdir -p "$FINAL" "$OUT"
pack() {
  for f in summary.txt tests.log ptxas.txt step.md step.json suite_cuda.md suite_cuda.json; do
    [ -f "$OUT/$f" ] && cp "$OUT/$f" "$FINAL/"
  done
  tar czf "$FINAL/logs.tar.gz" -C "$OUT" . 2>/dev/null
}
trap pack EXIT
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
log() { echo "[gpu_check $(date +%T)] $*" | tee -a "$OUT/summary.txt"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT/summary.txt"
cap=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
log "torch $("$PY" -c 'import torch; print(torch.__version__)'), capability $cap"

log "build (TORCH_CUDA_ARCH_LIST=$cap)"
if ! TORCH_CUDA_ARCH_LIST="$cap" DMMD_EXT_CUDA=1 DMMD_EXT_PTXAS_VERBOSE=1 PYTHON="$PY" \
    BUILD_DIR=build/gpu JOBS=16 bash scripts/dev_build.sh >"$OUT/build.log" 2>&1; then
  log "BUILD FAILED"; tail -n 40 "$OUT/build.log"; exit 1
fi
"$PY" scripts/ptxas_summary.py "$OUT/build.log" >"$OUT/ptxas.txt"

log "tests"
PYTHONPATH=. timeout 180 "$PY" -m pytest tests -q -x -ra -m "not slow" -p no:cacheprovider \
  >"$OUT/tests.log" 2>&1
log "tests rc=$? :: $(tail -n 1 "$OUT/tests.log")"

# memcheck: out-of-bounds and misaligned accesses; racecheck: shared-memory
# hazards between threads of a block (what memcheck cannot see); synccheck:
# barriers reached by a divergent subset of a block or warp.
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck synccheck; do
    log "compute-sanitizer $tool"
    PYTHONPATH=. timeout 90 compute-sanitizer --tool "$tool" --error-exitcode 9 \
      "$PY" python/sanitizer_cases.py >"$OUT/$tool.log" 2>&1
    log "$tool rc=$? :: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/$tool.log" | tail -n 1)"
  done
fi

# Optional baselines: wheels carried in wheels/ (scripts/fetch_bench_wheels.sh), installed
# without network and without touching torch; absent wheels just drop those columns.
if ls wheels/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps wheels/*.whl >"$OUT/wheels.log" 2>&1
  log "optional baseline wheels rc=$? :: $(ls wheels)"
fi

log "benchmark: end-to-end D-MMD step"
PYTHONPATH=. timeout 120 "$PY" python/bench_step.py --device cuda --warmup 2 --repeats 5 \
  --json "$OUT/step.json" >"$OUT/step.md" 2>&1
log "step rc=$? :: $(tail -n 1 "$OUT/step.md")"

# Fused LM head + losses against matmul + fused loss, eager and (installed) Liger's fused
# linear JSD, at the issue's two shapes (default shapes on CUDA); results in the tarball.
log "benchmark: fused LM head"
PYTHONPATH=. timeout "${FUSED_HEAD_TIMEOUT:-90}" "$PY" python/bench_fused_head.py --device cuda \
  --warmup 1 --repeats 3 --out "$OUT" >"$OUT/fused_head.log" 2>&1
log "fused head rc=$? :: $(grep -c '' "$OUT/fused_head_cuda.md" 2>/dev/null) lines in fused_head_cuda.md"

# torch.compile baselines only where the issue sets a target against them (each compile
# costs seconds); the JSON is rewritten after every case, so a timeout keeps the rest.
log "benchmark suite"
PYTHONPATH=. timeout "${SUITE_TIMEOUT:-200}" "$PY" python/bench_suite.py --device cuda --no-step \
  --compile-only generator --out "$OUT" >"$OUT/suite.log" 2>&1
log "suite rc=$?"
log "done"
