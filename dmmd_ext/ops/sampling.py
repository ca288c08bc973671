"""Categorical sampling by Gumbel-max with exact-tail noise (kernel:
csrc/cpu/sample.cpp, csrc/cuda/sample.cu, shared row sampler semantics in
csrc/include/dmmd/sample.h; reference: dmmd_ext.reference.sampling)."""

from __future__ import annotations

import torch

from ._common import float_arg, int_arg, kernels, offset_arg, seed_arg


def sample_categorical(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    mask: torch.Tensor | None = None,
    exclude: int = -1,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """One class id per row of logits [..., V] (fp32/bf16/fp16) -> int64 [...].

    Draws from softmax(logits / temperature) restricted to: classes other than
    `exclude`; the top_k largest (0 = off, ties at the threshold kept); the
    nucleus of mass top_p (ties kept). Rows where `mask` (bool [...]) is False,
    rows with a NaN logit, and rows with no class above -inf return -1 (masked
    rows are not read). If some logits are +inf the draw is uniform among them.

    Ranges: temperature finite and >= 1e-300 (the row's largest logit is
    removed before scaling, in float64, so no accepted logit or temperature
    overflows or loses the noise: the draw is an exact Gumbel-max draw of
    softmax(logits / temperature) up to float32 noise at every scale); top_k
    >= 0; top_p in (0, 1]; exclude -1 or a class id in [0, V).

    Randomness: with an explicit `seed`, `offset` counts calls: each
    (seed, offset) owns its own block of the Philox stream, disjoint from every
    other offset's, so offsets 0, 1, 2, ... give independent draws (use a new
    offset for every call that must be independent); the same (seed, offset)
    gives bitwise the same result on CPU and CUDA. seed: an integer in
    [-2^63, 2^64); offset: an integer in [0, 2^61). Without a seed the
    generator (or the device's default one) is used and advanced.
    """
    return kernels().sample_categorical(
        logits, float_arg(temperature, "temperature"), int_arg(top_k, "top_k"),
        float_arg(top_p, "top_p"), mask, int_arg(exclude, "exclude"), generator, seed_arg(seed),
        offset_arg(offset))


@torch.library.register_fake("dmmd_ext::sample_categorical")
def _(logits, temperature=1.0, top_k=0, top_p=1.0, mask=None, exclude=-1, generator=None,
      seed=None, offset=0):
    torch._check(logits.dim() >= 1, lambda: "logits: expected at least 1 dim")
    return logits.new_empty(logits.shape[:-1], dtype=torch.int64)
