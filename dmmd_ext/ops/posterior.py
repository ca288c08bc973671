"""One ancestral step z_t -> (z_s, x): x ~ Cat(sharpened logits), then
z_s ~ q(z_s | z_t, x) (kernel: csrc/cpu/posterior.cpp, csrc/cuda/posterior.cu,
math in csrc/include/dmmd/posterior.h; reference:
dmmd_ext.reference.posterior.posterior_step)."""

from __future__ import annotations

import torch

from ._common import MASKED, as_rate, kernels, process_id


def posterior_step(
    z_t: torch.Tensor,
    logits: torch.Tensor,
    alpha_t,
    alpha_s,
    process: str | int,
    mask_id: int | None = None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    offset: int = 0,
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step from time t to s < t given denoiser logits [B, L, K] for z_t [B, L].

    alpha_t, alpha_s (a_s >= a_t) are numbers, [B] or [B, L]. Returns (z_s, x)
    in z_t's dtype. Masked (mask_id default K): unmasked positions are carried
    over (x = z_t, their logits are not read); a MASK becomes x ~ Cat(logits)
    with probability (a_s - a_t) / (1 - a_t), 1 at a_s = 1. Uniform: x at every
    position, z_s ~ q(z_s | z_t, x). temperature/top_k/top_p sharpen the draw
    of x as in sample_categorical; a logits column at mask_id is never drawn.
    A position whose logits row is invalid (NaN) gets x = z_s = -1.
    validate=False skips the range checks, which synchronize on CUDA.
    """
    pid = process_id(process)
    if mask_id is None:
        mask_id = logits.shape[-1] if pid == MASKED else -1
    return kernels().posterior_step(
        z_t, logits, as_rate(alpha_t, z_t), as_rate(alpha_s, z_t), pid, int(mask_id),
        float(temperature), int(top_k), float(top_p), generator, seed, int(offset), validate
    )


@torch.library.register_fake("dmmd_ext::posterior_step")
def _(z_t, logits, alpha_t, alpha_s, process, mask_id, temperature=1.0, top_k=0, top_p=1.0,
      generator=None, seed=None, offset=0, validate=True):
    z_s = torch.empty_like(z_t, memory_format=torch.contiguous_format)
    return z_s, torch.empty_like(z_s)
