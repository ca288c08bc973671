"""The D-MMD losses from hidden states and output heads, never holding the [N, V]
logits (kernels: the fused loss ops of dmmd_ext.ops.losses; reference: those ops
applied to `h @ W.T + b`).

A D-MMD step evaluates three models' logits at every position; at V = 50k-128k
those [N, V] tensors, their autograd copies and their gradient dominate memory.
Here rows are processed in chunks of C rows. Per chunk: the logit blocks
`h[rows] @ W.T + b` of every model in the loss, the loss kernel, its backward
kernel (d loss / d logits of the differentiable model), then
`dh[rows] = dlogits @ W`, `dW += dlogits.T @ h[rows]`, `db += dlogits.sum(0)`
(dW, db accumulated in float32). Extra memory: a few C x V blocks plus the
N x d and V x d gradients, never N x V. C comes from a memory budget for the
blocks (`memory_budget`, default DEFAULT_MEMORY_BUDGET: 32 MiB on CPU, 512 MiB
on CUDA, but at least DEFAULT_MIN_ROWS rows: 128 on CPU, 256 on CUDA) unless
`chunk_size` is given.

Gradients are computed during the forward for reduction 'sum' and 'mean', so the
backward only scales them by the incoming scalar. For reduction 'none' the
incoming gradient is per row and unknown in the forward: the forward computes
the loss only and the backward reruns the chunks with it. sum/mean scale their
saved gradients in place (no second V x d copy), so they allow one backward per
forward (a retain_graph rerun raises); reduction='none' then .sum() allows more.

Shapes: h [..., d] (leading dims flattened into N rows; teacher and auxiliary
hidden states share the student's leading dims but may have their own d), W
[V, d], b [V] or None, weight [...] / a number / None, as in ops.generator_loss.
Every model's head must give the same V. dtypes: float32, bfloat16, float16
(float32 accumulation, float32 loss) or float64; each model's h, W and b share
one dtype, and all models the same one, except under torch.autocast, where
they are cast to the autocast dtype as nn.Linear would be.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import kernels
from .losses import _REDUCTIONS, _acc_dtype, _weight

__all__ = ["linear_generator_loss", "linear_auxiliary_loss", "chunk_rows", "head_params",
           "has_fused_head", "DEFAULT_MEMORY_BUDGET", "DEFAULT_MIN_ROWS"]

# Bytes for one chunk's V-wide blocks, per device type, and the fewest rows a
# default chunk has whatever V is. Each chunk's matmuls read all of W (and BLAS
# packs it) once, so thin chunks pay that per few rows: on the 2-core AVX2 CPU,
# F.linear at 32 rows cost 1.7x per row what it costs at 512, 1.1x at 128
# (python/bench_fused_head.py, docs/benchmarks.md). CUDA: >= 256 rows keeps the
# matmuls compute bound.
DEFAULT_MEMORY_BUDGET = {"cuda": 512 << 20, "cpu": 32 << 20}
DEFAULT_MIN_ROWS = {"cuda": 256, "cpu": 128}
_VOCAB_SLICE = 8192  # dW rows per float32 product on CUDA (bounds its temporary)
_FLOATS = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
_AUTOCASTABLE = (torch.float32, torch.bfloat16, torch.float16)
# float32 products of low-precision matrices without float32 copies (CUDA only).
_MM_OUT_DTYPE = "dtype" in torch.ops.aten.mm.overloads()


# ---------------------------------------------------------------- model interface

def head_params(model) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight [V, d], bias [V] or None) of model.head: an nn.Linear or a
    (weight, bias) pair."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return head.weight, head.bias
    if isinstance(head, (tuple, list)) and len(head) == 2 and isinstance(head[0], torch.Tensor):
        return head[0], head[1]
    raise ValueError(f"{type(model).__name__}: the fused head needs model.head as an nn.Linear "
                     f"or a (weight, bias) pair, got {type(head).__name__}")


def has_fused_head(model) -> bool:
    """Whether model exposes hidden(z, t, noise=None) -> [B, L, d] and a head."""
    if not callable(getattr(model, "hidden", None)):
        return False
    try:
        head_params(model)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- chunking

def _upcasts(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether dW accumulation copies a low-precision dlogits block to float32."""
    return dtype in (torch.bfloat16, torch.float16) and not (device.type == "cuda"
                                                             and _MM_OUT_DTYPE)


