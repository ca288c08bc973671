#!/usr/bin/env bash
# Text evidence (docs/results.md, "Text"): teacher, AR reference, k=8 and k=4 students with
# teacher top-p 0.9, a k=8 student without top-p, and `dmmd eval` of all of them.
# Usage: bash scripts/evidence/text.sh SEED   (PYTHON=.venv/bin/python to pick the interpreter)
source "$(dirname "$0")/env.sh"
S=${1:-0}
R=runs/text_s$S
$D train-teacher --run-dir $R/teacher --data text --seq-len 128 --steps 800 --batch-size 32 \
  --lr 2e-3 --warmup 60 --ema 0.99 --eval-every 200 --save-every 200 --seed $S --device cpu --no-progress
[ -f $R/reference.safetensors ] || $D train-reference --data text --seq-len 128 --steps 800 \
  --batch-size 32 --seed $S --device cpu --out $R/reference.safetensors
for k in 8 4; do
  $D distill --teacher $R/teacher --run-dir $R/student_k$k --k $k --steps 500 --batch-size 32 \
    --lr 1e-4 --top-p 0.9 --weight constant --ema 0.99 --save-every 250 --seed $S --device cpu \
    --process masked --no-progress
done
$D distill --teacher $R/teacher --run-dir $R/student_k8_nop --k 8 --steps 500 --batch-size 32 \
  --lr 1e-4 --top-p 1.0 --weight constant --ema 0.99 --save-every 250 --seed $S --device cpu \
  --process masked --no-progress
$D eval $R/teacher $R/student_k8 $R/student_k4 $R/student_k8_nop \
  --labels teacher student_k8 student_k4 student_k8_top_p1 \
  --steps 4 8 16 64 --n-samples 1024 --reference $R/reference.safetensors --seed 17 \
  --device cpu --out $R/eval
