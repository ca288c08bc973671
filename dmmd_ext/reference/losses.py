"""Reference semantics of the fused logit-moment losses (kernels:
csrc/*/moment_loss.*, wrappers: dmmd_ext.ops.losses). Eager float64
compositions; their autograd gives the reference gradients. Slow and
V-sized in memory by design.

Conventions shared with the kernels:
- The sharpened teacher is log t~ = log_softmax(T / tau - delta * (1 - m)), m the
  indicator of the nucleus of softmax(T / tau) at level top_p: the smallest set of
  most probable classes with mass >= top_p, found here by sorting. Every class whose
  logit equals the threshold class's logit (equal probability) is inside.
- The kernels select the nucleus on integer masses (`nucleus_threshold_fixed` states
  the rule): m_j = round(min(e_j, 1) * 2^S), e_j = exp(T_j / tau - max) from their own
  exp, S = min(52, 62 - V.bit_length()); the threshold is the largest T_j whose upper
  set holds mass >= min(total, ceil(top_p * total)). Integer sums make it independent
  of summation order (CUDA atomics included). `nucleus_threshold` below uses exact
  float64 probabilities instead: the two differ only when a cumulative mass lies
  within the kernels' exp rounding (~1e-7 relative for float32 accumulation) or 2^-S
  of top_p.
- 0 * (+-inf) terms count as 0 (a class with p_j = 0, or y_j + t~_j = 0, adds nothing).
- Rows with weight 0 give loss 0 whatever their logits hold.
"""

from __future__ import annotations

import torch

from .sampling import mass_fixed, mass_target


def nucleus_threshold(teacher: torch.Tensor, tau: float, top_p: float) -> torch.Tensor:
    """[N, V] -> [N] float64: the logit of the least probable class in the top_p
    nucleus of softmax(teacher / tau) (the nucleus is {j : T_j >= threshold})."""
    t = teacher.double()
    probs = torch.softmax(t / tau, dim=-1)
    sorted_p, order = probs.sort(dim=-1, descending=True, stable=True)
    cum = sorted_p.cumsum(dim=-1)
    k = (cum < top_p).sum(dim=-1, keepdim=True).clamp(max=t.shape[-1] - 1)
    return t.gather(-1, order.gather(-1, k)).squeeze(-1)


def nucleus_threshold_fixed(teacher: torch.Tensor, tau: float, top_p: float) -> torch.Tensor:
    """[N, V] -> [N] float64: the kernels' nucleus rule (module docstring) with exact
    float64 exp; rows with a NaN or +inf logit are left out (the kernels give them
    no nucleus and a NaN loss)."""
    t = teacher.double()
    x = t / tau
    e = torch.exp(x - x.max(dim=-1, keepdim=True).values).clamp(max=1.0)
    m = mass_fixed(e, t.shape[-1])
    sorted_t, order = t.sort(dim=-1, descending=True, stable=True)
    cum = m.gather(-1, order).cumsum(dim=-1)
    k = (cum < mass_target(cum[..., -1:], top_p)).sum(dim=-1, keepdim=True)
    return sorted_t.gather(-1, k.clamp(max=t.shape[-1] - 1)).squeeze(-1)


def nucleus_mask(teacher: torch.Tensor, tau: float, top_p: float) -> torch.Tensor:
    """[N, V] bool: the top_p nucleus of softmax(teacher / tau), ties included."""
    return teacher.double() >= nucleus_threshold(teacher, tau, top_p).unsqueeze(-1)


def sharpened_teacher_log_probs(teacher: torch.Tensor, tau: float = 1.0, top_p: float = 1.0,
                                delta: float = 2.0) -> torch.Tensor:
    """log t~ in float64: temperature tau, logits outside the top_p nucleus lowered by delta."""
    x = teacher.double() / tau
    if top_p < 1.0 and delta > 0.0:
        x = x - delta * (~nucleus_mask(teacher, tau, top_p)).double()
    return torch.log_softmax(x, dim=-1)


def _weights(weight, n, device):
    if weight is None:
        return torch.ones(n, dtype=torch.float64, device=device)
    return weight.double().reshape(n)


def generator_loss(student, teacher, aux, weight=None, tau=1.0, top_p=1.0, delta=2.0):
    """[N, V] logits -> [N] float64: w_n * sum_j p_j (log a_j - log t~_j), p = softmax(student).
    Differentiable w.r.t. student only (teacher and aux are treated as constants)."""
    p = torch.softmax(student.double(), dim=-1)
    d = torch.log_softmax(aux.detach().double(), dim=-1) - sharpened_teacher_log_probs(
        teacher.detach(), tau, top_p, delta)
    d = torch.where(p > 0, d, torch.zeros_like(d))  # 0 * inf := 0, gradient-safe
    w = _weights(weight, student.shape[0], student.device)
    loss = w * (p * d).sum(dim=-1)
    return torch.where(w == 0, torch.zeros_like(loss), loss)


def auxiliary_loss(aux, teacher, target, weight=None, tau=1.0, top_p=1.0, delta=2.0):
    """[N, V] logits -> [N] float64: -w_n * sum_j (y_j + t~_j) log a_j, a = softmax(aux);
    y = one-hot(target) for int64 ids [N], softmax(target) for logits [N, V] (detached).
    Differentiable w.r.t. aux only."""
    la = torch.log_softmax(aux.double(), dim=-1)
    if target.dtype == torch.int64:
        y = torch.nn.functional.one_hot(target, aux.shape[-1]).double()
    else:
        y = torch.softmax(target.detach().double(), dim=-1)
    c = y + sharpened_teacher_log_probs(teacher.detach(), tau, top_p, delta).exp()
    la = torch.where(c > 0, la, torch.zeros_like(la))
    w = _weights(weight, aux.shape[0], aux.device)
    loss = -w * (c * la).sum(dim=-1)
    return torch.where(w == 0, torch.zeros_like(loss), loss)
