"""Fused logit-moment losses of D-MMD (kernels: csrc/*/moment_loss.*, reference:
dmmd_ext.reference.losses). Functional wrappers, their fake kernels and
autograd, and thin nn.Module wrappers.

Shapes: logits [..., V] (leading dimensions are flattened into rows), weight
[...] or None (all ones), loss [...] before reduction. Logits may be float32,
bfloat16, float16 (float32 accumulation; loss float32) or float64 (float64
throughout, for gradcheck); student/teacher/aux must share one dtype. The
last dimension must have stride 1 or the kernel copies the tensor; any row
stride is read in place.

Special values (per row): a class with logit -inf has probability 0 and adds
nothing where it is weighted by 0 (0 * -inf := 0). Generator loss: p_j > 0 with
A_j = -inf gives -inf, with T_j = -inf gives +inf, with both NaN. Auxiliary
loss: y_j + t~_j > 0 with A_j = -inf gives +inf. A row of S, T or A without a
finite logit, or with a NaN or +inf logit, gives NaN for that row only; rows
with weight 0 give 0 (loss and gradient) whatever their logits hold.

Ranges: tau in [1e-30, 1e30]; top_p in (0, 1]; delta finite >= 0; V >= 1
when there are rows. The teacher's row maximum is removed before dividing by
tau, so the losses are shift-invariant in each logit row to the precision of
the centred logits, for any tau. Gradients are first order only: differentiating
a gradient of these losses again (double backward) raises an error.
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import float_arg, kernels

_REDUCTIONS = ("none", "sum", "mean")


def _acc_dtype(logits: torch.Tensor) -> torch.dtype:
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def _rows(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dim() < 1:
        raise ValueError(f"{name}: expected logits of shape [..., V], got a 0-dim tensor")
    if x.shape[-1] == 0 and x.numel() == 0 and x.shape[:-1].numel() > 0:
        raise ValueError(f"{name}: expected V = {name}.shape[-1] >= 1 classes, got shape "
                         f"{tuple(x.shape)}")
    return x.reshape(x.shape[:-1].numel(), x.shape[-1])


def _weight(weight, lead: torch.Size, logits: torch.Tensor) -> torch.Tensor:
    dt = _acc_dtype(logits)
    if weight is None:
        return torch.ones(lead.numel(), dtype=dt, device=logits.device)
    if not isinstance(weight, torch.Tensor):
        return torch.full((lead.numel(),), float(weight), dtype=dt, device=logits.device)
    if weight.shape != lead:
        raise ValueError(f"weight: expected shape {tuple(lead)} (the logits' leading dims), "
                         f"got {tuple(weight.shape)}")
    return weight.detach().to(dt).reshape(-1)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":  # over rows (positions), weight-0 rows included
        return loss.mean()
    raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")


def generator_loss(student: torch.Tensor, teacher: torch.Tensor, aux: torch.Tensor,
                   weight=None, tau: float = 1.0, top_p: float = 1.0, delta: float = 2.0,
                   reduction: str = "none") -> torch.Tensor:
    """D-MMD generator loss per row: w * sum_j p_j (log a_j - log t~_j).

    p = softmax(student), a = softmax(aux), t~ = the teacher sharpened by
    temperature tau and a soft top-p correction (logits outside the top_p
    nucleus lowered by delta, then renormalized; top_p = 1 skips it).
    Differentiable w.r.t. student only: teacher, aux and weight are constants.
    """
    lead = student.shape[:-1]
    loss, _ = kernels().moment_generator_loss(
        _rows(student, "student"), _rows(teacher.detach(), "teacher"), _rows(aux.detach(), "aux"),
        _weight(weight, lead, student), float_arg(tau, "tau"), float_arg(top_p, "top_p"),
        float_arg(delta, "delta"))
    return _reduce(loss.reshape(lead), reduction)


def auxiliary_loss(aux: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor,
                   weight=None, tau: float = 1.0, top_p: float = 1.0, delta: float = 2.0,
                   reduction: str = "none", validate: bool = True) -> torch.Tensor:
    """D-MMD auxiliary loss per row: -w * sum_j (y_j + t~_j) log a_j.

    target: int64 token ids [...] (hard, y = one-hot) or the student's logits
    [..., V] (soft, y = softmax(target), detached). t~ as in generator_loss.
    Differentiable w.r.t. aux only. validate=False skips the id range check
    (it synchronizes on CUDA); an id outside [0, V) then gives NaN.
    """
    lead = aux.shape[:-1]
    if target.dtype == torch.int64:
        if target.shape != lead:
            raise ValueError(f"target: expected int64 ids of shape {tuple(lead)}, "
                             f"got {tuple(target.shape)}")
        ids, soft = target.reshape(-1), None
    elif target.is_floating_point():
        ids, soft = None, _rows(target.detach(), "target")
    else:
        raise ValueError(f"target: expected int64 ids or floating-point logits, got {target.dtype}")
    loss, _ = kernels().moment_auxiliary_loss(
        _rows(aux, "aux"), _rows(teacher.detach(), "teacher"), ids, soft,
        _weight(weight, lead, aux), float_arg(tau, "tau"), float_arg(top_p, "top_p"),
        float_arg(delta, "delta"), validate)
    return _reduce(loss.reshape(lead), reduction)


class GeneratorLoss(nn.Module):
    """Module form of generator_loss (default reduction: mean over rows)."""

    def __init__(self, tau: float = 1.0, top_p: float = 1.0, delta: float = 2.0,
                 reduction: str = "mean"):
        super().__init__()
        self.tau, self.top_p, self.delta, self.reduction = tau, top_p, delta, reduction

    def forward(self, student, teacher, aux, weight=None):
        return generator_loss(student, teacher, aux, weight, self.tau, self.top_p, self.delta,
                              self.reduction)


class AuxiliaryLoss(nn.Module):
    """Module form of auxiliary_loss (default reduction: mean over rows)."""

    def __init__(self, tau: float = 1.0, top_p: float = 1.0, delta: float = 2.0,
                 reduction: str = "mean"):
        super().__init__()
        self.tau, self.top_p, self.delta, self.reduction = tau, top_p, delta, reduction

    def forward(self, aux, teacher, target, weight=None):
        return auxiliary_loss(aux, teacher, target, weight, self.tau, self.top_p, self.delta,
                              self.reduction)


# ---- fake kernels (torch.compile, meta tensors)

def _fake_loss(logits, n_stats):
    dt = _acc_dtype(logits)
    n = logits.shape[0]
    return logits.new_empty((n,), dtype=dt), logits.new_empty((n, n_stats), dtype=dt)


@torch.library.register_fake("dmmd_ext::moment_generator_loss")
def _(student, teacher, aux, weight, tau=1.0, top_p=1.0, delta=2.0):
    return _fake_loss(student, 8)


@torch.library.register_fake("dmmd_ext::moment_generator_loss_backward")
def _(grad_loss, student, teacher, aux, weight, stats, tau, delta):
    return torch.empty_like(student, memory_format=torch.contiguous_format)


@torch.library.register_fake("dmmd_ext::moment_auxiliary_loss")
def _(aux, teacher, target_ids, target_logits, weight, tau=1.0, top_p=1.0, delta=2.0,
      validate=True):
    return _fake_loss(aux, 7)


@torch.library.register_fake("dmmd_ext::moment_auxiliary_loss_backward")
def _(grad_loss, aux, teacher, target_ids, target_logits, weight, stats, tau, delta):
    return torch.empty_like(aux, memory_format=torch.contiguous_format)


# ---- autograd: the backward kernels recompute from the saved per-row stats

def _gen_setup(ctx, inputs, output):
    student, teacher, aux, weight, tau, _top_p, delta = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(student, teacher, aux, weight, output[1])
    ctx.tau, ctx.delta = tau, delta


def _aux_setup(ctx, inputs, output):
    aux, teacher, ids, soft, weight, tau, _top_p, delta, _validate = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(aux, teacher, ids, soft, weight, output[1])
    ctx.tau, ctx.delta = tau, delta


def register_autograd(ns: str) -> None:
    """Autograd of the loss ops of namespace `ns`: dmmd_ext here, dmmd_ext_simt
    when dmmd_ext.simt loads the emulated CUDA kernels."""
    kern = getattr(torch.ops, ns)

    def gen_backward(ctx, grad_loss, _grad_stats):
        student, teacher, aux, weight, stats = ctx.saved_tensors
        d_student = None
        if ctx.needs_input_grad[0]:
            d_student = kern.moment_generator_loss_backward(
                grad_loss, student, teacher, aux, weight, stats, ctx.tau, ctx.delta)
        return d_student, None, None, None, None, None, None

    def aux_backward(ctx, grad_loss, _grad_stats):
        aux, teacher, ids, soft, weight, stats = ctx.saved_tensors
        d_aux = None
        if ctx.needs_input_grad[0]:
            d_aux = kern.moment_auxiliary_loss_backward(
                grad_loss, aux, teacher, ids, soft, weight, stats, ctx.tau, ctx.delta)
        return d_aux, None, None, None, None, None, None, None, None

    torch.library.register_autograd(f"{ns}::moment_generator_loss", gen_backward,
                                    setup_context=_gen_setup)
    torch.library.register_autograd(f"{ns}::moment_auxiliary_loss", aux_backward,
                                    setup_context=_aux_setup)
    # The backward ops are not differentiable: differentiating through them
    # (create_graph=True, then a second grad) gets a clear error instead of
    # None or torch's "appears to not have been used in the graph".
    for op, loss in (("moment_generator_loss_backward", "generator_loss"),
                     ("moment_auxiliary_loss_backward", "auxiliary_loss")):
        torch.library.register_autograd(f"{ns}::{op}", _no_double_backward(loss),
                                        setup_context=_no_setup)


def _no_setup(ctx, inputs, output):
    pass


def _no_double_backward(loss: str):
    def backward(ctx, *grads):
        raise RuntimeError(
            f"dmmd_ext.ops.{loss}: double backward is not supported (its gradient was "
            f"differentiated again, e.g. after autograd.grad(..., create_graph=True)); "
            f"use the reference implementation dmmd_ext.reference.{loss} for higher-order "
            f"gradients")
    return backward


register_autograd("dmmd_ext")
