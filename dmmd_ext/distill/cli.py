"""`dmmd distill`: distill a trained teacher into a k-step student.

    dmmd distill --teacher runs/hmm --run-dir runs/hmm-k8 --k 8 --steps 3000

The dataset defaults to the one the teacher was trained on (its config's
data_args); data flags given here override it. The student is written to
RUN_DIR/checkpoint in the teachers' format, so `dmmd sample --run-dir RUN_DIR
--steps K` samples from it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cli import (DATA_KEYS, Command, UsageError, _add_data_args, _add_resume_args,
                   _check_data_flags, _data_args, _interrupted_code, _load_data, _prepare_run_dir)
from ..logging_sinks import add_argument as add_log_to
from ..parallel import add_arguments as add_parallel_arguments
from ..parallel import options as parallel_options
from .trainer import TARGETS, WEIGHTS, DistillConfig

_FUSED_HEAD = {"auto": "auto", "on": True, "off": False}
_DATA_KEYS = DATA_KEYS


def _teacher_checkpoint(path: str) -> Path:
    p = Path(path)
    return p / "checkpoint" if (p / "checkpoint" / "config.json").is_file() else p


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = DistillConfig()
    p.add_argument("--run-dir", required=True, help="all outputs go here (the student in RUN_DIR/checkpoint)")
    p.add_argument("--teacher", required=True,
                   help="teacher run directory (its checkpoint/) or checkpoint directory")
    p.add_argument("--config", default=None, help="TOML file with any of these options")
    _add_data_args(p, defaults=False)  # default: the teacher's training data
    g = p.add_argument_group("D-MMD")
    g.add_argument("--k", type=int, default=d.k, help="student sampling steps")
    g.add_argument("--process", default=d.process, choices=["auto", "masked", "uniform"],
                   help="the teacher's expected process (auto: whatever it is)")
    g.add_argument("--d-noise", type=int, default=d.d_noise,
                   help="student noise width (-1: 32 for masked, 0 for uniform)")
    g.add_argument("--target", default=d.target, choices=TARGETS,
                   help="auxiliary target: one-hot of the student's draw or its probabilities (masked)")
    g.add_argument("--tau", type=float, default=d.tau, help="teacher temperature")
    g.add_argument("--top-p", type=float, default=d.top_p, help="teacher soft top-p (1 = off)")
    g.add_argument("--delta", type=float, default=d.delta, help="soft top-p penalty (nats)")
    g.add_argument("--weight", default=d.weight, choices=WEIGHTS, help="loss weight over time w(s)")
    g.add_argument("--max-weight", type=float, default=d.max_weight, help="clamp of the elbo weight")
    g.add_argument("--gen-updates", type=int, default=d.gen_updates,
                   help="generator iterations per cycle")
    g.add_argument("--aux-updates", type=int, default=d.aux_updates,
                   help="auxiliary iterations per cycle")
    g = p.add_argument_group("optimization")
    g.add_argument("--steps", type=int, default=d.steps, help="iterations (generator + auxiliary)")
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--lr", type=float, default=d.lr, help="student Adam learning rate")
    g.add_argument("--aux-lr", type=float, default=None, help="auxiliary learning rate (default: --lr)")
    g.add_argument("--beta1", type=float, default=d.beta1)
    g.add_argument("--beta2", type=float, default=d.beta2)
    g.add_argument("--warmup", type=int, default=d.warmup)
    g.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio)
    g.add_argument("--grad-clip", type=float, default=d.grad_clip, help="0 disables")
    g.add_argument("--ema", type=float, default=d.ema, help="student EMA decay, 0 disables")
    g.add_argument("--eval-every", type=int, default=d.eval_every,
                   help="HMM data: exact NLL of k-step samples every N iterations (0: off)")
    g.add_argument("--eval-samples", type=int, default=256)
    g.add_argument("--save-every", type=int, default=d.save_every)
    g.add_argument("--log-every", type=int, default=d.log_every)
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N")
    g.add_argument("--no-bf16", action="store_true", help="no bf16 autocast on CUDA")
    g.add_argument("--fused-head", default="auto", choices=sorted(_FUSED_HEAD),
                   help="losses from hidden states + output heads, never the [B, L, K] logits "
                        "(auto: when every network exposes hidden() and head)")
    g.add_argument("--no-progress", action="store_true")
    add_log_to(g)
    _add_resume_args(g)
    add_parallel_arguments(p, offload_teacher=True)


def config_from_args(a: argparse.Namespace) -> DistillConfig:
    return DistillConfig(
        k=a.k, steps=a.steps, batch_size=a.batch_size, lr=a.lr, aux_lr=a.aux_lr, beta1=a.beta1,
        beta2=a.beta2, warmup=a.warmup, min_lr_ratio=a.min_lr_ratio, grad_clip=a.grad_clip,
        ema=a.ema, gen_updates=a.gen_updates, aux_updates=a.aux_updates, target=a.target,
        tau=a.tau, top_p=a.top_p, delta=a.delta, weight=a.weight, max_weight=a.max_weight,
        d_noise=a.d_noise, process=a.process, eval_every=a.eval_every, save_every=a.save_every,
        log_every=a.log_every, seed=a.seed, device=a.device, bf16=not a.no_bf16,
        fused_head=_FUSED_HEAD[a.fused_head], progress=not a.no_progress, log_to=a.log_to,
        **parallel_options(a))


def load_distill_data(a: argparse.Namespace, teacher_cfg: dict):
    """The teacher's dataset (its recorded data_args), with flags given here on top
    (a different --data replaces the teacher's data flags instead)."""
    given = {k: getattr(a, k) for k in _DATA_KEYS if getattr(a, k, None) is not None}
    base = {k: None for k in _DATA_KEYS}
    recorded = teacher_cfg.get("data_args") or {}
    if "data" not in given or given["data"] == recorded.get("data"):
        base.update({k: v for k, v in recorded.items() if k in base})
    base.update(given)
    if base["data"] is None:
        raise UsageError("the teacher's checkpoint does not record its data; "
                         "pass --data (and its options)")
    ns = argparse.Namespace(**base)
    _check_data_flags(ns)
    return _load_data(ns), _data_args(ns)


def hmm_evaluator(dataset, process, k: int, n: int, seed: int = 0):
    """evaluate(student, step) for distill(): exact excess NLL and unigram entropy of
    n k-step samples (None when the data has no exact model)."""
    hmm = getattr(dataset, "hmm", None)
    if hmm is None:
        return None
    import math

    from ..evaluation.exact import true_nll
    from ..evaluation.perplexity import unigram_entropy
    from .sampler import sample_many

    h = dataset.info["entropy_rate_bits"]

    def evaluate(student, step):
        x = sample_many(student, process, k, n, dataset.seq_len, seed=seed)
        nll = float(true_nll(hmm, x).mean()) / math.log(2)
        return {"excess_nll_bits": nll - h, "unigram_entropy": float(unigram_entropy(x).mean())}

    return evaluate


def _settings(a: argparse.Namespace, ck: Path, tcfg: dict, cfg: DistillConfig,
              data_args: dict) -> dict:
    """What defines a distillation run (compared on resume; `steps` may change)."""
    return {"teacher": str(ck.resolve()), "teacher_step": tcfg.get("step"),
            "teacher_model": tcfg.get("model"), "data": data_args,
            "distill": {k: v for k, v in cfg.to_dict().items() if k not in ("steps", "log_to")}}


def load_teacher(ck: Path, cfg: DistillConfig):
    """(teacher, process, its config, weights or None). Under --fsdp a built-in
    Transformer teacher is built on the meta device and its weights are the
    memory-mapped model.safetensors, from which every rank loads its own shards
    (distill's teacher_weights); otherwise it is loaded on the CPU."""
    import torch

    from ..checkpoint import build_model, load_model, load_weights, read_config
    from ..processes import make_process

    tcfg = read_config(ck)
    spec = tcfg.get("model") or {}
    if cfg.parallel != "fsdp" or cfg.offload_teacher or spec.get("arch", "transformer") != "transformer":
        return (*load_model(ck, "cpu"), None)
    with torch.device("meta"):
        teacher = build_model(spec)
    return teacher.eval(), make_process(tcfg["process"]), tcfg, load_weights(ck)


def run(a: argparse.Namespace) -> int:
    from .trainer import distill

    ck = _teacher_checkpoint(a.teacher)
    if not (ck / "config.json").is_file():
        raise UsageError(f"--teacher {a.teacher}: no checkpoint there (expected a run directory "
                         "with checkpoint/ or a checkpoint directory)")
    cfg = config_from_args(a)
    teacher, process, tcfg, weights = load_teacher(ck, cfg)
    ds, data_args = load_distill_data(a, tcfg)
    if not _prepare_run_dir(a, _settings(a, ck, tcfg, cfg, data_args), cfg.steps,
                            "distillation run"):
        return 0
    evaluate = hmm_evaluator(ds, process, cfg.k, a.eval_samples, seed=cfg.seed) \
        if cfg.eval_every else None
    print(f"dmmd distill: teacher {ck} ({process}), data {ds.name} (K={ds.vocab_size}, "
          f"L={ds.seq_len}), k={cfg.k}", file=sys.stderr)
    res = distill(teacher, process, ds, cfg, a.run_dir, teacher_config=tcfg.get("model"),
                  extra_config={"data_args": data_args, "teacher": str(ck.resolve()),
                                "teacher_step": tcfg.get("step")},
                  resume=not a.no_resume, evaluate=evaluate, teacher_weights=weights)
    print(json.dumps(res, indent=2, default=str))
    return _interrupted_code(res, a)


COMMANDS = [Command("distill", "distill a trained teacher into a k-step D-MMD student",
                    add_arguments, run)]
