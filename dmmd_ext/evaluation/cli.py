"""Registers `dmmd eval` and `dmmd train-reference` with the dmmd command
(dmmd_ext.cli lists this module in EXTENSION_MODULES)."""

from __future__ import annotations

from ..cli import Command
from .report import (EVAL_HELP, TRAIN_REFERENCE_HELP, eval_arguments, run_eval, run_train_reference,
                     train_reference_arguments)


def _eval(args) -> int:
    run_eval(args)
    return 0


def _train_reference(args) -> int:
    run_train_reference(args)
    return 0


COMMANDS = [
    Command("eval", EVAL_HELP, eval_arguments, _eval),
    Command("train-reference", TRAIN_REFERENCE_HELP, train_reference_arguments, _train_reference),
]
