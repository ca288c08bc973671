import pytest
import torch

CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (none visible)")


def devices():
    """CPU always; CUDA when a device is visible."""
    return ["cpu"] + (["cuda"] if CUDA else [])
