"""The RNG contract in Python: Philox4x32-10 on int64 tensors and the
bits -> noise transforms in float64 (csrc/include/dmmd/philox.h, noise.h).

Counter for one draw (philox_counter, mirroring philox_counter in philox.h):
(element_lo, element_hi, block_lo, 0x80000000 | block_hi) with
block = 4 * offset + sub_stream; key = the 64-bit seed. `offset` counts calls:
call `offset` owns blocks [4 offset, 4 offset + 4), one per sub-stream, so
different offsets never share a random number. The top bit of the last word
keeps every counter off the ones torch's own Philox users (curand /
at::Philox4_32: (offset/4 + calls, thread index), same key) can reach."""

from __future__ import annotations

import math

import torch

_M32 = 0xFFFFFFFF
_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85


def _mulhilo(a: int, b: torch.Tensor):
    p = b * a  # wraps modulo 2^64 in int64: the low 64 bits are exact
    return p & _M32, (p >> 32) & _M32


def philox4x32_10(ctr: torch.Tensor, key: tuple[int, int]) -> torch.Tensor:
    """ctr [..., 4] int64 words in [0, 2^32) -> [..., 4] output words."""
    c0, c1, c2, c3 = (ctr[..., i].clone() for i in range(4))
    k0, k1 = key[0] & _M32, key[1] & _M32
    for _ in range(10):
        lo0, hi0 = _mulhilo(_M0, c0)
        lo1, hi1 = _mulhilo(_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + _W0) & _M32, (k1 + _W1) & _M32
    return torch.stack([c0, c1, c2, c3], dim=-1)


_W_TAG = 0x80000000  # top bit of counter word w: never set by torch's counters


SUB_STREAMS_PER_CALL = 4
MAX_OFFSET = (1 << 61) - 1


def philox_counter(offset: int, sub_stream: int, elements: torch.Tensor) -> torch.Tensor:
    """[..., 4] int64 counter words for the given elements of one sub-stream of
    one call: (element_lo, element_hi, block_lo, 0x80000000 | block_hi)."""
    if not (0 <= offset <= MAX_OFFSET and 0 <= sub_stream < SUB_STREAMS_PER_CALL):
        raise ValueError(f"expected 0 <= offset < 2^61 and 0 <= sub_stream < "
                         f"{SUB_STREAMS_PER_CALL}, got offset={offset}, sub_stream={sub_stream}")
    block = offset * SUB_STREAMS_PER_CALL + sub_stream  # < 2^63
    e = elements.to(torch.int64)
    return torch.stack(
        [e & _M32, (e >> 32) & _M32, torch.full_like(e, block & _M32),
         torch.full_like(e, _W_TAG | (block >> 32))], dim=-1)


def philox_draw(seed: int, offset: int, sub_stream: int, elements: torch.Tensor) -> torch.Tensor:
    """Four words per logical element for one sub-stream of one call."""
    seed &= (1 << 64) - 1
    return philox4x32_10(philox_counter(offset, sub_stream, elements), (seed & _M32, seed >> 32))


def words_to_u64(lo: torch.Tensor, hi: torch.Tensor) -> list[int]:
    return [(int(h) << 32) | int(l) for l, h in zip(lo.tolist(), hi.tolist())]


def exponential_from_bits(k: int) -> float:
    """Exp(1) from 64 bits, in float64: E = -log(1 - v), v = (k + 1/2) 2^-64."""
    if k >> 63 == 0:
        return -math.log1p(-(k + 0.5) * 2.0**-64)
    return -math.log(((~k & ((1 << 64) - 1)) + 0.5) * 2.0**-64)


def gumbel_from_bits(k: int) -> float:
    return -math.log(exponential_from_bits(k))


def uniform_from_bits(k: torch.Tensor) -> torch.Tensor:
    """(k >> 11 + 1/2) 2^-53 for k given as int64 tensors holding 64-bit patterns."""
    top = (k >> 11) & ((1 << 53) - 1)
    return (top.to(torch.float64) + 0.5) * 2.0**-53


def uniform_int_from_bits(k: list[int], n: int) -> torch.Tensor:
    return torch.tensor([(x * n) >> 64 for x in k], dtype=torch.int64)


def lo64(r: torch.Tensor) -> torch.Tensor:
    """Words 0-1 of a draw as one int64 holding the 64-bit pattern."""
    return (r[..., 1] << 32) | r[..., 0]


def hi64(r: torch.Tensor) -> torch.Tensor:
    return (r[..., 3] << 32) | r[..., 2]


def exponential_from_bits_t(k: torch.Tensor) -> torch.Tensor:
    """exponential_from_bits on an int64 tensor of 64-bit patterns, in float64."""
    top0 = k >= 0  # bit 63 clear: v = (k + 1/2) 2^-64 < 1/2
    v = (k.to(torch.float64) + 0.5) * 2.0**-64
    w = ((~k).to(torch.float64) + 0.5) * 2.0**-64  # 1 - v, exact from the complement
    return torch.where(top0, -torch.log1p(-v), -torch.log(w))


def gumbel_from_bits_t(k: torch.Tensor) -> torch.Tensor:
    """gumbel_from_bits on an int64 tensor of 64-bit patterns, in float64."""
    return -torch.log(exponential_from_bits_t(k))
