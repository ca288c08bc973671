"""Loads the compiled kernels (dmmd_ext._C) after checking that they were
built for the torch that is running; a mismatch would otherwise surface as an
undefined-symbol error from the dynamic loader."""

from __future__ import annotations

import importlib

import torch


class BuildMismatchError(ImportError):
    pass


def _base(v: str) -> str:
    return v.split("+")[0]


def load() -> dict:
    try:
        info = importlib.import_module("dmmd_ext._build_info")
    except ImportError as e:
        raise ImportError(
            "dmmd_ext: the compiled kernels are missing. Build them with "
            "`pip install --no-build-isolation .` (or scripts/dev_build.sh for a checkout)."
        ) from e
    built, running = info.TORCH_VERSION, torch.__version__
    if _base(built) != _base(running) or (info.TORCH_CUDA or None) != (torch.version.cuda or None):
        raise BuildMismatchError(
            f"dmmd_ext was built against torch {built} (CUDA {info.TORCH_CUDA or 'none'}) "
            f"but torch {running} (CUDA {torch.version.cuda or 'none'}) is running. Rebuild: "
            "`pip install --no-build-isolation --force-reinstall --no-deps .`"
        )
    try:
        importlib.import_module("dmmd_ext._C")
    except ImportError as e:
        raise ImportError(
            f"dmmd_ext: loading the kernels failed ({e}). If torch changed since the build, "
            "rebuild with `pip install --no-build-isolation --force-reinstall --no-deps .`"
        ) from e
    return {
        "torch_version": built,
        "torch_cuda": info.TORCH_CUDA or None,
        "cuda_kernels": bool(info.WITH_CUDA),
        "cuda_archs": list(info.CUDA_ARCHS),
        "cxx_compiler": info.CXX_COMPILER,
        "cuda_compiler": info.CUDA_COMPILER or None,
        "build_type": info.BUILD_TYPE,
        # at::parallel_for runs the CPU kernels on torch's threads only when built with OpenMP
        "openmp": bool(getattr(info, "OPENMP", False)),
        # emulated CUDA builds (dmmd_ext.simt): [], ["release"], ["release", "asan"]
        "simt": list(getattr(info, "SIMT_FLAVORS", [])),
    }
