"""Pure-PyTorch statements of what every kernel computes. Tests use these as
oracles; they are slow and materialize whatever they need."""

from . import corruption, noise
from .corruption import corrupt

__all__ = ["noise", "corruption", "corrupt"]
