"""`dmmd demo`: the whole D-MMD experiment on the HMM language (see demo/__init__.py).

    dmmd demo --run-dir runs/demo            # ~6 CPU-minutes; under 15 min on 2 cores
    dmmd demo --run-dir runs/demo-quick --quick
"""

from __future__ import annotations

import argparse

from ..cli import Command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", default="runs/demo", help="all outputs go here")
    p.add_argument("--config", default=None, help="TOML file with any of these options")
    p.add_argument("--quick", action="store_true", help="a 1-2 minute version (noisier)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the models and sampling")
    p.add_argument("--teacher-steps", type=int, default=None)
    p.add_argument("--distill-steps", type=int, default=None)
    p.add_argument("--distill-lr", type=float, default=None)
    p.add_argument("--distill-top-p", type=float, default=None)
    p.add_argument("--distill-delta", type=float, default=None,
                   help="soft top-p penalty of the targets in nats (default 2)")
    p.add_argument("--distill-tau", type=float, default=None,
                   help="teacher temperature of the targets (default 1)")
    p.add_argument("--distill-weight", default=None, choices=["constant", "elbo"])
    p.add_argument("--no-sharpened-teacher", action="store_true",
                   help="skip the teacher rows sampled with the targets' sharpening")
    p.add_argument("--ks", default=None, help="student steps, comma separated (default 4,8)")
    p.add_argument("--n-eval", type=int, default=None, help="samples per evaluated row")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default; 1 is faster on a busy machine)")
    p.add_argument("--no-progress", action="store_true")


def config_from_args(a: argparse.Namespace):
    from . import DemoConfig

    kw = {"run_dir": a.run_dir, "seed": a.seed, "device": a.device,
          "progress": not a.no_progress}
    if a.no_sharpened_teacher:
        kw["sharpened_teacher_rows"] = False
    for name in ("teacher_steps", "distill_steps", "distill_lr", "distill_top_p", "distill_delta",
                 "distill_tau", "distill_weight", "n_eval"):
        if getattr(a, name) is not None:
            kw[name] = getattr(a, name)
    if a.ks:
        kw["ks"] = tuple(int(v) for v in a.ks.split(","))
    return DemoConfig.quick(**kw) if a.quick else DemoConfig(**kw)


def run(a: argparse.Namespace) -> int:
    import torch

    from . import run_demo

    if a.threads:
        torch.set_num_threads(a.threads)
    run_demo(config_from_args(a))
    return 0


COMMANDS = [Command("demo", "train a teacher, distill k=4 and k=8 students and compare them "
                    "with exact metrics on the HMM language (CPU, minutes)", add_arguments, run)]
