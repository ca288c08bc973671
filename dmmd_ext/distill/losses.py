"""The one place where the trainer calls the D-MMD losses.

generator_loss / auxiliary_loss below forward to the fused kernels
ops.generator_loss / ops.auxiliary_loss when this build has them, and otherwise
to the pure-PyTorch functions in this file (same arguments, same semantics as
method.md section 2), so the trainer runs before the kernels land and a test
can compare the two. Rows are positions: inputs are [..., K] logits and
[...] weights, flattened to N rows.

    generator:  L_n = w_n sum_j p_j (log a_j - log t~_j)     (grad: student only)
    auxiliary:  L_n = -w_n sum_j (y_j + t~_j) log a_j         (grad: aux only)

p = softmax(student), a = softmax(aux), t~ = the sharpened teacher: logits / tau,
then a soft top-p correction (tokens outside the nucleus of mass top_p lose
delta nats, then renormalize). y = one-hot(target) for int64 targets (hard) or
softmax(target) for float student logits (soft).
"""

from __future__ import annotations

import torch

from .. import ops

__all__ = ["generator_loss", "auxiliary_loss", "sharpen_teacher", "fused_available"]


def fused_available() -> bool:
    return hasattr(ops, "generator_loss") and hasattr(ops, "auxiliary_loss")


def sharpen_teacher(teacher: torch.Tensor, tau: float = 1.0, top_p: float = 1.0,
                    delta: float = 2.0) -> torch.Tensor:
    """log t~ (float32 [..., K]): temperature, then soft top-p (the nucleus is the
    smallest set of most likely tokens whose mass reaches top_p, ties kept)."""
    lg = teacher.float() / tau
    if top_p < 1.0:
        logp = torch.log_softmax(lg, dim=-1)
        srt, idx = logp.sort(dim=-1, descending=True)
        before = srt.exp().cumsum(-1) - srt.exp()  # mass strictly above each token
        keep_sorted = before < top_p
        thresh = srt.masked_fill(~keep_sorted, float("inf")).amin(-1, keepdim=True)
        outside = logp < thresh
        lg = lg - outside.float() * delta
    return torch.log_softmax(lg, dim=-1)


def _weights(weight, n_rows_shape, device):
    if weight is None:
        return torch.ones(n_rows_shape, device=device)
    return weight.float().expand(n_rows_shape)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"reduction: expected 'none', 'sum' or 'mean', got {reduction!r}")


def _torch_generator_loss(student, teacher, aux, weight=None, tau=1.0, top_p=1.0, delta=2.0,
                          reduction="none"):
    logp = torch.log_softmax(student.float(), dim=-1)
    with torch.no_grad():
        d = torch.log_softmax(aux.float(), dim=-1) - sharpen_teacher(teacher, tau, top_p, delta)
        w = _weights(weight, student.shape[:-1], student.device)
    loss = w * (logp.exp() * d).sum(-1)
    return _reduce(loss, reduction)


def _torch_auxiliary_loss(aux, teacher, target, weight=None, tau=1.0, top_p=1.0, delta=2.0,
                          reduction="none"):
    loga = torch.log_softmax(aux.float(), dim=-1)
    with torch.no_grad():
        t = sharpen_teacher(teacher, tau, top_p, delta).exp()
        if target.dtype.is_floating_point:
            y = torch.softmax(target.float(), dim=-1)
        else:
            y = torch.nn.functional.one_hot(target.long(), aux.shape[-1]).float()
        w = _weights(weight, aux.shape[:-1], aux.device)
    loss = -w * ((y + t) * loga).sum(-1)
    return _reduce(loss, reduction)


def generator_loss(student, teacher, aux, weight=None, tau=1.0, top_p=1.0, delta=2.0,
                   reduction="none"):
    """D-MMD generator loss (see the module docstring); differentiable w.r.t.
    student only."""
    fn = ops.generator_loss if fused_available() else _torch_generator_loss
    return fn(student, teacher.detach(), aux.detach(), weight=weight, tau=tau, top_p=top_p,
              delta=delta, reduction=reduction)


def auxiliary_loss(aux, teacher, target, weight=None, tau=1.0, top_p=1.0, delta=2.0,
                   reduction="none"):
    """D-MMD auxiliary loss (see the module docstring); differentiable w.r.t.
    aux only. target: int64 ids (hard) or student logits (soft)."""
    fn = ops.auxiliary_loss if fused_available() else _torch_auxiliary_loss
    return fn(aux, teacher.detach(), target.detach(), weight=weight, tau=tau, top_p=top_p,
              delta=delta, reduction=reduction)
