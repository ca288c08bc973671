"""Exact quantities where the true distribution is known (the synthetic HMM
language, data.hmm.HMM): the true NLL of samples against the true per-token
entropy, and the gradient moment with the true model as reference.

Works with any object offering log_prob(x) -> [B] exact log-likelihoods
(differentiable in its parameters), parameters() and seq_len.

With the true model p as reference, E_data[grad(-log p)] = -sum_x grad p(x)
= 0 exactly (the expected score vanishes), so the gradient moment reduces to
||E_samples[grad(-log p)]||^2 and the data term can be dropped (data=None),
which removes its variance; passing data estimates it anyway (a check).
"""

from __future__ import annotations

import math

import torch

from .gradient_moment import gradient_moment
from .perplexity import PerplexityResult, summarize, unigram_entropy
from .stats import Estimate

__all__ = ["true_nll", "exact_report", "true_gradient_moment"]


def true_nll(model, tokens: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Exact per-token NLL (nats, float64) of each row, shape [n]."""
    with torch.no_grad():
        parts = [-model.log_prob(tokens[i:i + batch_size]).double() / tokens.shape[1]
                 for i in range(0, tokens.shape[0], batch_size)]
    return torch.cat(parts).cpu()


def _true_result(model, tokens: torch.Tensor) -> PerplexityResult:
    return summarize(true_nll(model, tokens), unigram_entropy(tokens.cpu()))


def exact_report(model, samples: torch.Tensor, data: torch.Tensor | None = None,
                 entropy_rate: dict | None = None) -> dict:
    """True NLL (and its perplexity) of samples beside the true per-token
    entropy H(X_1..X_L)/L: a sampler that matches the model has NLL equal to
    the entropy; lower NLL means collapse towards likely sequences, higher
    means errors. Unigram entropies ride along as in perplexity_report."""
    if samples.shape[1] != model.seq_len:
        raise ValueError(f"exact_report: samples have length {samples.shape[1]} but the true model "
                         f"defines length {model.seq_len}")
    ent = entropy_rate if entropy_rate is not None else model.entropy_rate()
    out = {"samples": _true_result(model, samples), "entropy_rate_nats": ent["nats"],
           "entropy_rate_se_nats": ent.get("se_bits", 0.0) * math.log(2),
           "entropy_method": ent.get("method")}
    if data is not None:
        out["data"] = _true_result(model, data)
    return out


def true_gradient_moment(model, samples: torch.Tensor, data: torch.Tensor | None = None, *,
                         half_batch: int = 32, n_pairs: int | None = None,
                         generator: torch.Generator | None = None) -> Estimate:
    """Gradient moment with the true model as reference, L = mean per-token
    exact NLL (the same normalization as ARReference.mean_nll)."""
    length = samples.shape[1]

    def nll(x: torch.Tensor) -> torch.Tensor:
        return -model.log_prob(x).mean() / length

    return gradient_moment(nll, model.parameters(), samples, data, half_batch=half_batch,
                           n_pairs=n_pairs, generator=generator)
