#!/usr/bin/env bash
# Creates .venv (if missing), installs torch and the build/test requirements,
# then builds and installs dmmd_ext into it. Used by the README's two commands
# and by CI. The build is not isolated (--no-build-isolation) because the
# extension must be compiled against the torch it will run with; an isolated
# build would fetch another torch into a temporary environment.
#
# Environment:
#   DMMD_TORCH            torch requirement (default torch==2.14.1, the CUDA 13.0
#                         build, so that the CUDA kernels compile where nvcc exists)
#   DMMD_EXT_CUDA         0/1 forces the CUDA kernels off/on (default: auto)
#   TORCH_CUDA_ARCH_LIST  CUDA architectures (default 8.0;9.0)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${DMMD_VENV:-.venv}
PYTHON_BIN=${PYTHON_BIN:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$(cd "$VENV" && pwd)/bin/python"
pip_q() { "$PY" -m pip install --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither" >&2); }

TORCH_REQ=${DMMD_TORCH:-torch==2.14.1}
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "[setup] installing $TORCH_REQ"
  pip_q "$TORCH_REQ"
fi
# Build requirements (from pyproject's [build-system]) and the extras we use.
mapfile -t BUILD_REQS < <("$PY" -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['build-system']['requires']))")
# cmake and ninja: a no-isolation build cannot have scikit-build-core fetch them.
pip_q "${BUILD_REQS[@]}" "cmake>=3.26" ninja

echo "[setup] building dmmd_ext (log: build/pip-build.log)"
mkdir -p build
# An in-place developer build (scripts/dev_build.sh) leaves _C*.so and
# _build_info.py in dmmd_ext/; remove them so the wheel carries only what
# this build installs.
rm -f dmmd_ext/_C*.so dmmd_ext/_build_info.py
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0;9.0}
if ! "$PY" -m pip install --disable-pip-version-check --no-build-isolation -v ".[test,plot,digits]" \
    >build/pip-build.log 2>&1; then
  # ninja interleaves the ptxas chatter of parallel jobs with the failure, so a
  # plain tail can miss it: print the failing commands' error lines first.
  echo "[setup] error lines of build/pip-build.log:" >&2
  grep -n -E "FAILED:|error|Error|No space left|Killed|fatal" build/pip-build.log | grep -v "ptxas info" | head -n 40 >&2 || true
  echo "[setup] free disk where the build ran:" >&2
  df -h . >&2 || true
  tail -n 30 build/pip-build.log
  echo "[setup] build failed; full log in build/pip-build.log" >&2
  exit 1
fi
# Import from outside the tree so the installed package (not the sources) loads.
(cd /tmp && "$PY" -c "import dmmd_ext, json; print('[setup] dmmd_ext', json.dumps(dmmd_ext.build_info()))")
