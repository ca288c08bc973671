import pytest
import torch

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
