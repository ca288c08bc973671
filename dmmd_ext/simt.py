"""The project's CUDA kernels (csrc/cuda/*.cu) run on the CPU by the SIMT
emulator (csrc/simt/), for testing them without a GPU.

Built only when asked (DMMD_EXT_SIMT=1 at build time; the test command does):
`dmmd_ext._simt` (optimized) and `dmmd_ext._simt_asan` (ASan + UBSan; load it
only in a process started with libasan preloaded). Both register the real
kernels, with the real schemas, for CPU tensors as torch.ops.dmmd_ext_simt.*.

    from dmmd_ext import ops, simt
    simt.load()
    with simt.use():                      # the ops wrappers now call the
        z = ops.corrupt(x0, 0.5, "masked", vocab_size=100, seed=1)  # CUDA code

SIMT_ORDER=seq|rev|random (SIMT_SEED) sets the order in which the threads of a
block run between barriers, read at every launch: a missing __syncthreads
shows up as a result that changes with the order. Results are those of the
CUDA kernels except where they call approximate hardware math (__expf) or
need features the emulator does not model (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import contextlib
import importlib
import os

import torch

from . import _build_info
from .ops import _common, losses

NAMESPACE = "dmmd_ext_simt"
_MODULES = {"release": "dmmd_ext._simt", "asan": "dmmd_ext._simt_asan"}
_loaded: str | None = None


def flavors() -> list[str]:
    """The emulated builds this installation holds ('release', 'asan')."""
    return list(getattr(_build_info, "SIMT_FLAVORS", []))


def available(flavor: str = "release") -> bool:
    return flavor in flavors()


def default_flavor() -> str:
    """DMMD_SIMT_FLAVOR, else 'release'."""
    return os.environ.get("DMMD_SIMT_FLAVOR", "release")


def load(flavor: str | None = None) -> str:
    """Import the emulated kernels once per process; returns the flavor loaded.
    Only one flavor can be loaded in a process (they define one namespace)."""
    global _loaded
    flavor = flavor or default_flavor()
    if flavor not in _MODULES:
        raise ValueError(f"flavor: expected one of {sorted(_MODULES)}, got {flavor!r}")
    if _loaded is not None:
        if _loaded != flavor:
            raise RuntimeError(f"dmmd_ext.simt: flavor {_loaded!r} is already loaded in this "
                               f"process; {flavor!r} needs a new process")
        return flavor
    if not available(flavor):
        raise ImportError(
            f"dmmd_ext.simt: the {flavor!r} emulated build is not installed (built: "
            f"{flavors() or 'none'}). Rebuild with DMMD_EXT_SIMT=1 (scripts/test.sh does).")
    importlib.import_module(_MODULES[flavor])
    losses.register_autograd(NAMESPACE)
    _loaded = flavor
    return flavor


def kernels():
    """torch.ops.dmmd_ext_simt (loads the default flavor if needed)."""
    load()
    return getattr(torch.ops, NAMESPACE)


@contextlib.contextmanager
def use():
    """Within the block, dmmd_ext.ops calls the emulated CUDA kernels."""
    ns = kernels()
    prev = _common._KERNELS[0]
    _common._KERNELS[0] = ns
    try:
        yield ns
    finally:
        _common._KERNELS[0] = prev


@contextlib.contextmanager
def order(name: str, seed: int | None = None):
    """Run launches in the block with SIMT_ORDER=name (seq, rev, random)."""
    if name not in ("seq", "rev", "random"):
        raise ValueError(f"order: expected 'seq', 'rev' or 'random', got {name!r}")
    saved = {k: os.environ.get(k) for k in ("SIMT_ORDER", "SIMT_SEED")}
    os.environ["SIMT_ORDER"] = name
    if seed is not None:
        os.environ["SIMT_SEED"] = str(int(seed))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