def chunk_rows(n: int, vocab: int, dtype: torch.dtype, blocks: int,
               memory_budget: int | None = None, device="cpu") -> int:
    """Rows per chunk so that `blocks` [C, V] blocks of dtype (plus a float32 copy
    of dlogits where dW accumulation needs one) fit in memory_budget bytes; a
    multiple of 8 when at least 8, at most n. Without memory_budget: the device
    type's DEFAULT_MEMORY_BUDGET, but never fewer than its DEFAULT_MIN_ROWS rows
    (thin chunks make the matmuls slow; module comment). An explicit
    memory_budget is a hard limit."""
    device = torch.device(device)
    kind = device.type if device.type in DEFAULT_MEMORY_BUDGET else "cpu"
    budget = DEFAULT_MEMORY_BUDGET[kind] if memory_budget is None else int(memory_budget)
    if budget <= 0:
        raise ValueError(f"memory_budget: expected a number of bytes > 0, got {memory_budget}")
    per_row = max(1, vocab) * (blocks * dtype.itemsize
                               + (4 if _upcasts(dtype, device) else 0))
    rows = max(1, budget // per_row)
    if memory_budget is None:
        rows = max(rows, DEFAULT_MIN_ROWS[kind])
    if rows >= 8:
        rows -= rows % 8
    return int(min(rows, max(n, 1)))


def _chunk(n, vocab, dtype, blocks, chunk_size, memory_budget, device) -> int:
    if chunk_size is None:
        return chunk_rows(n, vocab, dtype, blocks, memory_budget, device)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected an int >= 1 (rows per chunk), got {chunk_size!r}")
    return chunk_size


def _add_mm(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """acc += a @ b with the products summed in acc's float32 (float64) precision.
    CUDA low precision: float32 products of a's row slices (no float32 copy of a;
    the temporary is a slice of acc, not all of it)."""
    if a.dtype == acc.dtype:
        acc.addmm_(a, b)
    elif a.is_cuda and _MM_OUT_DTYPE:
        for i in range(0, a.shape[0], _VOCAB_SLICE):
            acc[i:i + _VOCAB_SLICE].add_(torch.mm(a[i:i + _VOCAB_SLICE], b, out_dtype=acc.dtype))
    else:
        acc.addmm_(a.to(acc.dtype), b.to(acc.dtype))


def _run_chunks(h, w, b, n_chunk, block, grad_rows, need):
    """The chunk loop of the differentiable model (h [N, d], W, b in the compute
    dtype). block(rows, logits, grad_rows or None) -> (loss [C], dlogits or None)
    runs the kernels on one chunk. need = (dh, dW, db) flags; returns
    (loss [N], dh, dW, db) with None for what is not needed or not computed."""
    n, acc = h.shape[0], _acc_dtype(h)
    want = grad_rows is not None
    dw = torch.zeros(w.shape, dtype=acc, device=h.device) if want and need[1] else None
    db = torch.zeros(w.shape[0], dtype=acc, device=h.device) if want and need[2] else None
    losses, dhs = [], []
    for i in range(0, n, n_chunk):
        rows = slice(i, min(n, i + n_chunk))
        hc = h[rows]
        loss, dx = block(rows, F.linear(hc, w, b), None if not want else grad_rows[rows])
        losses.append(loss)
        if dx is None:
            continue
        if need[0]:
            dhs.append(dx @ w)
        if dw is not None:
            _add_mm(dw, dx.t(), hc)
        if db is not None:
            db.add_(dx.sum(0, dtype=acc))
        del dx  # before the next chunk's blocks exist
    loss = torch.cat(losses) if losses else h.new_zeros((0,), dtype=acc)
    dh = None
    if want and need[0]:
        dh = torch.cat(dhs) if dhs else torch.zeros_like(h)
    return loss, dh, dw, db


def _linear(h, w, b, rows):
    return F.linear(h[rows], w, b)


def _cast(dtype, *xs):
    return tuple(None if x is None else x.to(dtype) for x in xs)


def _no_autocast(device: torch.device):
    return torch.autocast(device.type, enabled=False)


def _grad_scale(n: int, reduction: str, like: torch.Tensor) -> torch.Tensor:
    scale = 1.0 / n if reduction == "mean" and n else 1.0
    return torch.full((n,), scale, dtype=_acc_dtype(like), device=like.device)


def _reduced(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()


def _out_grads(grads, g, originals):
    """Gradients in the inputs' dtypes; saved ones (g not None) scaled in place by
    the incoming scalar g, so that no second V x d copy exists. In place: a second
    backward through the same graph (retain_graph) fails autograd's saved-tensor
    version check instead of scaling twice."""
    return tuple(None if d is None else (d if g is None else d.mul_(g)).to(x.dtype)
                 for d, x in zip(grads, originals))


# ---------------------------------------------------------------- generator loss

class _GeneratorHead(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hs, ws, bs, ht, wt, bt, ha, wa, ba, weight, tau, top_p, delta,
                reduction, n_chunk, dtype, need):
        with _no_autocast(hs.device):
            args = _cast(dtype, hs, ws, bs, ht, wt, bt, ha, wa, ba)
            grad_rows = None
            if any(need) and reduction != "none":
                grad_rows = _grad_scale(hs.shape[0], reduction, args[0])
            loss, *grads = _gen_loop(args, weight, tau, top_p, delta, n_chunk, grad_rows, need)
        ctx.conf = (tau, top_p, delta, reduction, n_chunk, dtype, need)
        if reduction == "none":  # the backward reruns the chunks with its per-row gradient
            ctx.save_for_backward(hs, ws, bs, ht, wt, bt, ha, wa, ba, weight)
        else:
            ctx.save_for_backward(hs, ws, bs, *grads)
        return _reduced(loss, reduction)

    @staticmethod
    def backward(ctx, g):
        tau, top_p, delta, reduction, n_chunk, dtype, need = ctx.conf
        saved = ctx.saved_tensors
        if reduction == "none":
            hs, ws, bs, *rest = saved
            weight = rest[-1]
            with _no_autocast(hs.device):
                args = _cast(dtype, hs, ws, bs, *rest[:-1])
                _, *grads = _gen_loop(args, weight, tau, top_p, delta, n_chunk,
                                      g.detach().to(_acc_dtype(args[0])), need)
            grads = _out_grads(grads, None, (hs, ws, bs))
        else:
            hs, ws, bs, *grads = saved
            grads = _out_grads(grads, g, (hs, ws, bs))
        return (*grads,) + (None,) * 14


def _gen_loop(args, weight, tau, top_p, delta, n_chunk, grad_rows, need):
    hs, ws, bs, ht, wt, bt, ha, wa, ba = args
    k = kernels()

    def block(rows, s, g):
        t, a, w = _linear(ht, wt, bt, rows), _linear(ha, wa, ba, rows), weight[rows]
        loss, stats = k.moment_generator_loss(s, t, a, w, tau, top_p, delta)
        if g is None:
            return loss, None
        return loss, k.moment_generator_loss_backward(g, s, t, a, w, stats, tau, delta)

    return _run_chunks(hs, ws, bs, n_chunk, block, grad_rows, need)


def linear_generator_loss(h_student, w_student, h_teacher, w_teacher, h_aux, w_aux,
                          weight=None, tau: float = 1.0, top_p: float = 1.0, delta: float = 2.0,
                          reduction: str = "none", *, b_student=None, b_teacher=None,
                          b_aux=None, chunk_size: int | None = None,
                          memory_budget: int | None = None) -> torch.Tensor:
    """ops.generator_loss(h_student @ w_student.T + b_student, <teacher logits>,
    <aux logits>, weight, tau, top_p, delta, reduction) without the [N, V]
    logits (module docstring). Differentiable w.r.t. h_student, w_student and
    b_student; teacher and auxiliary are constants."""
    dtype = _check_heads({"student": (h_student, w_student, b_student),
                          "teacher": (h_teacher, w_teacher, b_teacher),
                          "aux": (h_aux, w_aux, b_aux)})
    _check_reduction(reduction)
    lead, vocab = h_student.shape[:-1], w_student.shape[0]
    flat = [(_rows(h), w, b) for h, w, b in ((h_student, w_student, b_student),
                                             (h_teacher, w_teacher, b_teacher),
                                             (h_aux, w_aux, b_aux))]
    n = flat[0][0].shape[0]
    rows_w = _weight(weight, lead, torch.empty(0, dtype=dtype, device=h_student.device))
    need = _needs_grad(w_student, h_student, b_student)
    n_chunk = _chunk(n, vocab, dtype, 4, chunk_size, memory_budget, h_student.device)
    loss = _GeneratorHead.apply(*flat[0], *flat[1], *flat[2], rows_w, float(tau), float(top_p),
                                float(delta), reduction, n_chunk, dtype, need)
    return loss.reshape(lead) if reduction == "none" else loss


# ---------------------------------------------------------------- auxiliary loss

class _AuxiliaryHead(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ha, wa, ba, ht, wt, bt, ids, hy, wy, by, weight, tau, top_p, delta,
                validate, reduction, n_chunk, dtype, need):
        with _no_autocast(ha.device):
            args = _cast(dtype, ha, wa, ba, ht, wt, bt) + (ids,) + _target_cast(dtype, hy, wy, by)
            grad_rows = None
            if any(need) and reduction != "none":
                grad_rows = _grad_scale(ha.shape[0], reduction, args[0])
            loss, *grads = _aux_loop(args, weight, tau, top_p, delta, validate, n_chunk,
                                     grad_rows, need)
        ctx.conf = (tau, top_p, delta, reduction, n_chunk, dtype, need)
        if reduction == "none":
            ctx.save_for_backward(ha, wa, ba, ht, wt, bt, ids, hy, wy, by, weight)
        else:
            ctx.save_for_backward(ha, wa, ba, *grads)
        return _reduced(loss, reduction)

    @staticmethod
    def backward(ctx, g):
        tau, top_p, delta, reduction, n_chunk, dtype, need = ctx.conf
        saved = ctx.saved_tensors
        if reduction == "none":
            ha, wa, ba, ht, wt, bt, ids, hy, wy, by, weight = saved
            with _no_autocast(ha.device):
                args = (_cast(dtype, ha, wa, ba, ht, wt, bt) + (ids,)
                        + _target_cast(dtype, hy, wy, by))
                _, *grads = _aux_loop(args, weight, tau, top_p, delta, False, n_chunk,
                                      g.detach().to(_acc_dtype(args[0])), need)
            grads = _out_grads(grads, None, (ha, wa, ba))
        else:
            ha, wa, ba, *grads = saved
            grads = _out_grads(grads, g, (ha, wa, ba))
        return (*grads,) + (None,) * 16


def _target_cast(dtype, hy, wy, by):
    """A soft target given as logits (wy None) keeps its dtype (checked equal)."""
    if wy is None:
        return hy, None, None
    return _cast(dtype, hy, wy, by)


def _aux_loop(args, weight, tau, top_p, delta, validate, n_chunk, grad_rows, need):
    ha, wa, ba, ht, wt, bt, ids, hy, wy, by = args
    k = kernels()

    def block(rows, a, g):
        t, w = _linear(ht, wt, bt, rows), weight[rows]
        i = None if ids is None else ids[rows]
        y = None if hy is None else hy[rows] if wy is None else _linear(hy, wy, by, rows)
        loss, stats = k.moment_auxiliary_loss(a, t, i, y, w, tau, top_p, delta, validate)
        if g is None:
            return loss, None
        return loss, k.moment_auxiliary_loss_backward(g, a, t, i, y, w, stats, tau, delta)

    return _run_chunks(ha, wa, ba, n_chunk, block, grad_rows, need)


def linear_auxiliary_loss(h_aux, w_aux, h_teacher, w_teacher, target, weight=None,
                          tau: float = 1.0, top_p: float = 1.0, delta: float = 2.0,
                          reduction: str = "none", validate: bool = True, *, b_aux=None,
                          b_teacher=None, chunk_size: int | None = None,
                          memory_budget: int | None = None) -> torch.Tensor:
    """ops.auxiliary_loss(h_aux @ w_aux.T + b_aux, <teacher logits>, target, weight,
    tau, top_p, delta, reduction, validate) without the [N, V] logits.

    target: int64 token ids [...] (hard), the student's logits [..., V] (soft;
    read a chunk at a time), or the student's head as (h_student, w_student) or
    (h_student, w_student, b_student) (soft, its logits never materialized).
    Soft targets are detached. Differentiable w.r.t. h_aux, w_aux and b_aux.
    validate checks the ids' range in every chunk (a synchronization per chunk
    on CUDA); validate=False skips it (an id outside [0, V) then gives NaN)."""
    heads = {"aux": (h_aux, w_aux, b_aux), "teacher": (h_teacher, w_teacher, b_teacher)}
    ids = hy = wy = by = None
    if isinstance(target, (tuple, list)):
        if len(target) not in (2, 3):
            raise ValueError("target: a student head is (h_student, w_student) or "
                             f"(h_student, w_student, b_student), got {len(target)} items")
        hy, wy, by = (*target, None)[:3]
        heads["student"] = (hy, wy, by)
    dtype = _check_heads(heads)
    _check_reduction(reduction)
    lead, vocab = h_aux.shape[:-1], w_aux.shape[0]
    if wy is None:
        ids, hy = _plain_target(target, lead, vocab, dtype, h_aux.device)
    else:
        hy = _rows(hy).detach()
        wy, by = wy.detach(), None if by is None else by.detach()
    n = _rows(h_aux).shape[0]
    rows_w = _weight(weight, lead, torch.empty(0, dtype=dtype, device=h_aux.device))
    need = _needs_grad(w_aux, h_aux, b_aux)
    blocks = 3 + (wy is not None)  # aux, teacher, dlogits (+ the student's logits)
    n_chunk = _chunk(n, vocab, dtype, blocks, chunk_size, memory_budget, h_aux.device)
    loss = _AuxiliaryHead.apply(_rows(h_aux), w_aux, b_aux, _rows(h_teacher), w_teacher,
                                b_teacher, ids, hy, wy, by, rows_w, float(tau), float(top_p),
                                float(delta), bool(validate), reduction, n_chunk, dtype, need)
    return loss.reshape(lead) if reduction == "none" else loss


def _plain_target(target, lead, vocab, dtype, device):
    """(ids [N] or None, soft logits [N, V] or None) from a tensor target."""
    if not isinstance(target, torch.Tensor):
        raise ValueError("target: expected int64 ids, the student's logits or a student head "
                         f"(h_student, w_student[, b_student]), got {type(target).__name__}")
    if target.device != device:
        raise ValueError(f"target: expected a tensor on {device} (h_aux's device), got "
                         f"{target.device}")
    if target.dtype == torch.int64:
        if target.shape != lead:
            raise ValueError(f"target: expected int64 ids of shape {tuple(lead)}, "
                             f"got {tuple(target.shape)}")
        return target.reshape(-1), None
    if not target.is_floating_point():
        raise ValueError(f"target: expected int64 ids or floating-point logits, got {target.dtype}")
    if target.shape != (*lead, vocab):
        raise ValueError(f"target: expected logits of shape {(*lead, vocab)}, "
                         f"got {tuple(target.shape)}")
    if target.dtype != dtype:
        raise ValueError(f"target: expected logits of dtype {dtype} (the heads' compute dtype), "
                         f"got {target.dtype}")
    return None, target.detach().reshape(-1, vocab)


# ---------------------------------------------------------------- argument checks

def _rows(h: torch.Tensor) -> torch.Tensor:
    return h.reshape(-1, h.shape[-1])


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")


def _needs_grad(w, h, b) -> tuple[bool, bool, bool]:
    """(dh, dW, db) wanted: grad mode on and the tensor requires grad."""
    on = torch.is_grad_enabled()
    return (on and h.requires_grad, on and w.requires_grad,
            on and b is not None and b.requires_grad)


def _autocast_dtype(h: torch.Tensor) -> torch.dtype | None:
    """The dtype torch.autocast would run h's matmuls in, None outside autocast."""
    dev = h.device.type
    if h.dtype in _AUTOCASTABLE and torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return None


def _check_heads(heads: dict) -> torch.dtype:
    """Shapes, dtypes and devices of every (h, W, b); returns the compute dtype.
    The first entry is the differentiable model, whose leading dims, V, device
    and dtype the others must match."""
    first = next(iter(heads))
    lead = vocab = device = dtype = None
    for name, (h, w, b) in heads.items():
        for arg, x in ((f"h_{name}", h), (f"w_{name}", w), (f"b_{name}", b)):
            if x is None and arg[0] == "b":
                continue
            if not isinstance(x, torch.Tensor):
                raise ValueError(f"{arg}: expected a tensor, got {type(x).__name__}")
            if x.dtype not in _FLOATS:
                raise ValueError(f"{arg}: expected a floating-point dtype {_FLOATS}, got {x.dtype}")
        if h.dim() < 1:
            raise ValueError(f"h_{name}: expected hidden states of shape [..., d], got a 0-dim "
                             "tensor")
        d = h.shape[-1]
        if w.dim() != 2 or w.shape[1] != d:
            raise ValueError(f"w_{name}: expected shape [V, {d}] (d = h_{name}'s last dim), "
                             f"got {tuple(w.shape)}")
        if b is not None and tuple(b.shape) != (w.shape[0],):
            raise ValueError(f"b_{name}: expected shape [{w.shape[0]}] (w_{name}'s V), "
                             f"got {tuple(b.shape)}")
        dt = _autocast_dtype(h)
        for arg, x in ((f"w_{name}", w), (f"b_{name}", b)):
            if x is not None and x.dtype != h.dtype and dt is None:
                raise ValueError(f"{arg}: expected dtype {h.dtype} (h_{name}'s), got {x.dtype}")
        for arg, x in ((f"h_{name}", h), (f"w_{name}", w), (f"b_{name}", b)):
            if x is not None and device is not None and x.device != device:
                raise ValueError(f"{arg}: expected a tensor on {device} (h_{first}'s device), "
                                 f"got {x.device}")
        dt = h.dtype if dt is None else dt
        if lead is None:
            lead, vocab, device, dtype = h.shape[:-1], w.shape[0], h.device, dt
            continue
        if h.shape[:-1] != lead:
            raise ValueError(f"h_{name}: expected leading dims {tuple(lead)} (h_{first}'s), "
                             f"got {tuple(h.shape[:-1])}")
        if w.shape[0] != vocab:
            raise ValueError(f"w_{name}: vocabulary size {w.shape[0]} differs from w_{first}'s "
                             f"{vocab}; every model's head must give the same V")
        if dt != dtype:
            raise ValueError(f"h_{name}: expected dtype {dtype} (h_{first}'s), got {dt}")
    return dtype
