"""Exact sample metrics on the HMM language for the demo (thin glue over
dmmd_ext.evaluation, isolated here so it can be swapped for its suite):

- excess NLL: mean exact per-token NLL of the samples minus the per-token
  entropy of the data (bits): 0 for a perfect sampler; > 0 for errors (few-step
  factorized sampling); < 0 would mean collapse onto likely sequences, which the
  unigram entropy then shows;
- gradient moment under the true model (paper Eq. 14; L = mean per-token NLL in
  nats; the data term is exactly zero for the true model), mean and standard
  error over disjoint pairs of half-batches;
- per-sample unigram entropy (nats), beside the data's;
- reverse cross-entropy (bits/token) and n-gram total variation at n = 2 and 3
  against the exact n-gram statistics of the HMM (evaluation.ngram), with bootstrap
  standard errors: metrics that a sharper-but-narrower sampler cannot win (excess
  NLL rewards it, and on some languages so does GM). Both are biased at finite n;
  the data row (an exact data sample of the same size) is their floor.
"""

from __future__ import annotations

import math

import torch

from ..evaluation.exact import true_gradient_moment, true_nll
from ..evaluation.ngram import ngram_metrics
from ..evaluation.perplexity import unigram_entropy

__all__ = ["hmm_metrics", "NGRAM_ORDERS"]

NGRAM_ORDERS = (2, 3)


def _mean_se(x: torch.Tensor) -> tuple[float, float]:
    x = x.double()
    return float(x.mean()), float(x.std() / math.sqrt(max(1, x.numel())))


def hmm_metrics(hmm, samples: torch.Tensor, entropy_rate_bits: float, gm_half_batch: int = 32,
                seed: int = 0, ngram_orders=NGRAM_ORDERS, ngram_boot: int = 20) -> dict:
    """The metrics of the module docstring for samples [n, L] (n >= 4 * gm_half_batch):
    flat floats, "<metric>_se" beside each (reverse_ce_<n>, ngram_tv_<n> per order)."""
    nll_bits = true_nll(hmm, samples) / math.log(2)
    nll, nll_se = _mean_se(nll_bits)
    ent, ent_se = _mean_se(unigram_entropy(samples))
    gm = true_gradient_moment(hmm, samples, None, half_batch=gm_half_batch,
                              generator=torch.Generator().manual_seed(seed))
    out = {"n": int(samples.shape[0]), "nll_bits": nll, "nll_se": nll_se,
           "excess_nll_bits": nll - entropy_rate_bits, "gm": gm.mean, "gm_se": gm.stderr,
           "gm_pairs": gm.n, "unigram_entropy": ent, "unigram_entropy_se": ent_se}
    for key, est in ngram_metrics(samples, hmm, tuple(ngram_orders), n_boot=ngram_boot,
                                  seed=seed).items():
        out[key], out[f"{key}_se"] = est["mean"], est["stderr"]
    return out
