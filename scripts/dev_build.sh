#!/usr/bin/env bash
# Developer build without pip: configures and builds dmmd_ext._C with CMake
# into build/dev and copies the module next to the sources, so that
# `PYTHONPATH=. python -m pytest` runs against this checkout. Honors
# DMMD_EXT_CUDA and TORCH_CUDA_ARCH_LIST like the pip build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
BUILD=${BUILD_DIR:-build/dev}
mkdir -p "$BUILD"
# The project needs CMake >= 3.26: prefer the one pip installed next to Python.
CMAKE=${CMAKE:-$(dirname "$(command -v "$PY")")/cmake}
[ -x "$CMAKE" ] || CMAKE=cmake
"$CMAKE" -S . -B "$BUILD" -G Ninja -DPython_EXECUTABLE="$(command -v "$PY")" \
  -DCMAKE_BUILD_TYPE=Release >"$BUILD/configure.log" 2>&1 || { cat "$BUILD/configure.log"; exit 1; }
"$CMAKE" --build "$BUILD" -j "${JOBS:-2}"
