#!/usr/bin/env bash
# The README's test command: set up (scripts/setup.sh) with the emulated CUDA
# build, then run the test suite against the installed package (the CUDA
# kernels run on a GPU if one is visible and through the emulator always).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# The CUDA kernels also run on the CPU through the SIMT emulator (dmmd_ext._simt
# and the ASan + UBSan build _simt_asan): build both unless told otherwise.
export DMMD_EXT_SIMT=${DMMD_EXT_SIMT:-1}
bash scripts/setup.sh
# The venv's pytest (not `python -m pytest`) keeps the source tree off sys.path,
# so the tests import the installed package with its compiled kernels.
exec .venv/bin/pytest tests -q -ra "$@"
