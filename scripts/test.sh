#!/usr/bin/env bash
# The README's test command: set up (scripts/setup.sh), then run the test suite
# against the installed package. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The venv's pytest (not `python -m pytest`) keeps the source tree off sys.path,
# so the tests import the installed package with its compiled kernels.
exec .venv/bin/pytest tests -q -ra "$@"
