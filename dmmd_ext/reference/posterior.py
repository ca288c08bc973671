"""Reference ancestral step (kernel: csrc/include/dmmd/posterior.h).

x comes from reference.sampling.sample_categorical on the rows that need it
(row = flat position, so the same Gumbel draws as the kernel); the move uses
Philox sub-stream 1, element = flat position: U = uniform_from_bits(words 0-1)
and, for the uniform component, floor(K * bits(words 2-3) / 2^64). The double
arithmetic is done op by op in the kernel's order, so for the same x the
result is bit-exact."""

from __future__ import annotations

import torch

from . import noise
from .corruption import _expand_rate
from .sampling import sample_categorical


def posterior_step(z_t, logits, alpha_t, alpha_s, process, mask_id=None, temperature=1.0,
                   top_k=0, top_p=1.0, *, seed: int, offset: int = 0):
    from ..ops._common import MASKED, process_id

    pid = process_id(process)
    K = logits.shape[-1]
    if mask_id is None:
        mask_id = K if pid == MASKED else -1
    z = z_t.reshape(-1).cpu().to(torch.int64)
    a_t = _expand_rate(alpha_t, z_t).reshape(-1).cpu()
    a_s = _expand_rate(alpha_s, z_t).reshape(-1).cpu()
    lg = logits.reshape(-1, K)
    need = z == mask_id if pid == MASKED else torch.ones_like(z, dtype=torch.bool)
    exclude = mask_id if (pid == MASKED and mask_id < K) else -1
    x = sample_categorical(lg, temperature, top_k, top_p, need, exclude, seed=seed, offset=offset)
    x = x.cpu()
    r = noise.philox_draw(seed, offset, 1, torch.arange(z.numel()))
    U = noise.uniform_from_bits(noise.lo64(r))
    bad = x < 0
    if pid == MASKED:
        reveal = (a_s - a_t) / (1.0 - a_t)
        hit = (a_s >= 1.0) | (U < reveal)
        zs = torch.where(need, torch.where(hit, x, torch.full_like(x, mask_id)), z)
        zs = torch.where(need & bad, -1, zs)
        xo = torch.where(need, x, z)
    else:
        A = torch.where(a_s > 0, a_t / torch.where(a_s > 0, a_s, 1.0), torch.ones_like(a_s))
        B = a_s
        u = 1.0 / K
        nA, nB = 1.0 - A, 1.0 - B
        wz = (A * nB) * u
        wz = torch.where(z == x, wz + A * B, wz)
        wx = (nA * B) * u
        wu = (nA * nB) * u
        total = (wz + wx) + wu
        Uc = U * total
        h = noise.hi64(r).tolist()
        tok = noise.uniform_int_from_bits([v & ((1 << 64) - 1) for v in h], K)
        zs = torch.where(Uc < wz, z, torch.where(Uc < wz + wx, x, tok))
        zs = torch.where(bad, -1, zs)
        xo = x
    dt, dev = z_t.dtype, z_t.device
    return zs.to(dt).reshape(z_t.shape).to(dev), xo.to(dt).reshape(z_t.shape).to(dev)
