"""`dmmd eval` and `dmmd train-reference`: sample teacher/student checkpoints
at several step counts, measure them with an EvalSuite, and write

    <out>/eval.json    every record (label, kind, steps, n_samples, metrics)
    <out>/eval.md      the same as a markdown table, the data rows first
    <out>/metrics.png  one panel per metric vs sampling steps, every model on
                       the same axes, the data rows as grey horizontal lines
                       (needs matplotlib; skipped with a message without it)

The CLI registers the subcommands through add_eval_parser(subparsers) /
run_eval(args) and add_train_reference_parser(subparsers) /
run_train_reference(args); main(argv) runs them standalone.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from .reference_model import ReferenceConfig, load_reference, save_reference, train_reference
from .suite import EvalSuite

__all__ = ["evaluate_sampler", "baseline_records", "build_suite", "write_json", "markdown_table",
           "write_markdown", "plot_metrics", "add_eval_parser", "eval_arguments", "run_eval",
           "add_train_reference_parser", "train_reference_arguments", "run_train_reference", "main"]

# (key, column title, lower is better?) in table order
METRICS = [
    ("gen_ppl", "gen. perplexity", True),
    ("unigram_entropy", "unigram entropy (nats)", None),
    ("gradient_moment", "gradient moment", True),
    ("nll", "NLL under the reference (bits/token)", None),
    ("true_nll", "true NLL (bits/token)", None),
    ("true_gradient_moment", "true gradient moment", True),
    ("reverse_ce_2", "reverse CE n=2 (bits/token)", True),
    ("reverse_ce_3", "reverse CE n=3 (bits/token)", True),
    ("ngram_tv_2", "n-gram TV n=2", True),
    ("ngram_tv_3", "n-gram TV n=3", True),
    ("frechet", "Frechet distance", True),
]


BITS_KEYS = ("nll", "true_nll")  # reported in bits per token, as every dmmd command does


def in_bits(metrics: dict) -> dict:
    """The suite's metrics with the NLLs (nats per token) in bits per token."""
    out = dict(metrics)
    for key in BITS_KEYS:
        v = out.get(key)
        if isinstance(v, dict):
            out[key] = {**v, **{f: v[f] / math.log(2) for f in ("mean", "stderr")
                                if isinstance(v.get(f), (int, float))}, "unit": "bits/token"}
    return out


def evaluate_sampler(sample_fn, steps: list[int], suite: EvalSuite, n_samples: int, label: str,
                     kind: str, seed: int = 0, device: str | torch.device = "cpu") -> list[dict]:
    """One record per step count; ``sample_fn(n_steps, n, generator)`` returns
    int64 [n, L] tokens. The generator lives on ``device`` (seeded by seed + steps)."""
    records = []
    for k in steps:
        gen = torch.Generator(device=device).manual_seed(seed + k)
        t0 = time.time()
        samples = sample_fn(k, n_samples, gen).cpu()
        t1 = time.time()
        records.append({"label": label, "kind": kind, "steps": int(k), "n_samples": int(samples.shape[0]),
                        "sample_seconds": t1 - t0, "metrics": in_bits(suite.measure(samples, seed=seed)),
                        "metric_seconds": time.time() - t1})
    return records


def baseline_records(suite: EvalSuite, seed: int = 0) -> list[dict]:
    """Held-out real rows (the target) and training rows (a memorizing sampler)."""
    train = suite.train_rows(seed)
    return [{"label": "data (held-out)", "kind": "data", "steps": None,
             "n_samples": int(suite.heldout.shape[0]), "metrics": in_bits(suite.baseline(seed=seed))},
            {"label": "data (train rows)", "kind": "data", "steps": None,
             "n_samples": int(train.shape[0]), "metrics": in_bits(suite.measure(train, seed=seed))}]


def write_json(records: list[dict], path: str | Path, meta: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta or {}, "records": records}, indent=2))
    return path


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        se = value.get("stderr")
        if se is None or (isinstance(se, float) and math.isnan(se)):
            return f"{value['mean']:.4g}"
        return f"{value['mean']:.4g} ± {se:.2g}"
    return f"{value:.4g}"


