"""Exact metrics of a teacher or student checkpoint's samples on HMM data.

    python python/eval_hmm_sampler.py CHECKPOINT_DIR --steps 8 --n 2048 [--seed 17]
        [--soft-top-p 0.9 --delta 2 --temperature 1]

Prints a JSON line: excess NLL (exact NLL minus the data's per-token entropy,
bits), the gradient moment under the true model (mean, standard error), the
per-sample unigram entropy (nats), reverse cross-entropy and n-gram TV at
n = 2, 3 (exact n-gram statistics), as the demo reports them (demo/metrics.py).
--soft-top-p/--delta/--temperature sample with the distillation targets'
sharpening (processes.soft_top_p_logits).
Sampling: distill.sample_many (sparse for masked models, same distribution).
"""

from __future__ import annotations

import argparse
import json

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--steps", type=int, default=None, help="default: the student's k")
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--gm-half-batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--soft-top-p", type=float, default=1.0)
    p.add_argument("--delta", type=float, default=2.0)
    p.add_argument("--temperature", type=float, default=1.0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    from dmmd_ext.checkpoint import load_model
    from dmmd_ext.data.registry import rebuild_hmm
    from dmmd_ext.demo.metrics import hmm_metrics
    from dmmd_ext.distill import sample_many

    model, proc, cfg = load_model(a.checkpoint)
    info = cfg["data"]
    if "hmm" not in info:
        raise SystemExit(f"{a.checkpoint}: not trained on HMM data (no exact likelihood)")
    steps = a.steps or int(cfg.get("k", 0)) or None
    if steps is None:
        raise SystemExit("--steps is required for a teacher")
    hmm = rebuild_hmm(cfg)
    x = sample_many(model, proc, steps, a.n, int(info["seq_len"]), seed=a.seed,
                    soft_top_p=a.soft_top_p, delta=a.delta, temperature=a.temperature)
    res = hmm_metrics(hmm, x, info["entropy_rate_bits"], a.gm_half_batch)
    print(json.dumps({"checkpoint": a.checkpoint, "steps": steps, "soft_top_p": a.soft_top_p,
                      "delta": a.delta, "temperature": a.temperature, **res}))


if __name__ == "__main__":
    main()
