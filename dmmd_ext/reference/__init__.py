"""Pure-PyTorch statements of what every kernel computes. Tests use these as
oracles; they are slow and materialize whatever they need."""

from . import corruption, losses, noise, posterior, sampling
from .corruption import corrupt
from .losses import auxiliary_loss, generator_loss
from .posterior import posterior_step
from .sampling import sample_categorical

__all__ = ["noise", "corruption", "corrupt", "posterior", "posterior_step", "sampling",
           "sample_categorical", "losses", "generator_loss", "auxiliary_loss"]
