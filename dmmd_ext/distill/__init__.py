"""D-MMD distillation: a k-step student trained against a frozen teacher and an
auxiliary model (trainer.py), the losses' single call site (losses.py), the
k-step sampler (sampler.py) and the `dmmd distill` command (cli.py)."""

from .losses import auxiliary_loss, generator_loss, sharpen_teacher
from .sampler import load_student, sample_many
from .trainer import DistillConfig, check_setup, distill, make_student, time_weight

__all__ = ["DistillConfig", "distill", "check_setup", "make_student", "time_weight",
           "generator_loss", "auxiliary_loss", "sharpen_teacher", "sample_many", "load_student"]
