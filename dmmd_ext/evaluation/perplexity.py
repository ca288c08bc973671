"""Generative perplexity under a reference model, always reported beside the
per-sample unigram entropy, for samples and for real data measured the same way.

Perplexity alone rewards collapse: a model that repeats one likely sequence,
or one token, scores a low perplexity. The unigram entropy of each sample's
own token histogram exposes within-sample repetition (it is not a diversity
measure across samples: the gradient moment is). Both numbers mean something
only beside the data's own values under the same protocol.

Definitions (natural log throughout):
- per-sample NLL: mean over the sample's tokens of the reference's
  -log p(x_i | x_<i) (rows re-tokenized to unequal lengths end in PAD = -1,
  which is not counted);
- generative perplexity: exp(total NLL / total tokens) over all samples
  (= exp of the mean per-sample NLL, since rows have equal length);
- unigram entropy of a sample: -sum_v c_v/L log(c_v/L), c_v the count of token
  v in that sample; we report its mean over samples (nats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .stats import Estimate, estimate

TokenNllFn = Callable[[torch.Tensor], torch.Tensor]
PAD = -1  # fills the end of re-tokenized rows shorter than the others (not scored)

__all__ = ["PAD", "unigram_entropy", "per_sample_nll", "PerplexityResult", "generative_perplexity",
           "perplexity_report"]


def _check_tokens(tokens: torch.Tensor, name: str, allow_pad: bool = False) -> None:
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.dtype.is_floating_point:
        desc = f"{tuple(tokens.shape)} {tokens.dtype}" if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"perplexity: `{name}` must be an integer tensor [n, length], got {desc}")
    if tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(f"perplexity: `{name}` is empty, shape {tuple(tokens.shape)}")
    if int(tokens.min()) < (PAD if allow_pad else 0):
        raise ValueError(f"perplexity: `{name}` holds negative token ids (min {int(tokens.min())})")


def unigram_entropy(tokens: torch.Tensor) -> torch.Tensor:
    """Entropy (nats, float64) of each row's token histogram, shape [n]."""
    _check_tokens(tokens, "tokens")
    n, length = tokens.shape
    vocab = int(tokens.max()) + 1
    counts = torch.zeros(n, vocab, dtype=torch.float64, device=tokens.device)
    counts.scatter_add_(1, tokens.long(), torch.ones(n, length, dtype=torch.float64, device=tokens.device))
    p = counts / length
    return -(p * torch.log(p.clamp_min(1e-300))).sum(dim=1)  # 0 log 0 = 0


@torch.no_grad()
def per_sample_nll(token_nll_fn: TokenNllFn, tokens: torch.Tensor, *, batch_size: int = 64,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Mean per-token NLL of each row, float64 on the CPU, shape [n].
    ``token_nll_fn`` maps [b, length] tokens to [b, length] NLLs in nats; PAD
    positions (the end of shorter re-tokenized rows) are left out of the mean."""
    _check_tokens(tokens, "tokens", allow_pad=True)
    out = []
    for i in range(0, tokens.shape[0], batch_size):
        batch = tokens[i:i + batch_size]
        if device is not None:
            batch = batch.to(device)
        nll = token_nll_fn(batch)
        if nll.shape != batch.shape:
            raise ValueError(f"perplexity: token_nll_fn must return per-token NLLs of shape "
                             f"{tuple(batch.shape)}, got {tuple(nll.shape)}")
        valid = (batch != PAD).to(torch.float64)
        out.append(((nll.double() * valid).sum(dim=1) / valid.sum(dim=1).clamp_min(1)).cpu())
    return torch.cat(out)


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    nll: Estimate       # per-token NLL (nats), mean over samples
    entropy: Estimate   # per-sample unigram entropy (nats), mean over samples

    def as_dict(self) -> dict:
        return {"perplexity": self.perplexity, "nll": self.nll.as_dict(), "entropy": self.entropy.as_dict()}


def summarize(nll: torch.Tensor, entropy: torch.Tensor) -> PerplexityResult:
    """Combines per-sample NLLs and entropies (any source, e.g. an exact model)."""
    nll_est = estimate(nll)
    return PerplexityResult(math.exp(nll_est.mean), nll_est, estimate(entropy))


def generative_perplexity(token_nll_fn: TokenNllFn, samples: torch.Tensor, *, batch_size: int = 64,
                          device: torch.device | str | None = None) -> PerplexityResult:
    """Perplexity of ``samples`` under the reference, with their unigram entropy."""
    nll = per_sample_nll(token_nll_fn, samples, batch_size=batch_size, device=device)
    return summarize(nll, unigram_entropy(samples.cpu()))


def perplexity_report(token_nll_fn: TokenNllFn, samples: torch.Tensor, data: torch.Tensor, *,
                      batch_size: int = 64, device: torch.device | str | None = None) -> dict:
    """Samples and real data under one protocol: {"samples": ..., "data": ...}.
    Use as many data rows as samples so the standard errors are comparable."""
    if samples.shape[1:] != data.shape[1:]:
        raise ValueError(f"perplexity_report: samples have length {samples.shape[1:]} but data "
                         f"{data.shape[1:]}; compare at equal length")
    return {"samples": generative_perplexity(token_nll_fn, samples, batch_size=batch_size, device=device),
            "data": generative_perplexity(token_nll_fn, data, batch_size=batch_size, device=device)}
