"""dmmd_ext: Discrete Moment Matching Distillation for discrete diffusion models,
with fused C++/CUDA kernels registered as torch ops (torch.ops.dmmd_ext.*)."""

from __future__ import annotations

from ._loader import load as _load

_BUILD_INFO = _load()

from . import ops, reference  # noqa: E402  (ops need the kernels loaded)

__version__ = "0.1.0"


def build_info() -> dict:
    """What the kernels were built with: torch version, CUDA kernels and their
    architectures, compiler versions."""
    return dict(_BUILD_INFO)


__all__ = ["build_info", "ops", "reference", "__version__"]
