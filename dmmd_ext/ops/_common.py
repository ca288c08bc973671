"""Small helpers shared by the op wrappers."""

from __future__ import annotations

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
