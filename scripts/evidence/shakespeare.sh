#!/usr/bin/env bash
# The text benchmark end to end (docs/data.md, "The Shakespeare text benchmark"): fetch the
# corpus (once, the only network step), train a masked-diffusion teacher on character-level
# Shakespeare + Milton (K = 27, L = 256), the autoregressive reference, k = 4, 8, 16 D-MMD
# students, and `dmmd eval` of all of them at 4, 8 and 16 steps (the teacher also at 32-128).
# Usage: bash scripts/evidence/shakespeare.sh [--quick] [SEED]
#   full:    small-preset teacher, 1500 steps (1.9 s/step measured on one thread of a
#            loaded 2-core VM: 30-50 minutes); the students and the evaluation add hours
#   --quick: a ~2.5-minute single-thread smoke run of the same pipeline (tiny models, a
#            few steps; its numbers mean nothing) in runs/shakespeare_quick_s$SEED
# PYTHON picks the interpreter; THREADS (default 2 full, 1 quick) the torch threads.
source "$(dirname "$0")/env.sh"
QUICK=0
if [ "${1:-}" = "--quick" ]; then QUICK=1; shift; fi
S=${1:-0}
bash scripts/fetch_shakespeare.sh >/dev/null
if [ $QUICK = 1 ]; then
  R=runs/shakespeare_quick_s$S; TH=${THREADS:-1}
  TEACHER="--model-preset tiny --steps 30 --batch-size 8 --warmup 5 --eval-every 30 --save-every 30 --eval-batches 2"
  REF="--preset tiny --steps 30 --batch-size 8"
  DIST="--steps 4 --batch-size 4 --save-every 4 --eval-every 0"
  EVAL="--n-samples 16 --sample-batch 16 --half-batch 4 --no-plots"; LONG=""
else
  R=runs/shakespeare_s$S; TH=${THREADS:-2}
  TEACHER="--model-preset small --steps 1500 --batch-size 32 --warmup 100 --eval-every 250 --save-every 250 --eval-batches 8"
  REF="--preset small --steps 1500 --batch-size 32"
  DIST="--steps 300 --batch-size 16 --save-every 100 --eval-every 0"
  EVAL="--n-samples 256 --sample-batch 64 --half-batch 32"; LONG="32 64 128"
fi
export OMP_NUM_THREADS=$TH
mkdir -p $R
T0=$(date +%s)
stamp() { echo "[shakespeare] $1 ($(( $(date +%s) - T0 )) s)" >&2; }
$D train-teacher --run-dir $R/teacher --data shakespeare $TEACHER --lr 2e-3 --ema 0.99 \
  --seed $S --device cpu --no-progress --threads $TH > /dev/null
NELBO=$(grep -o '"val_nelbo_bpt": [0-9.]*' $R/teacher/log.jsonl | tail -1 | cut -d' ' -f2)
stamp "teacher: validation NELBO $NELBO bits/char (an upper bound on its bits per character)"
[ -f $R/reference.safetensors ] || $D train-reference --data shakespeare $REF --seed $S \
  --device cpu --threads $TH --out $R/reference.safetensors
stamp "reference trained"
for k in 4 8 16; do
  $D distill --teacher $R/teacher --run-dir $R/student_k$k --k $k $DIST --lr 1e-4 \
    --weight constant --ema 0.99 --seed $S --device cpu --process masked --no-progress \
    --threads $TH > /dev/null
  stamp "student k=$k distilled"
done
# every model at 4, 8, 16 steps (each student at its k, and at the others); the teacher also
# at more steps (full mode), in its own table
$D eval $R/teacher $R/student_k4 $R/student_k8 $R/student_k16 \
  --labels teacher student_k4 student_k8 student_k16 --steps 4 8 16 $EVAL \
  --reference $R/reference.safetensors --seed 17 --device cpu --no-progress --threads $TH \
  --out $R/eval
if [ -n "$LONG" ]; then
  $D eval $R/teacher --labels teacher --steps $LONG $EVAL --reference $R/reference.safetensors \
    --seed 17 --device cpu --no-progress --threads $TH --out $R/eval_teacher_long
fi
stamp "done: $R/eval/eval.md${LONG:+, $R/eval_teacher_long/eval.md}"
