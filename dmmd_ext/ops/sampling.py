"""Categorical sampling by Gumbel-max with exact-tail noise (kernel:
csrc/cpu/sample.cpp, csrc/cuda/sample.cu, shared row sampler semantics in
csrc/include/dmmd/sample.h; reference: dmmd_ext.reference.sampling)."""

from __future__ import annotations

import torch

from ._common import kernels


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
    rows are not read). If some scaled logits are +inf the draw is uniform
    among them. An explicit (seed, offset) gives bitwise-identical results on
    CPU and CUDA; otherwise the generator (or the device's default) is used.
    """
    return kernels().sample_categorical(
        logits, float(temperature), int(top_k), float(top_p), mask, int(exclude), generator,
        seed, int(offset)
    )


@torch.library.register_fake("dmmd_ext::sample_categorical")
def _(logits, temperature=1.0, top_k=0, top_p=1.0, mask=None, exclude=-1, generator=None,
      seed=None, offset=0):
    torch._check(logits.dim() >= 1, lambda: "logits: expected at least 1 dim")
    return logits.new_empty(logits.shape[:-1], dtype=torch.int64)
