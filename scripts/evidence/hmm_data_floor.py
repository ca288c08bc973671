"""Data floor for the HMM evidence tables: the demo's metrics (demo/metrics.py
hmm_metrics: excess NLL, GM under the true model, per-sample unigram entropy, reverse
cross-entropy and n-gram TV at n = 2, 3) of N exact samples of the checkpoint's own HMM
language (data.rebuild_hmm), i.e. what fresh data score at the models' sample size.

    python scripts/evidence/hmm_data_floor.py CHECKPOINT_DIR --n 2048 --seed 17
"""

from __future__ import annotations

import argparse
import json

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--gm-half-batch", type=int, default=32)
    a = p.parse_args()
    torch.set_num_threads(1)
    from dmmd_ext.checkpoint import load_model
    from dmmd_ext.data.registry import rebuild_hmm
    from dmmd_ext.demo.metrics import hmm_metrics

    _, _, cfg = load_model(a.checkpoint)
    hmm = rebuild_hmm(cfg)
    x = hmm.sample(a.n, torch.Generator().manual_seed(a.seed))
    res = hmm_metrics(hmm, x, cfg["data"]["entropy_rate_bits"], a.gm_half_batch)
    print(json.dumps({"checkpoint": a.checkpoint, "model": "data (exact HMM samples)",
                      "sample_seed": a.seed, **res}))


if __name__ == "__main__":
    main()
