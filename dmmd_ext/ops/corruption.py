"""Forward corruption z_t ~ q(z_t | x0) (kernel: csrc/*/corrupt.*,
reference: dmmd_ext.reference.corruption.corrupt)."""

from __future__ import annotations

import torch

from ._common import MASKED, as_rate, int_arg, kernels, offset_arg, process_id, seed_arg


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
    keep (bool, x0.shape) marks positions never corrupted.

    Ranges: vocab_size >= 1; alpha in [0, 1] (NaN rejected); x0 ids in
    [0, vocab_size); mask_id >= vocab_size (masked). int32 tokens need mask_id
    (masked) or vocab_size - 1 (uniform) <= 2^31 - 1, which the op checks (the
    id would wrap otherwise). validate=False skips the value checks on x0 and
    alpha, which synchronize on CUDA.

    Randomness: with an explicit `seed`, `offset` counts calls: each
    (seed, offset) owns its own block of the Philox stream, disjoint from every
    other offset's, so offsets 0, 1, 2, ... give independent draws; the same
    (seed, offset) gives the same result on CPU and CUDA. seed: an integer in
    [-2^63, 2^64); offset: an integer in [0, 2^61). Without a seed the
    generator (or the default one of x0's device) is used and advanced.
    """
    pid = process_id(process)
    vocab_size = int_arg(vocab_size, "vocab_size")
    mask_id = (vocab_size if pid == MASKED else -1) if mask_id is None else int_arg(mask_id,
                                                                                    "mask_id")
    return kernels().corrupt(
        x0, as_rate(alpha, x0), pid, mask_id, vocab_size, keep, generator, seed_arg(seed),
        offset_arg(offset), validate
    )


@torch.library.register_fake("dmmd_ext::corrupt")
def _(x0, alpha, process, mask_id, vocab_size, keep=None, generator=None, seed=None, offset=0,
      validate=True):
    return torch.empty_like(x0, memory_format=torch.contiguous_format)
