"""Gradient Moment (D-MMD paper, Eq. 14): how far the reference model's mean
NLL gradient on generated samples is from its mean gradient on real data,

    GM = || E_samples[grad L] - E_data[grad L] ||^2,   L = mean NLL of a batch.

The plug-in value ||g(S) - g(D)||^2 is biased upward by the variance of the
batch gradients. The unbiased estimator takes two independent half-batches of
samples (s1, s2) and of data (d1, d2):

    (g(s1) - g(d1)) . (g(s2) - g(d2)),

whose expectation is exactly GM because the two factors are independent. One
estimate can be negative; we average many disjoint pairs and report the mean
with its standard error.

The scale of GM depends on how the user's ``nll_fn`` normalizes L (per token or
per sequence, nats or bits); this package's reference models use the mean
per-token NLL in nats (the usual language-model loss). Gradients are taken with
torch.autograd.grad, so the model's .grad buffers are never touched, and the
reference model should be in eval() mode (dropout would add noise; BatchNorm in
train mode would couple the examples of a batch and break independence).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch

from .stats import Estimate, RunningMean

NllFn = Callable[[torch.Tensor], torch.Tensor]

__all__ = ["batch_gradient", "pair_estimate", "GradientMomentEstimator", "gradient_moment"]


@contextlib.contextmanager
def _grads_enabled(params: Sequence[torch.Tensor]) -> Iterator[None]:
    """Lets a frozen reference model (requires_grad=False) be differentiated,
    restoring each flag afterwards; also overrides an outer torch.no_grad()."""
    saved = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for p, flag in zip(params, saved):
            p.requires_grad_(flag)


def _check_params(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    params = list(params)
    if not params:
        raise ValueError("gradient moment: `params` is empty; pass the reference model's parameters")
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor) or not p.is_leaf:
            raise ValueError(f"gradient moment: params[{i}] must be a leaf tensor (e.g. an nn.Parameter)")
        if not p.is_floating_point():
            raise ValueError(f"gradient moment: params[{i}] must be floating point, got {p.dtype}")
    return params


def batch_gradient(nll_fn: NllFn, batch: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Gradient of the scalar ``nll_fn(batch)`` w.r.t. ``params`` (zeros for
    parameters the loss does not use), detached; leaves .grad untouched."""
    params = _check_params(params)
    with _grads_enabled(params):
        loss = nll_fn(batch)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"gradient moment: nll_fn must return a scalar mean NLL, got {shape}")
        grads = torch.autograd.grad(loss.reshape(()), params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)]


def _diff(nll_fn: NllFn, params, samples: torch.Tensor, data: torch.Tensor | None) -> list[torch.Tensor]:
    gs = batch_gradient(nll_fn, samples, params)
    if data is None:  # E_data[grad L] known to be zero (the reference is the true model)
        return [a.double() for a in gs]
    gd = batch_gradient(nll_fn, data, params)
    return [a.double() - b.double() for a, b in zip(gs, gd)]


def pair_estimate(nll_fn: NllFn, params: Sequence[torch.Tensor], s1: torch.Tensor, d1: torch.Tensor | None,
                  s2: torch.Tensor, d2: torch.Tensor | None) -> float:
    """One unbiased estimate (g(s1) - g(d1)) . (g(s2) - g(d2)) in float64.
    The four batches must be independent draws. d1 = d2 = None stands for an
    exactly known E_data[grad L] = 0 (the true model as reference)."""
    a = _diff(nll_fn, params, s1, d1)
    b = _diff(nll_fn, params, s2, d2)
    return float(sum((x * y).sum() for x, y in zip(a, b)))


def _halves(batch: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    n = batch.shape[0] if batch.dim() > 0 else 0
    if n < 2 or n % 2:
        raise ValueError(f"gradient moment: `{name}` needs an even number (>= 2) of examples "
                         f"along dim 0 to split into two halves, got {n}")
    return batch[: n // 2], batch[n // 2:]


class GradientMomentEstimator:
    """Streaming estimator: feed independent (samples, data) batches with
    ``update``; each is split into halves and yields one pair estimate."""

    def __init__(self, nll_fn: NllFn, params: Sequence[torch.Tensor]) -> None:
        self.nll_fn = nll_fn
        self.params = _check_params(params)
        self._stat = RunningMean()

    def update(self, samples: torch.Tensor, data: torch.Tensor | None) -> float:
        s1, s2 = _halves(samples, "samples")
        d1, d2 = (None, None) if data is None else _halves(data, "data")
        value = pair_estimate(self.nll_fn, self.params, s1, d1, s2, d2)
        self._stat.update(value)
        return value

    @property
    def n_pairs(self) -> int:
        return self._stat.n

    def result(self) -> Estimate:
        return self._stat.result()


def gradient_moment(nll_fn: NllFn, params: Sequence[torch.Tensor], samples: torch.Tensor,
                    data: torch.Tensor | None, *, half_batch: int, n_pairs: int | None = None,
                    generator: torch.Generator | None = None,
                    device: torch.device | str | None = None) -> Estimate:
    """Mean and standard error of the unbiased GM estimate over disjoint pairs.

    ``samples`` and ``data`` hold one example per row (dim 0). Each pair uses
    2 * half_batch rows of each, never reused, so the pair estimates are
    independent. ``data=None``: E_data[grad L] is exactly zero (true model as
    reference, whose expected score vanishes), so only samples are used.
    ``n_pairs`` defaults to as many as both sets allow. With a
    ``generator`` the rows are shuffled first (use it when the rows are
    ordered, e.g. grouped by class). ``device``: where batches are moved before
    calling ``nll_fn``.
    """
    if half_batch < 1:
        raise ValueError(f"gradient_moment: half_batch must be >= 1, got {half_batch}")
    per_pair = 2 * half_batch
    n_data = samples.shape[0] if data is None else data.shape[0]
    available = min(samples.shape[0], n_data) // per_pair
    if n_pairs is None:
        n_pairs = available
    if n_pairs < 2 or n_pairs > available:
        raise ValueError(
            f"gradient_moment: need 2 <= n_pairs <= {available} (each pair uses {per_pair} samples and "
            f"{per_pair} data rows; got {samples.shape[0]} samples, {n_data} data rows), "
            f"got n_pairs={n_pairs}")
    if generator is not None:
        samples = samples[torch.randperm(samples.shape[0], generator=generator)]
        if data is not None:
            data = data[torch.randperm(data.shape[0], generator=generator)]
    est = GradientMomentEstimator(nll_fn, params)
    for i in range(n_pairs):
        rows = slice(i * per_pair, (i + 1) * per_pair)
        s, d = samples[rows], None if data is None else data[rows]
        if device is not None:
            s, d = s.to(device), None if d is None else d.to(device)
        est.update(s, d)
    return est.result()
