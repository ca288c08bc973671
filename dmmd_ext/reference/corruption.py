"""Reference forward corruption (kernel: csrc/include/dmmd/corrupt.h).

Token i (flat, row-major index) with keep rate a_i and not protected by
`keep` is corrupted iff U_i < 1 - a_i, with U_i = uniform_from_bits(words 0-1
of the Philox draw (seed, offset, sub-stream 0, element i)). A corrupted
token becomes mask_id (masked) or floor(K * bits64(words 2-3) / 2^64)
(uniform over [0, K), possibly x0 itself)."""

from __future__ import annotations

import torch

from . import noise


def _expand_rate(alpha, x0: torch.Tensor) -> torch.Tensor:
    a = torch.as_tensor(alpha, dtype=torch.float64, device=x0.device)
    if a.dim() == 0 or a.shape == x0.shape:
        return a.expand(x0.shape)
    return a.reshape((-1,) + (1,) * (x0.dim() - 1)).expand(x0.shape)


def corrupt(x0, alpha, process, vocab_size, mask_id=None, keep=None, *, seed: int, offset: int = 0):
    from ..ops._common import MASKED, process_id

    pid = process_id(process)
    if mask_id is None:
        mask_id = vocab_size if pid == MASKED else -1
    x = x0.reshape(-1).cpu().to(torch.int64)
    a = _expand_rate(alpha, x0).reshape(-1).cpu()
    r = noise.philox_draw(seed, offset, 0, torch.arange(x.numel()))
    hit = noise.uniform_from_bits(noise.lo64(r)) < (1.0 - a)
    if keep is not None:
        hit &= ~keep.reshape(-1).cpu()
    if pid == MASKED:
        repl = torch.full_like(x, mask_id)
    else:
        h = noise.hi64(r).tolist()
        repl = noise.uniform_int_from_bits([v & ((1 << 64) - 1) for v in h], vocab_size)
    out = torch.where(hit, repl, x)
    return out.to(x0.dtype).reshape(x0.shape).to(x0.device)
