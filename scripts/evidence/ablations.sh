#!/usr/bin/env bash
# Ablations over seeds for issue 5: demo teacher + k=8 student (demo settings), then
# no noise input / hard top-p mask / soft aux targets / no top-p / ELBO loss weight, each
# evaluated with 2048 samples. Finished parts (results.json, eval.json) are not redone.
# Usage: bash scripts/evidence/ablations.sh SEED...   e.g. 0 1 2
source "$(dirname "$0")/env.sh"
for S in "$@"; do
  R=runs/abl_s$S
  mkdir -p $R
  [ -f $R/results.json ] || $D demo --run-dir $R --seed $S --ks 8 --threads 1 --no-progress
  for v in "noinput:--d-noise 0" "hardmask:--delta 1e20" "soft:--target soft" \
           "topp1:--top-p 1.0" "elbo:--weight elbo"; do
    name=${v%%:*}; flags=${v#*:}
    [ -f $R/$name/eval.json ] && continue
    $D distill --teacher $R/teacher --data hmm --hmm-preset cycle --n-train 20000 --data-seed $S \
      --k 8 --steps 500 --batch-size 64 --lr 1e-4 --top-p 0.9 --weight constant --ema 0.99 \
      --seed $S --device cpu --run-dir $R/$name --no-progress $flags
    $E $R/$name/checkpoint --n 2048 --seed 17 --threads 1 > $R/$name/eval.json
  done
done