def markdown_table(records: list[dict]) -> str:
    """Rows: records (data baseline first); columns: the metrics present."""
    present = [m for m in METRICS if any(m[0] in r["metrics"] for r in records)]
    order = {id(r): i for i, r in enumerate(records)}
    rows = sorted(records, key=lambda r: (r["kind"] != "data", order[id(r)] if r["kind"] == "data" else 0,
                                          r["label"], r["steps"] or 0))
    head = "| model | steps | n | " + " | ".join(t for _, t, _ in present) + " |"
    sep = "|---|---|---|" + "---|" * len(present)
    lines = [head, sep]
    for r in rows:
        cells = [_cell(r["metrics"].get(k)) for k, _, _ in present]
        lines.append(f"| {r['label']} | {r['steps'] if r['steps'] is not None else '-'} | "
                     f"{r['n_samples']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(records: list[dict], path: str | Path, title: str = "Evaluation",
                   notes: str = "") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {title}\n\n{markdown_table(records)}\n{notes}")
    return path


def _mean_se(value) -> tuple[float, float]:
    if isinstance(value, dict):
        se = value.get("stderr", 0.0)
        return value["mean"], 0.0 if se is None or math.isnan(se) else se
    return float(value), 0.0


def plot_metrics(records: list[dict], path: str | Path) -> Path | None:
    """One panel per metric vs steps (log2 axis); returns None (with a
    message) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plots skipped: matplotlib is not installed (pip install matplotlib, or the [plot] extra)")
        return None
    present = [m for m in METRICS if any(m[0] in r["metrics"] for r in records)]
    if not present:
        return None
    cols = min(3, len(present))
    rows = math.ceil(len(present) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    labels = sorted({r["label"] for r in records if r["kind"] != "data"})
    for ax, (key, title, lower) in zip(axes.flat, present):
        for label in labels:
            pts = sorted((r["steps"], *_mean_se(r["metrics"][key])) for r in records
                         if r["label"] == label and key in r["metrics"])
            if pts:
                xs, ys, es = zip(*pts)
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label)
        data_rows = [r for r in records if r["kind"] == "data" and key in r["metrics"]]
        for r, ls in zip(data_rows, ("--", ":", "-.")):
            ax.axhline(_mean_se(r["metrics"][key])[0], color="gray", ls=ls, label=r["label"])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sampling steps")
        ax.set_title(title + ("" if lower is None else (" (lower is better)" if lower else "")), fontsize=9)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(present):]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --- command line ------------------------------------------------------------------


def _kv(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--data-arg: expected key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _dataset_from(args, cfg: dict | None = None):
    """--data/--data-arg when given, else the dataset a checkpoint's config
    records: its "data_args" (written by `dmmd train-teacher`, rebuilt with the
    same mapping) or a data.describe() name ('hmm-<preset>' or a registry name)."""
    from ..data import DATASETS, load_dataset

    kwargs = _kv(args.data_arg)
    if args.data is not None:
        return load_dataset(args.data, **kwargs)
    cfg = cfg or {}
    if cfg.get("data_args"):
        from ..cli import _load_data  # the mapping train-teacher used: one source of truth

        return _load_data(argparse.Namespace(**cfg["data_args"]))
    if isinstance(cfg.get("data"), dict) and cfg["data"].get("spec"):
        from ..data.registry import rebuild_dataset  # the builder's own recorded call

        return rebuild_dataset(cfg)
    spec = cfg.get("data")
    described = spec.get("name") if isinstance(spec, dict) else spec
    if described in DATASETS:
        return load_dataset(described, **kwargs)
    if isinstance(described, str) and described.startswith("hmm-"):
        return load_dataset("hmm", **{"preset": described[4:], **kwargs})
    raise ValueError("--data: the checkpoint's config does not name a dataset this command can "
                     "rebuild; pass --data NAME (and --data-arg KEY=VALUE as used in training)")


def _checkpoint_dir(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory holding one in checkpoint/."""
    path = Path(path)
    return path / "checkpoint" if (path / "checkpoint" / "config.json").is_file() else path


