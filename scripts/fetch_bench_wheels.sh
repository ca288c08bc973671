#!/usr/bin/env bash
# Downloads the optional benchmark baselines as wheels into wheels/ (git-ignored), for
# a GPU machine without network: carry wheels/ there and scripts/gpu_check.sh installs
# them with --no-index --no-deps. Liger-Kernel only needs triton, which CUDA builds of
# torch bring. FlashInfer is not fetched: its wheel is 62 MB and it pulls about ten more
# packages (cutlass-dsl, cuda-python, tvm-ffi, ...) and JIT-compiles its kernels on first
# use, which does not fit the device tool's 64 MiB transfer or the 8-minute check; the
# suite still uses it wherever it is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
mkdir -p wheels
"$PY" -m pip download --no-deps -d wheels "liger-kernel==${LIGER_VERSION:-0.8.5}"
ls -l wheels
