"""Small helpers shared by the op wrappers."""

from __future__ import annotations

import operator

import torch

MASKED, UNIFORM = 0, 1
_PROCESSES = {"masked": MASKED, "absorbing": MASKED, "uniform": UNIFORM}


def process_id(process: str | int) -> int:
    """'masked' (alias 'absorbing') -> 0, 'uniform' -> 1."""
    if isinstance(process, int):
        if process not in (MASKED, UNIFORM):
            raise ValueError(f"process: expected 0 (masked) or 1 (uniform), got {process}")
        return process
    try:
        return _PROCESSES[process]
    except KeyError:
        raise ValueError(f"process: expected 'masked' or 'uniform', got {process!r}") from None


def as_rate(x, like):
    """A rate given as a Python number becomes a 0-dim float64 tensor on like's
    device, made by a fill (torch.full), not a host-to-device copy, so that a
    CUDA-graph capture can record it."""
    if isinstance(x, torch.Tensor):
        return x
    return torch.full((), float(x), dtype=torch.float64, device=like.device)


# The op namespace the wrappers call: the compiled kernels (torch.ops.dmmd_ext),
# or, inside dmmd_ext.simt.use(), the CUDA kernels run by the SIMT emulator on
# CPU tensors (torch.ops.dmmd_ext_simt). A one-element list so that switching
# it needs no `global` in the callers.
_KERNELS = [torch.ops.dmmd_ext]


def kernels():
    """The namespace of kernel ops the wrappers dispatch to."""
    return _KERNELS[0]


# ---- argument checks the schemas cannot state (messages name the argument,
# the rule and the value)

_U64 = 1 << 64
MAX_OFFSET = (1 << 61) - 1  # csrc/include/dmmd/philox.h kMaxOffset


def int_arg(x, name: str) -> int:
    """An integer argument (Python, NumPy or 0-dim integer tensor), not a float."""
    try:
        v = operator.index(x)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {type(x).__name__} {x!r}") from None
    if not -(1 << 63) <= v < 1 << 63:
        raise ValueError(f"{name}: expected an integer in [-2^63, 2^63), got {v}")
    return v


def float_arg(x, name: str) -> float:
    """A real-number argument as a Python float."""
    try:
        return float(x)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a real number, got {type(x).__name__} {x!r}") from None


def seed_arg(seed) -> int | None:
    """A seed in [-2^63, 2^64) as the int64 the ops take (seeds >= 2^63 are
    their two's-complement int64: the same 64-bit Philox key)."""
    if seed is None:
        return None
    try:
        s = operator.index(seed)
    except TypeError:
        raise TypeError(f"seed: expected an integer, got {type(seed).__name__} {seed!r}") from None
    if not -(1 << 63) <= s < _U64:
        raise ValueError(f"seed: expected an integer in [-2^63, 2^64) (a 64-bit key), got {s}")
    return s - _U64 if s >= 1 << 63 else s


def offset_arg(offset) -> int:
    """The call index of an explicit (seed, offset) in [0, 2^61)."""
    o = int_arg(offset, "offset")
    if not 0 <= o <= MAX_OFFSET:
        raise ValueError(f"offset: expected an integer in [0, 2^61) (it counts calls: each "
                         f"offset owns its own random numbers), got {o}")
    return o