TRAIN_REFERENCE_HELP = ("train the autoregressive reference model used by `dmmd eval` "
                        "(generative perplexity, gradient moment)")
EVAL_HELP = "sample teacher/student checkpoints at several step counts and measure them"


def add_train_reference_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train-reference", help=TRAIN_REFERENCE_HELP)
    train_reference_arguments(p)
    return p


def train_reference_arguments(p: argparse.ArgumentParser) -> None:
    from ..cli import _add_data_args  # the same data flags as train-teacher: the same split

    _add_data_args(p)
    p.add_argument("--preset", default="tiny", help="transformer size preset (default tiny)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.set_defaults(func=run_train_reference)


def run_train_reference(args) -> dict:
    from ..cli import _check_data_flags, _data_args, _load_data

    _check_data_flags(args)
    dataset = _load_data(args)
    cfg = ReferenceConfig(preset=args.preset, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                          seed=args.seed, device=args.device, log_every=args.log_every)
    model, record = train_reference(dataset, cfg)
    record["data_args"] = _data_args(args)
    save_reference(model, args.out, record)
    print(f"reference saved to {args.out}: val NLL "
          f"{record.get('val_nll', float('nan')) / math.log(2):.4f} bits/token "
          f"after {cfg.steps} steps ({record['seconds']:.0f} s)")
    return record


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("eval", help=EVAL_HELP)
    eval_arguments(p)
    return p


def eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", help="teacher and/or student run directories (or their "
                   "checkpoint/ directories)")
    p.add_argument("--labels", nargs="+", help="one label per checkpoint (default: the run "
                   "directory's name)")
    p.add_argument("--steps", type=int, nargs="+", required=True, help="sampling step counts")
    p.add_argument("--n-samples", type=int, help="samples per (model, steps) (default: as many as the "
                   "held-out half of the validation split, so that the rows compare)")
    p.add_argument("--sample-batch", type=int, default=128)
    p.add_argument("--data", help="dataset name (default: the one in the first checkpoint's config)")
    p.add_argument("--data-arg", action="append", metavar="KEY=VALUE")
    ref = p.add_mutually_exclusive_group()
    ref.add_argument("--reference", help="AR reference .safetensors from `dmmd train-reference`")
    ref.add_argument("--train-reference-steps", type=int, default=0,
                     help="train a reference for this many steps first (saved under --out)")
    ref.add_argument("--hf-reference", help="a Hugging Face causal LM directory already on disk "
                     "(text datasets; needs `transformers`; never downloads)")
    p.add_argument("--no-reference", action="store_true", help="skip perplexity and gradient moment")
    p.add_argument("--half-batch", type=int, default=32, help="gradient-moment half-batch size")
    p.add_argument("--ngram-orders", type=int, nargs="+", default=[2, 3],
                   help="orders n of the reverse cross-entropy and n-gram TV (default 2 3)")
    p.add_argument("--teacher-soft-top-p", type=float, default=1.0,
                   help="also sample every teacher with soft top-p P (the distillation targets' "
                   "sharpening: logits outside the nucleus lowered by --teacher-delta), as extra "
                   "rows beside the plain ones: compares a sharpened student like with like")
    p.add_argument("--teacher-delta", type=float, default=2.0, help="soft top-p penalty (nats)")
    p.add_argument("--teacher-temperature", type=float, default=1.0,
                   help="temperature of those extra teacher rows (the targets' tau)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", help="output directory (default: <first checkpoint>/eval)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_eval)


def _label(path: str) -> str:
    """The run directory's name (what a user named the run)."""
    p = Path(path).resolve()
    return p.parent.name if p.name == "checkpoint" else p.name


def build_suite(dataset, reference=None, half_batch: int = 32, device: str = "cpu",
                classifier_seed: int = 0, ngram_orders=(2, 3)) -> EvalSuite:
    """The suite for a dataset: its true model when it has one (hmm), a digits
    classifier when it is digits, n-gram metrics at ngram_orders (exact for hmm,
    else against held-out data)."""
    classifier = None
    if getattr(dataset, "name", "").startswith("digits"):
        from .frechet import ClassifierConfig, digits_classifier
        classifier = digits_classifier(dataset, ClassifierConfig(seed=classifier_seed))
    return EvalSuite(dataset.train, dataset.val, reference=reference,
                     true_model=getattr(dataset, "hmm", None), classifier=classifier,
                     half_batch=half_batch, device=device, vocab_size=dataset.vocab_size,
                     ngram_orders=tuple(ngram_orders))


def _reference_from(args, dataset, out: Path):
    """(reference or None, encode or None) from --reference / --hf-reference /
    --train-reference-steps / --no-reference."""
    if args.no_reference:
        return None, None
    if args.reference:
        reference = load_reference(args.reference, device=args.device)
        if reference.vocab_size != dataset.vocab_size or reference.config.max_len < dataset.seq_len:
            raise ValueError(f"--reference {args.reference}: built for vocab_size={reference.vocab_size}, "
                             f"max_len={reference.config.max_len}, but dataset {dataset.name!r} has "
                             f"vocab_size={dataset.vocab_size}, seq_len={dataset.seq_len}")
        return reference, None
    if args.hf_reference:
        return _hf_reference(args, dataset)
    if args.train_reference_steps:
        reference, rec = train_reference(dataset, ReferenceConfig(steps=args.train_reference_steps,
                                                                  device=args.device, seed=args.seed))
        save_reference(reference, out / "reference.safetensors", rec)
        return reference, None
    raise ValueError("eval: pass --reference PATH, --train-reference-steps N, --hf-reference DIR "
                     "or --no-reference")


def _hf_reference(args, dataset):
    """(HFReference, encode): data tokenized with the reference's own tokenizer are
    scored as they are; other text data are decoded and re-tokenized."""
    from .reference_model import HFReference

    reference = HFReference(args.hf_reference, device=args.device)
    tok = dataset.info.get("tokenizer")
    if tok and reference.same_tokenizer(tok):
        if dataset.vocab_size > reference.vocab_size:
            raise ValueError(f"--hf-reference {args.hf_reference}: the data have K="
                             f"{dataset.vocab_size} tokens, the reference embeds {reference.vocab_size}")
        if reference.max_len and dataset.seq_len + 1 > reference.max_len:
            raise ValueError(f"--hf-reference {args.hf_reference}: sequences of {dataset.seq_len} "
                             f"tokens plus BOS exceed its {reference.max_len} positions")
        return reference, None
    if dataset.decode(dataset.val[0]) is None:
        raise ValueError(f"--hf-reference: dataset {dataset.name!r} has no text decoding and was not "
                         "tokenized with the reference's tokenizer; train with --tokenizer DIR (the "
                         "reference's own tokenizer: tokens are then scored as they are)")
    return reference, reference.encoder_for(dataset.decode, dataset.val)


def _teacher_sampling(args) -> dict:
    """Sampler options of the extra teacher rows ({} when none are asked for)."""
    from ..processes import check_soft_top_p

    p, d, tau = args.teacher_soft_top_p, args.teacher_delta, args.teacher_temperature
    try:
        soft = check_soft_top_p(p, d)
    except ValueError as e:
        raise ValueError(f"--teacher-soft-top-p/--teacher-delta: {e}") from None
    if not (tau > 0 and math.isfinite(tau)):
        raise ValueError(f"--teacher-temperature: expected a finite number > 0, got {tau}")
    if not soft and tau == 1.0:
        return {}
    return {"soft_top_p": p, "delta": d, "temperature": tau} if soft else {"temperature": tau}


def _describe(sampling: dict) -> str:
    parts = [f"soft top-p {sampling['soft_top_p']:g}, delta {sampling['delta']:g}"] \
        if "soft_top_p" in sampling else []
    return ", ".join(parts + [f"tau {sampling['temperature']:g}"])


def _sample_fn(args, dataset, model, process, label: str, sampling: dict):
    def sample_fn(k, n, gen):
        from ..distill.sampler import sample_many

        seed = int(torch.randint(0, 2 ** 62, (), generator=gen, device=gen.device))
        return sample_many(model, process, k, n, dataset.seq_len, batch_size=args.sample_batch,
                           seed=seed, device=args.device,
                           progress=False if args.no_progress else f"{label} n={k}", **sampling)
    return sample_fn


def run_eval(args) -> list[dict]:
    from ..checkpoint import load_model

    if args.labels and len(args.labels) != len(args.checkpoints):
        raise ValueError(f"--labels: expected {len(args.checkpoints)} labels (one per checkpoint), "
                         f"got {len(args.labels)}")
    sharp = _teacher_sampling(args)  # refuse bad flags before any loading
    out = Path(args.out) if args.out else Path(args.checkpoints[0]) / "eval"
    loaded = [load_model(_checkpoint_dir(c), device=args.device) for c in args.checkpoints]
    dataset = _dataset_from(args, loaded[0][2])
    for path, (_, process, _) in zip(args.checkpoints, loaded):
        dataset.check_vocab(process.vocab_size, f"checkpoint {path}")
    reference, encode = _reference_from(args, dataset, out)
    suite = build_suite(dataset, reference, args.half_batch, args.device, args.seed,
                        ngram_orders=args.ngram_orders)
    suite.encode = encode
    records = baseline_records(suite, args.seed)
    n_samples = args.n_samples or int(suite.heldout.shape[0])
    if suite.ngram_orders_used() and n_samples != suite.heldout.shape[0]:
        # the n-gram metrics' finite-sample bias depends on the row count
        print(f"note: {n_samples} samples per row but {suite.heldout.shape[0]} held-out data rows: "
              "the data rows are the n-gram metrics' floor only at equal sizes (omit --n-samples)")
    for i, (path, (model, process, cfg)) in enumerate(zip(args.checkpoints, loaded)):
        label = args.labels[i] if args.labels else _label(path)
        kind = cfg.get("kind") if cfg.get("kind") in ("teacher", "student") else (
            "student" if "student" in label.lower() else "teacher")
        variants = [(label, {})]
        if kind == "teacher" and sharp:
            variants.append((f"{label} ({_describe(sharp)})", sharp))
        for name, sampling in variants:
            fn = _sample_fn(args, dataset, model, process, name, sampling)
            records += evaluate_sampler(fn, args.steps, suite, n_samples, name, kind, args.seed,
                                        device=args.device)
    meta = {"checkpoints": args.checkpoints, "data": dataset.describe() if hasattr(dataset, "describe") else None,
            "reference": args.reference or args.hf_reference or
            ("trained here" if args.train_reference_steps else None), "half_batch": args.half_batch, "seed": args.seed,
            "ngram_reference": suite.ngram_reference, "ngram_orders": list(suite.ngram_orders_used()),
            "ngram_smoothing": suite.ngram_smoothing, "teacher_sampling": sharp or None,
            "device": str(args.device), "torch": torch.__version__}
    write_json(records, out / "eval.json", meta)
    write_markdown(records, out / "eval.md", notes=_NOTES)
    if not args.no_plots:
        plot_metrics(records, out / "metrics.png")
    print(markdown_table(records))
    return records


_NOTES = """Gradient moment: mean ± standard error of the unbiased pair estimator (single
estimates can be negative), L = mean per-token NLL of the reference. Perplexity
is meaningful only beside the unigram entropy and the data row; true NLL
(synthetic data) should equal the data row's value, lower means collapse.
Reverse CE: the cross-entropy (bits/token) of the true process (HMM data: exact
n-gram statistics) or of held-out data (half B of the validation split) under a
smoothed n-gram model fitted to the samples; n-gram TV: total variation between
the samples' n-gram distribution and the same reference. Lower is better, but
neither reaches 0 at a finite sample size: the "data (held-out)" row, a data
sample of the same size, is their floor. ± is a bootstrap standard error over rows
(conservative). A sharper, narrower sampler cannot win them (docs/evaluation.md).
"""


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog="dmmd")
    sub = parser.add_subparsers(dest="command", required=True)
    add_eval_parser(sub)
    add_train_reference_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    main()
