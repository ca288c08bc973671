"""Fake (meta) kernels of the RNG test hooks of csrc/ops.cpp: philox,
philox_block, gumbel_from_bits and exponential_from_bits expose the Philox
counter contract and the bits -> noise transforms to the tests
(tests/test_noise.py). They are CPU-only, deterministic functions of their
arguments; the fakes state their output shapes so that opcheck and
torch.compile can trace them like the other ops."""

from __future__ import annotations

import torch


@torch.library.register_fake("dmmd_ext::philox")
def _(seed, offset, sub_stream, elements):
    torch._check(elements.dtype == torch.int64, lambda: "elements: expected int64")
    return elements.new_empty((elements.numel(), 4), dtype=torch.int64)


@torch.library.register_fake("dmmd_ext::philox_block")
def _(counters, key):
    torch._check(counters.dim() == 2 and counters.shape[1] == 4,
                 lambda: "counters: expected int64 [n, 4]")
    return torch.empty_like(counters, memory_format=torch.contiguous_format)


@torch.library.register_fake("dmmd_ext::gumbel_from_bits")
def _(bits):
    return torch.empty_like(bits, dtype=torch.float32, memory_format=torch.contiguous_format)


@torch.library.register_fake("dmmd_ext::exponential_from_bits")
def _(bits):
    return torch.empty_like(bits, dtype=torch.float32, memory_format=torch.contiguous_format)
