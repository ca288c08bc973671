"""D-MMD distillation: a k-step student trained against a frozen teacher and an
auxiliary model (trainer.py; the losses are the fused ops.generator_loss and
ops.auxiliary_loss), the k-step sampler (sampler.py) and the `dmmd distill` command (cli.py)."""

from .sampler import load_student, sample_many
from .trainer import DistillConfig, check_setup, distill, make_student, time_weight

__all__ = ["DistillConfig", "distill", "check_setup", "make_student", "time_weight",
           "sample_many", "load_student"]
