"""Reference categorical sampling (kernel: csrc/include/dmmd/sample.h and the
row samplers csrc/cpu/sample_row.h, csrc/cuda/sample_row.cuh).

Same Philox words as the kernel (sub-stream 0, element row * ceil(V/2) + v//2,
words 0-1 for even v, 2-3 for odd v), float64 Gumbel transform, sort-based
top-k / top-p. The kernel scores in float32 and accumulates top-p mass in its
own order, so the two agree except on rows whose two best scores (or whose
nucleus mass) lie within float rounding of each other; `return_margin=True`
gives the float64 gap between the two best scores of each row so tests can
tell those rows apart."""

from __future__ import annotations

import torch

from . import noise

_INF = float("inf")


def gumbel_noise(n_rows: int, V: int, seed: int, offset: int) -> torch.Tensor:
    """[n_rows, V] float64 Gumbel noise of the kernel's draws."""
    half = (V + 1) // 2
    rows = torch.arange(n_rows, dtype=torch.int64)[:, None]
    el = rows * half + torch.arange(half, dtype=torch.int64)[None, :]
    w = noise.philox_draw(seed, offset, 0, el.reshape(-1))
    bits = torch.stack([noise.lo64(w), noise.hi64(w)], dim=-1).reshape(n_rows, 2 * half)
    return noise.gumbel_from_bits_t(bits[:, :V])


def keep_set(x: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Classes kept by top-k then top-p, from float32 scaled logits x [N, V]
    (excluded classes already -inf). Ties at either threshold are kept."""
    N, V = x.shape
    keep = x > -_INF
    n_fin = keep.sum(1)
    srt = x.sort(1, descending=True).values
    if top_k > 0 and V > 0:
        kth = srt[:, min(top_k, V) - 1]
        on = top_k < n_fin
        keep &= ~on[:, None] | (x >= kth[:, None])
    if top_p < 1.0 and V > 0:
        x64 = x.double()
        m = x64.max(1, keepdim=True).values
        e = torch.where(keep, torch.exp(x64 - m), torch.zeros_like(x64))
        order = torch.where(keep, x, torch.full_like(x, -_INF)).sort(dim=1, descending=True, stable=True)
        es = e.gather(1, order.indices)
        cum = es.cumsum(1)
        target = top_p * cum[:, -1:]
        j = (cum < target).sum(1, keepdim=True).clamp(max=V - 1)
        xstar = order.values.gather(1, j)
        keep &= x >= xstar
    return keep


def sample_categorical(logits, temperature=1.0, top_k=0, top_p=1.0, mask=None, exclude=-1, *,
                       seed: int, offset: int = 0, return_margin: bool = False):
    V = logits.shape[-1]
    lead = logits.shape[:-1]
    l = logits.detach().reshape(-1, V).cpu().float()
    N = l.shape[0]
    x = l / torch.full_like(l, float(torch.tensor(temperature, dtype=torch.float32)))
    cand = torch.ones(N, V, dtype=torch.bool)
    if exclude >= 0:
        cand[:, exclude] = False
    nan_row = (torch.isnan(l) & cand).any(1)
    x = torch.where(cand & ~nan_row[:, None], x, torch.full_like(x, -_INF))
    valid = (x > -_INF).any(1) & ~nan_row
    if mask is not None:
        valid &= mask.reshape(-1).cpu()
    has_inf = (x == _INF).any(1, keepdim=True)
    keep = torch.where(has_inf, x == _INF, keep_set(x, top_k, top_p))
    g = gumbel_noise(N, V, seed, offset)
    x64 = x.double()
    score = torch.where(x == _INF, g, x64 + g)
    score = torch.where(keep, score, torch.full_like(score, -_INF))
    idx = score.argmax(1) if V > 0 else torch.zeros(N, dtype=torch.int64)
    out = torch.where(valid, idx, torch.full_like(idx, -1)).reshape(lead).to(logits.device)
    if not return_margin:
        return out
    top2 = score.topk(min(2, V), dim=1).values if V > 0 else torch.zeros(N, 0)
    margin = (top2[:, 0] - top2[:, 1]) if V > 1 else torch.full((N,), _INF)
    return out, margin.reshape(lead)
