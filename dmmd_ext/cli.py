"""The `dmmd` command.

    dmmd train-teacher --run-dir runs/hmm --data hmm --steps 3000
    dmmd sample --run-dir runs/hmm --steps 1024 --batch 64

Every subcommand writes under one run directory. Options come from flags or a
TOML file (--config run.toml, keys = the flags' long names with '_' for '-',
optionally grouped in tables, which are flattened); flags given explicitly win.

Other modules add subcommands by defining COMMANDS = [Command(...)] and being
listed in EXTENSION_MODULES (those that are absent are skipped).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["Command", "COMMANDS", "EXTENSION_MODULES", "build_parser", "main"]


@dataclass
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


# Modules that contribute subcommands (distill, demo, eval, train-reference, ...).
EXTENSION_MODULES = ("dmmd_ext.distill.cli", "dmmd_ext.evaluation.cli", "dmmd_ext.demo.cli")


# ---------------------------------------------------------------- train-teacher ----
def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default="hmm", choices=["hmm", "text", "digits", "tokens"],
                   help="dataset (default: hmm)")
    g.add_argument("--hmm-preset", default="cycle", help="hmm preset: cycle, random, toy")
    g.add_argument("--n-train", type=int, default=None, help="hmm: training sequences")
    g.add_argument("--seq-len", type=int, default=None,
                   help="sequence length (text/tokens; hmm: override the preset)")
    g.add_argument("--data-path", default=None, help="tokens: a .pt/.npy token file or a text file")
    g.add_argument("--data-seed", type=int, default=0, help="hmm: sampling seed of the data")


def _load_data(a: argparse.Namespace):
    from .data import load_dataset

    if a.data == "hmm":
        return load_dataset("hmm", preset=a.hmm_preset, n_train=a.n_train, seed=a.data_seed,
                            seq_len=a.seq_len)
    if a.data == "text":
        return load_dataset("text", seq_len=a.seq_len)
    if a.data == "digits":
        return load_dataset("digits")
    if a.data_path is None:
        raise SystemExit("dmmd: --data tokens needs --data-path FILE")
    return load_dataset("tokens", path=a.data_path, seq_len=a.seq_len)


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from .models.transformer import PRESETS
    from .schedules import SCHEDULES
    from .training import TrainConfig

    p.add_argument("--run-dir", required=True, help="all outputs go here")
    p.add_argument("--config", default=None, help="TOML file with any of these options")
    _add_data_args(p)
    g = p.add_argument_group("process and model")
    g.add_argument("--process", default="masked", choices=["masked", "uniform"])
    g.add_argument("--schedule", default="linear", choices=sorted(SCHEDULES))
    g.add_argument("--model-preset", default="tiny", choices=list(PRESETS))
    g.add_argument("--d-model", type=int, default=None, help="override the preset's width")
    g.add_argument("--n-layers", type=int, default=None, help="override the preset's depth")
    g.add_argument("--n-heads", type=int, default=None, help="override the preset's heads")
    g.add_argument("--time-cond", default="adaln", choices=["adaln", "add", "none"])
    g.add_argument("--pos", default="rotary", choices=["rotary", "learned"])
    g.add_argument("--dropout", type=float, default=0.0)
    d = TrainConfig()
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=d.steps)
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio)
    g.add_argument("--warmup", type=int, default=d.warmup)
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--grad-clip", type=float, default=d.grad_clip, help="0 disables")
    g.add_argument("--ema", type=float, default=d.ema, help="EMA decay, 0 disables")
    g.add_argument("--eval-every", type=int, default=d.eval_every)
    g.add_argument("--eval-batches", type=int, default=d.eval_batches)
    g.add_argument("--save-every", type=int, default=d.save_every)
    g.add_argument("--log-every", type=int, default=d.log_every)
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N")
    g.add_argument("--no-bf16", action="store_true", help="no bf16 autocast on CUDA")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--no-resume", action="store_true",
                   help="start over even if RUN_DIR/checkpoint exists")
    from .parallel import add_arguments as add_parallel_arguments
    add_parallel_arguments(p)


def _run_train(a: argparse.Namespace) -> int:
    import torch

    from .models.transformer import Transformer, preset_config
    from .processes import make_process
    from .parallel import options as parallel_options
    from .training import TrainConfig, train_teacher

    ds = _load_data(a)
    proc = make_process(a.process, ds.vocab_size, a.schedule)
    overrides = {k: getattr(a, k) for k in ("d_model", "n_layers", "n_heads")
                 if getattr(a, k) is not None}
    mcfg = preset_config(a.model_preset, proc.input_vocab_size, ds.vocab_size, ds.seq_len,
                         time_cond=a.time_cond, pos=a.pos, dropout=a.dropout, **overrides)
    torch.manual_seed(a.seed)
    model = Transformer(mcfg)
    tcfg = TrainConfig(steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                       min_lr_ratio=a.min_lr_ratio, warmup=a.warmup,
                       weight_decay=a.weight_decay, grad_clip=a.grad_clip, ema=a.ema,
                       eval_every=a.eval_every, eval_batches=a.eval_batches,
                       save_every=a.save_every, log_every=a.log_every, seed=a.seed,
                       device=a.device, bf16=not a.no_bf16, progress=not a.no_progress,
                       **parallel_options(a))
    print(f"dmmd: {ds.name}: K={ds.vocab_size}, L={ds.seq_len}, "
          f"{ds.train.shape[0]} train sequences; model {a.model_preset} "
          f"({model.num_parameters() / 1e6:.2f}M parameters), {proc}", file=sys.stderr)
    res = train_teacher(model, proc, ds, tcfg, a.run_dir,
                        model_config={"arch": "transformer", **mcfg.to_dict()},
                        extra_config={"data_args": _data_args(a)}, resume=not a.no_resume)
    if "entropy_rate_bits" in ds.info:
        res["entropy_rate_bits"] = ds.info["entropy_rate_bits"]
    print(json.dumps(res, indent=2))
    return 0


def _data_args(a) -> dict:
    return {k: getattr(a, k) for k in ("data", "hmm_preset", "n_train", "seq_len", "data_path",
                                       "data_seed")}


# ----------------------------------------------------------------------- sample ----
def _add_sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", required=True,
                   help="run directory of a trained model (its checkpoint/ is used)")
    p.add_argument("--config", default=None, help="TOML file with any of these options")
    p.add_argument("--checkpoint", default=None, help="checkpoint directory (default RUN_DIR/checkpoint)")
    p.add_argument("--steps", type=int, default=None,
                   help="sampling steps n (grid t_j = j/n); default: a student's k, else 128")
    p.add_argument("--batch", type=int, default=16, help="number of samples")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None,
                   help="output .pt file (default RUN_DIR/samples/n<steps>_T<temp>_p<top_p>.pt)")


def _run_sample(a: argparse.Namespace) -> int:
    import torch

    from .checkpoint import load_model

    run = Path(a.run_dir)
    ck = Path(a.checkpoint) if a.checkpoint else run / "checkpoint"
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if a.device == "auto" else a.device))
    model, proc, cfg = load_model(ck, device)
    if a.steps is None:  # a student is trained for its k steps; a teacher gets a fine grid
        a.steps = int(cfg["k"]) if cfg.get("kind") == "student" else 128
    gen = torch.Generator(device=device).manual_seed(a.seed)
    L = int(cfg["data"]["seq_len"])
    x = proc.sample(model, a.steps, a.batch, L, temperature=a.temperature, top_p=a.top_p,
                    top_k=a.top_k, generator=gen, device=device).cpu()
    out = Path(a.out) if a.out else run / "samples" / f"n{a.steps}_T{a.temperature}_p{a.top_p}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(x, out)
    summary = {"samples": str(out), "steps": a.steps, "batch": a.batch,
               "temperature": a.temperature, "top_p": a.top_p, "top_k": a.top_k,
               "checkpoint_step": cfg.get("step")}
    summary.update(_sample_report(x, cfg, out))
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


def _sample_report(x, cfg: dict, out: Path) -> dict:
    """Exact NLL for HMM data, decoded text for character data."""
    info = cfg.get("data", {})
    rep = {}
    if "hmm" in info:
        from .data.hmm import make_hmm

        hmm = make_hmm(**info["hmm"])
        nll = -hmm.log_prob(x) / x.shape[1] / math.log(2)
        rep["exact_nll_bpt"] = float(nll.mean())
        rep["exact_nll_bpt_se"] = float(nll.std() / math.sqrt(len(nll))) if len(nll) > 1 else 0.0
        rep["entropy_rate_bits"] = info.get("entropy_rate_bits")
    if "alphabet" in info:
        alphabet = info["alphabet"]
        text = "\n\n".join("".join(alphabet[i] for i in row) for row in x.tolist())
        out.with_suffix(".txt").write_text(text)
        rep["text"] = str(out.with_suffix(".txt"))
    return rep


COMMANDS: list[Command] = [
    Command("train-teacher", "train a diffusion teacher (masked or uniform) on a dataset",
            _add_train_args, _run_train),
    Command("sample", "draw samples from a trained model with n-step ancestral sampling",
            _add_sample_args, _run_sample),
]


# ------------------------------------------------------------------------ main ----
def _all_commands() -> list[Command]:
    cmds = list(COMMANDS)
    for mod in EXTENSION_MODULES:
        try:
            if importlib.util.find_spec(mod) is None:
                continue
        except ModuleNotFoundError:
            continue
        cmds.extend(getattr(importlib.import_module(mod), "COMMANDS", []))
    return cmds


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    parser = argparse.ArgumentParser(
        prog="dmmd", description="Discrete diffusion teachers and D-MMD students. "
        "Every subcommand writes under one --run-dir; options also come from --config FILE.toml.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    by_name = {}
    for c in _all_commands():
        sp = sub.add_parser(c.name, help=c.help, description=c.help,
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        c.add_arguments(sp)
        by_name[c.name] = c
    return parser, by_name


def _flatten(d: dict, out: dict | None = None) -> dict:
    out = {} if out is None else out
    for k, v in d.items():
        if isinstance(v, dict):
            _flatten(v, out)
        else:
            out[k.replace("-", "_")] = v
    return out


def _apply_toml(sp: argparse.ArgumentParser, argv: list[str]) -> None:
    """Set sp's defaults from --config FILE.toml so that explicit flags still win."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if not known.config:
        return
    import tomllib

    path = Path(known.config)
    if not path.is_file():
        raise SystemExit(f"dmmd: --config {path}: no such file")
    values = _flatten(tomllib.loads(path.read_text()))
    dests = {act.dest for act in sp._actions}
    unknown = sorted(set(values) - dests)
    if unknown:
        raise SystemExit(f"dmmd: --config {path}: unknown options {unknown}")
    sp.set_defaults(**values)
    for act in sp._actions:  # a required option given in the file is no longer required
        if act.dest in values:
            act.required = False


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, cmds = build_parser()
    if not argv or argv[0] not in cmds:
        args = parser.parse_args(argv)  # prints help / errors for unknown commands
        parser.print_help()
        return 0 if not argv else 2
    sp = parser._subparsers._group_actions[0].choices[argv[0]]
    _apply_toml(sp, argv[1:])
    args = parser.parse_args(argv)
    return int(cmds[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
