"""Python entry points to the compiled kernels: a typed wrapper per op, its
fake (meta) kernel for torch.compile, and autograd where the op has a
gradient. Semantics are stated by the matching function in dmmd_ext.reference."""

from ._common import MASKED, UNIFORM, process_id
from .corruption import corrupt
from .losses import AuxiliaryLoss, GeneratorLoss, auxiliary_loss, generator_loss
from .fused_head import linear_auxiliary_loss, linear_generator_loss
from .posterior import posterior_step
from . import rng_hooks  # noqa: F401  (fake kernels of the RNG test hooks)
from .sampling import sample_categorical

__all__ = [
    "MASKED", "UNIFORM", "process_id", "corrupt", "posterior_step", "sample_categorical",
    "generator_loss", "auxiliary_loss", "GeneratorLoss", "AuxiliaryLoss",
]
