"""Forward corruption z_t ~ q(z_t | x0) (kernel: csrc/*/corrupt.*,
reference: dmmd_ext.reference.corruption.corrupt)."""

from __future__ import annotations

import torch

from ._common import MASKED, as_rate, kernels, process_id


def corrupt(
    x0: torch.Tensor,
    alpha,
    process: str | int,
    vocab_size: int,
    mask_id: int | None = None,
    keep: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    offset: int = 0,
    validate: bool = True,
) -> torch.Tensor:
    """Corrupt clean tokens x0 (int32/int64, any shape, rows along dim 0).

    alpha is the keep probability a_t: a number, one per row ([B]) or one per
    token (x0.shape). Masked: a corrupted token becomes mask_id (default
    vocab_size). Uniform: it becomes a uniform draw from [0, vocab_size).
    keep (bool, x0.shape) marks positions never corrupted. Randomness: an
    explicit (seed, offset) gives the same result on CPU and CUDA; otherwise
    the generator (or the default one of x0's device) is used. validate=False
    skips the range checks, which synchronize on CUDA.
    """
    pid = process_id(process)
    if mask_id is None:
        mask_id = vocab_size if pid == MASKED else -1
    return kernels().corrupt(
        x0, as_rate(alpha, x0), pid, mask_id, vocab_size, keep, generator, seed, offset, validate
    )


@torch.library.register_fake("dmmd_ext::corrupt")
def _(x0, alpha, process, mask_id, vocab_size, keep=None, generator=None, seed=None, offset=0,
      validate=True):
    return torch.empty_like(x0, memory_format=torch.contiguous_format)
