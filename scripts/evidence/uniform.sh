#!/usr/bin/env bash
# Uniform-process evidence for issue 5: a longer-trained tiny uniform teacher, k=8 student.
# Usage: bash scripts/evidence/uniform.sh SEED
source "$(dirname "$0")/env.sh"
S=${1:-0}
R=runs/uni_s$S
$D train-teacher --run-dir $R/teacher --data hmm --hmm-preset cycle --n-train 20000 --data-seed $S \
  --process uniform --steps 4000 --batch-size 64 --lr 2e-3 --warmup 100 --ema 0.99 \
  --eval-every 1000 --save-every 1000 --seed $S --device cpu --no-progress
$D distill --teacher $R/teacher --data hmm --hmm-preset cycle --n-train 20000 --data-seed $S \
  --process uniform --k 8 --steps 1000 --batch-size 64 --lr 1e-4 --top-p 0.7 \
  --weight constant --ema 0.99 --save-every 250 --seed $S --device cpu --run-dir $R/student_k8 --no-progress
for n in 8 64; do $E $R/teacher/checkpoint --steps $n --n 2048 --seed 17 --threads 1 > $R/teacher_n$n.json; done
$E $R/student_k8/checkpoint --n 2048 --seed 17 --threads 1 > $R/student_k8.json
