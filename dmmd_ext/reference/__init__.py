"""Pure-PyTorch statements of what every kernel computes. Tests use these as
oracles; they are slow and materialize whatever they need."""

from . import corruption, losses, noise
from .corruption import corrupt
from .losses import auxiliary_loss, generator_loss

__all__ = ["noise", "corruption", "corrupt", "losses", "generator_loss", "auxiliary_loss"]
