"""Baselines the benchmark suite compares dmmd_ext's ops with: the same computation
written with eager PyTorch ops (float32 math, as a user would write it; these are
also what `torch.compile` is given), and adapters for Liger-Kernel and FlashInfer
where those are installed (CUDA only; they are never imported on CPU).

Semantics match dmmd_ext.reference up to the random stream: eager sampling uses
torch's generator (multinomial, or 24-bit Gumbel noise from torch.rand, which is
not exact in the tail), dmmd_ext uses keyed Philox with 64-bit exact-tail noise.
"""

from __future__ import annotations

import importlib

import torch

# ---- logit-moment losses -------------------------------------------------------------------


def sharpened_log_probs(t, tau, top_p, delta):
    """log t~: teacher at temperature tau, logits outside the top_p nucleus lowered by
    delta (sort-based nucleus), renormalized."""
    x = t.float() / tau
    if top_p < 1.0 and delta > 0.0:
        probs = torch.softmax(x, -1)
        sp, order = probs.sort(-1, descending=True)
        k = (sp.cumsum(-1) < top_p).sum(-1, keepdim=True).clamp(max=x.shape[-1] - 1)
        thr = x.gather(-1, order.gather(-1, k))
        x = x - delta * (x < thr).float()
    return torch.log_softmax(x, -1)


def generator_loss(s, t, a, w, tau=1.0, top_p=1.0, delta=2.0):
    p = torch.softmax(s.float(), -1)
    d = torch.log_softmax(a.float(), -1) - sharpened_log_probs(t, tau, top_p, delta)
    return w * (p * d).sum(-1)


def auxiliary_loss(a, t, target, w, tau=1.0, top_p=1.0, delta=2.0):
    """target: int64 ids (hard) or the student's logits (soft)."""
    log_a = torch.log_softmax(a.float(), -1)
    soft = sharpened_log_probs(t, tau, top_p, delta).exp()
    if target.dtype == torch.int64:
        hard = log_a.gather(-1, target[..., None]).squeeze(-1)
        return -w * (hard + (soft * log_a).sum(-1))
    return -w * ((torch.softmax(target.float(), -1) + soft) * log_a).sum(-1)


# ---- sampling ------------------------------------------------------------------------------


def top_p_filter(x, top_p):
    srt, idx = x.sort(-1, descending=True)
    probs = srt.softmax(-1)
    drop = probs.cumsum(-1) - probs >= top_p
    srt = srt.masked_fill(drop, float("-inf"))
    return torch.full_like(x, float("-inf")).scatter(-1, idx, srt)


def sample_multinomial(l, T=1.0, top_k=0, top_p=1.0):
    """softmax then torch.multinomial (top-k: torch.topk first; top-p: sort filter)."""
    x = l.float() / T
    if top_k:
        v, i = x.topk(top_k, -1)
        j = torch.multinomial(v.softmax(-1).reshape(-1, top_k), 1).reshape(v.shape[:-1])
        return i.gather(-1, j[..., None]).squeeze(-1)
    if top_p < 1.0:
        x = top_p_filter(x, top_p)
    p = x.softmax(-1)
    return torch.multinomial(p.reshape(-1, p.shape[-1]), 1).reshape(p.shape[:-1])


def sample_gumbel(l, T=1.0, top_k=0, top_p=1.0):
    """argmax(l / T + Gumbel) with 24-bit noise from torch.rand (fusable; what
    torch.compile is given)."""
    x = l.float() / T
    if top_k:
        thr = x.topk(top_k, -1).values[..., -1:]
        x = x.masked_fill(x < thr, float("-inf"))
    elif top_p < 1.0:
        x = top_p_filter(x, top_p)
    u = torch.rand_like(x)
    return (x - torch.log(-torch.log(u))).argmax(-1)


# ---- posterior step and corruption ------------------------------------------------------------


def posterior_step(z, logits, a_t, a_s, process, mask_id, sampler=sample_multinomial):
    """x ~ Cat(softmax(logits)) for every position, then the posterior move."""
    K = logits.shape[-1]
    x = sampler(logits).to(z.dtype)
    u = torch.rand(z.shape, device=z.device, dtype=torch.float64)
    if process == "masked":
        masked = z == mask_id
        reveal = u < (a_s - a_t) / (1 - a_t)
        return torch.where(masked & reveal, x, z), torch.where(masked, x, z)
    A, B = a_t / a_s, a_s
    wz = A * (1 - B) / K + torch.where(z == x, A * B, 0.0)
    wx = (1 - A) * B / K
    wu = (1 - A) * (1 - B) / K
    U = u * (wz + wx + wu)
    tok = torch.randint(0, K, z.shape, device=z.device, dtype=z.dtype)
    return torch.where(U < wz, z, torch.where(U < wz + wx, x, tok)), x


def corrupt(x0, a, process, K):
    hit = torch.rand(x0.shape, device=x0.device) < (1 - a)[:, None]
    repl = (torch.full_like(x0, K) if process == "masked"
            else torch.randint(0, K, x0.shape, device=x0.device, dtype=x0.dtype))
    return torch.where(hit, repl, x0)


# ---- optional third-party baselines (CUDA) ---------------------------------------------------


def optional_module(name: str):
    """The module if it imports, else None (any import error: these are optional)."""
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a broken optional install is as good as absent
        return None


def liger_functions():
    """Liger-Kernel's JSD, KL and cross-entropy autograd functions, or None."""
    jsd = optional_module("liger_kernel.ops.jsd")
    kl = optional_module("liger_kernel.ops.kl_div")
    ce = optional_module("liger_kernel.ops.cross_entropy")
    if not (jsd and kl and ce):
        return None
    return {"jsd": jsd.LigerJSDFunction.apply, "kl": kl.LigerKLDivLossFunction.apply,
            "ce": ce.LigerCrossEntropyFunction.apply}


def flashinfer_sampling():
    return optional_module("flashinfer.sampling")


def version_of(dist: str) -> str | None:
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:  # noqa: BLE001
        return None
