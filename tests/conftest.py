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


def devices():
    """CPU always; CUDA when a device is visible."""
    return ["cpu"] + (["cuda"] if CUDA else [])


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread avoids contention on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
