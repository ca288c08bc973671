# Sourced by the evidence scripts: run from the repository root (outputs under runs/), one
# torch thread per process, PYTHON picks the interpreter; D = the CLI, E = the HMM evaluator.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export OMP_NUM_THREADS=1
PY=${PYTHON:-python}
D="$PY -m dmmd_ext.cli"
E="$PY python/eval_hmm_sampler.py"
