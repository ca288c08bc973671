import contextlib
import os
import tempfile
from pathlib import Path

import pytest
import torch

import dmmd_ext

# Subprocesses must import the same dmmd_ext as the tests: the installed package
# (scripts/test.sh) or an in-place developer build. The repository root is not
# always that place, and as a child's cwd it would shadow the installed package.
PKG_ROOT = str(Path(dmmd_ext.__file__).resolve().parents[1])
TESTS_DIR = str(Path(__file__).resolve().parent)
NEUTRAL_CWD = tempfile.gettempdir()


def child_env(**extra):
    """os.environ with PYTHONPATH pointing at the dmmd_ext under test and tests/."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([PKG_ROOT, TESTS_DIR]), **extra}

CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (none visible)")

# ---- where the CUDA kernels run: a real GPU ("cuda") and/or the SIMT emulator
# on CPU tensors ("simt-<order>", docs/ARCHITECTURE.md "Testing CUDA without a
# GPU"), in each fiber order of DMMD_SIMT_ORDERS (default seq,rev).
# DMMD_KERNEL_BACKENDS=simt|cuda|cpu,... limits the set (the sanitizer run uses it).
from dmmd_ext import simt as _simt  # noqa: E402

SIMT = _simt.available(_simt.default_flavor())
SIMT_ORDERS = [o for o in os.environ.get("DMMD_SIMT_ORDERS", "seq,rev").split(",") if o]
_ONLY = [b for b in os.environ.get("DMMD_KERNEL_BACKENDS", "").split(",") if b]
_NO_CUDA = "no CUDA device and no emulated CUDA build (build with DMMD_EXT_SIMT=1, as scripts/test.sh does)"


def _wanted(kind):
    return not _ONLY or kind in _ONLY


def cuda_backends():
    """The places the CUDA kernels can run here (one skipped entry if none)."""
    names = ["cuda"] if CUDA and _wanted("cuda") else []
    if SIMT and _wanted("simt"):
        names += [f"simt-{o}" for o in SIMT_ORDERS]
    return names or [pytest.param("cuda", marks=pytest.mark.skip(reason=_NO_CUDA))]


def devices():
    """CPU (unless excluded) and every CUDA backend: for the `device` fixture."""
    cpu = ["cpu"] if _wanted("cpu") else []
    extra = [b for b in cuda_backends() if isinstance(b, str)]
    return cpu + extra or cuda_backends()


class KernelBackend:
    """Runs ops where the CUDA kernels live: on the GPU (tensors moved there) or
    through the emulator (CPU tensors, dmmd_ext.simt.use(), a fiber order)."""

    def __init__(self, name, seed=1):
        self.name = name
        self.emulated = name.startswith("simt-")
        self.order = name.split("-", 1)[1] if self.emulated else None
        self.device = "cpu" if self.emulated else name
        self.seed = seed

    def reruns(self, n=3):
        """Backends for n runs that must agree bitwise: the same GPU n times, or
        this fiber order and n - 1 random ones."""
        if not self.emulated:
            return [self] * n
        return [self] + [KernelBackend("simt-random", seed=s) for s in range(2, n + 1)]

    def __repr__(self):
        return f"KernelBackend({self.name})"

    def to(self, x):
        if isinstance(x, torch.Tensor):
            return x.to(self.device)
        if isinstance(x, (tuple, list)):
            return type(x)(self.to(v) for v in x)
        return x

    @staticmethod
    def cpu(x):
        if isinstance(x, torch.Tensor):
            return x.cpu()
        if isinstance(x, (tuple, list)):
            return type(x)(KernelBackend.cpu(v) for v in x)
        return x

    def generator(self, seed):
        return torch.Generator(self.device).manual_seed(seed)

    def active(self):
        """Context in which dmmd_ext.ops runs this backend's kernels."""
        if not self.emulated:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(_simt.use())
        stack.enter_context(_simt.order(self.order, seed=self.seed))
        return stack

    def call(self, fn, *args, **kwargs):
        """fn on the backend: tensor arguments moved there, outputs back on the CPU."""
        with self.active():
            out = fn(*self.to(args), **{k: self.to(v) for k, v in kwargs.items()})
        return self.cpu(out)

    def op(self, name):
        """The raw op `name` of this backend's namespace, as a function of CPU tensors."""
        def run(*args, **kwargs):
            ns = _simt.kernels() if self.emulated else torch.ops.dmmd_ext
            return self.call(getattr(ns, name), *args, **kwargs)
        return run


@pytest.fixture(params=cuda_backends())
def kb(request):
    """A KernelBackend for each place the CUDA kernels can run."""
    return KernelBackend(request.param)


@pytest.fixture
def device(request):
    """Indirect parametrization with devices(): yields a torch device string; for
    an emulated backend, "cpu" with dmmd_ext.ops routed to the emulated kernels."""
    name = request.param
    if name == "cpu":
        yield "cpu"
        return
    b = KernelBackend(name)
    with b.active():
        yield b.device


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread avoids contention on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
