"""One ancestral step z_t -> (z_s, x): x ~ Cat(sharpened logits), then
z_s ~ q(z_s | z_t, x) (kernel: csrc/cpu/posterior.cpp, csrc/cuda/posterior.cu,
math in csrc/include/dmmd/posterior.h; reference:
dmmd_ext.reference.posterior.posterior_step)."""

from __future__ import annotations

import torch

from ._common import (MASKED, as_rate, float_arg, int_arg, kernels, offset_arg, process_id,
                      seed_arg)


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

    Ranges: alpha_t, alpha_s in [0, 1] with alpha_s >= alpha_t; z_t ids in
    [0, K) (or mask_id); temperature, top_k, top_p as in sample_categorical.
    validate=False skips the value checks, which synchronize on CUDA.

    Randomness: with an explicit `seed`, `offset` counts calls (one per step):
    each (seed, offset) owns its own block of the Philox stream, disjoint from
    every other offset's, so steps at offsets 0, 1, 2, ... are independent;
    the same (seed, offset) gives the same result on CPU and CUDA. seed: an
    integer in [-2^63, 2^64); offset: an integer in [0, 2^61). Without a seed
    the generator (or the device's default one) is used and advanced.
    """
    pid = process_id(process)
    mask_id = (logits.shape[-1] if pid == MASKED else -1) if mask_id is None else int_arg(
        mask_id, "mask_id")
    return kernels().posterior_step(
        z_t, logits, as_rate(alpha_t, z_t), as_rate(alpha_s, z_t), pid, mask_id,
        float_arg(temperature, "temperature"), int_arg(top_k, "top_k"),
        float_arg(top_p, "top_p"), generator, seed_arg(seed), offset_arg(offset), validate
    )


@torch.library.register_fake("dmmd_ext::posterior_step")
def _(z_t, logits, alpha_t, alpha_s, process, mask_id, temperature=1.0, top_k=0, top_p=1.0,
      generator=None, seed=None, offset=0, validate=True):
    z_s = torch.empty_like(z_t, memory_format=torch.contiguous_format)
    return z_s, torch.empty_like(z_s)
