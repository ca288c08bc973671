"""The demo: a whole D-MMD experiment on the synthetic HMM language, on CPU.

1. data: the HMM 'cycle' preset (8 states, K = 16, L = 64), exact likelihood;
2. a tiny masked-diffusion teacher (core's train_teacher);
3. D-MMD students with k = 4 and k = 8 steps (distill.distill);
4. evaluation with exact metrics (demo.metrics: excess NLL, GM, unigram entropy,
   reverse cross-entropy and n-gram TV at n = 2, 3): the teacher at 4, 8, 16, 64
   and 256 steps, plain and (when the students' targets are sharpened) sampled
   with the same soft top-p / temperature as their targets, so that a sharpened
   student is also compared like with like; each student at its k; and the data
   itself (an exact sample of the same size: the floor of the n-gram metrics);
5. a table on stdout, results.json, results.md and results.png (metric vs steps:
   the teacher's curve, the students' points) under the run directory.

Every stage resumes: rerunning the same command skips finished stages (and
continues an interrupted training exactly).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = ["DemoConfig", "run_demo", "format_table"]


@dataclass
class DemoConfig:
    run_dir: str = "runs/demo"
    seed: int = 0
    hmm_preset: str = "cycle"
    n_train: int = 20000
    teacher_steps: int = 800
    teacher_lr: float = 2e-3
    teacher_batch: int = 64
    model_preset: str = "tiny"
    ks: tuple[int, ...] = (4, 8)
    distill_steps: int = 500
    distill_batch: int = 64
    distill_lr: float = 1e-4
    # plain targets: with the strong teacher the top-p 0.9 students collapse (negative
    # excess NLL, n-gram TV 7-8x the floor), the plain ones beat the 8k-step teacher
    # (docs/results.md, 2026-12-02); --distill-top-p 0.9 gives the old recipe
    distill_top_p: float = 1.0
    distill_delta: float = 2.0
    distill_tau: float = 1.0
    distill_weight: str = "constant"
    distill_ema: float = 0.99
    teacher_eval_steps: tuple[int, ...] = (4, 8, 16, 64, 256)
    # also sample the teacher with the students' target sharpening (like with like)
    sharpened_teacher_rows: bool = True
    n_eval: int = 2048
    gm_half_batch: int = 32
    device: str = "cpu"
    progress: bool = True
    extra: dict = field(default_factory=dict)

    @classmethod
    def quick(cls, **kw) -> "DemoConfig":
        """~1-2 minutes on 2 free CPU cores: the same pipeline, shorter and noisier."""
        base = dict(n_train=5000, teacher_steps=400, distill_steps=200, n_eval=512,
                    teacher_eval_steps=(4, 8, 16, 64), gm_half_batch=16)
        return cls(**{**base, **kw})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def _teacher(cfg: DemoConfig, ds, proc, run: Path):
    from ..checkpoint import load_model
    from ..models.transformer import Transformer, preset_config
    from ..training import TrainConfig, train_teacher

    mcfg = preset_config(cfg.model_preset, proc.input_vocab_size, ds.vocab_size, ds.seq_len)
    torch.manual_seed(cfg.seed)
    model = Transformer(mcfg)
    tcfg = TrainConfig(steps=cfg.teacher_steps, batch_size=cfg.teacher_batch, lr=cfg.teacher_lr,
                       warmup=min(100, cfg.teacher_steps // 10), ema=0.995,
                       eval_every=max(1, cfg.teacher_steps // 4), eval_batches=4,
                       save_every=500, seed=cfg.seed, device=cfg.device, progress=cfg.progress)
    from ..cli import data_args_from_spec

    # from the dataset itself, so the checkpoint names the language it really saw
    data_args = data_args_from_spec(ds.info["spec"])
    train_teacher(model, proc, ds, tcfg, run / "teacher",
                  model_config={"arch": "transformer", **mcfg.to_dict()},
                  extra_config={"data_args": data_args})
    return load_model(run / "teacher" / "checkpoint", cfg.device)[0], data_args


def _student(cfg: DemoConfig, k: int, teacher, ds, proc, run: Path, data_args: dict):
    from ..checkpoint import load_model
    from ..distill import DistillConfig, distill

    dcfg = DistillConfig(k=k, steps=cfg.distill_steps, batch_size=cfg.distill_batch,
                         lr=cfg.distill_lr, top_p=cfg.distill_top_p, delta=cfg.distill_delta,
                         tau=cfg.distill_tau, weight=cfg.distill_weight,
                         ema=cfg.distill_ema, save_every=250, seed=cfg.seed, device=cfg.device,
                         progress=cfg.progress, process="masked")
    distill(teacher, proc, ds, dcfg, run / f"student_k{k}",
            extra_config={"data_args": data_args, "teacher": str(run / "teacher" / "checkpoint")})
    return load_model(run / f"student_k{k}" / "checkpoint", cfg.device)[0]


def _target_sampling(cfg: DemoConfig) -> dict | None:
    """The students' target sharpening as sampler options (None when it is off)."""
    if cfg.distill_top_p >= 1.0 and cfg.distill_tau == 1.0:
        return None
    return {"soft_top_p": cfg.distill_top_p, "delta": cfg.distill_delta,
            "temperature": cfg.distill_tau}


SHARPENED = "teacher_sharpened"  # model name of the teacher rows sampled like the targets


def _evaluate(cfg: DemoConfig, name: str, model, steps: int, ds, proc, run: Path,
              sampling: dict | None = None) -> dict:
    """Metrics of n_eval samples (cached in run/eval/<name>_n<steps>.json; a cache
    without the n-gram metrics, from an older version, is recomputed)."""
    from ..distill import sample_many
    from .metrics import hmm_metrics

    out = run / "eval" / f"{name}_n{steps}.json"
    if out.is_file():
        cached = json.loads(out.read_text())
        if "reverse_ce_2" in cached and cached.get("sampling") == sampling:
            return cached
    t0 = time.time()
    x = sample_many(model, proc, steps, cfg.n_eval, ds.seq_len, seed=cfg.seed + 17,
                    device=cfg.device, **(sampling or {}))
    res = {"model": name, "steps": steps, "sampling": sampling,
           **hmm_metrics(ds.hmm, x, ds.info["entropy_rate_bits"], cfg.gm_half_batch, cfg.seed)}
    res["sample_s"] = round(time.time() - t0, 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    _say(f"{name} @ {steps} steps: excess NLL {res['excess_nll_bits']:+.4f} bits, "
         f"GM {res['gm']:.3g} +- {res['gm_se']:.2g}, unigram H {res['unigram_entropy']:.3f}, "
         f"reverse CE(3) {res['reverse_ce_3']:.4f}, TV(3) {res['ngram_tv_3']:.4f}")
    return res


def _label(r: dict) -> str:
    if r["model"] == SHARPENED and r.get("sampling"):
        sp = r["sampling"]
        return (f"teacher + target sharpening (soft top-p {sp['soft_top_p']:g}, "
                f"delta {sp['delta']:g}, tau {sp['temperature']:g})")
    return "data (floor)" if r["model"] == "data" else r["model"]


def _pm(r: dict, key: str, fmt: str, se_fmt: str) -> str:
    v, se = r.get(key), r.get(f"{key}_se")
    if v is None:
        return "-"
    return format(v, fmt) + ("" if se is None else " +- " + format(se, se_fmt))


def format_table(rows: list[dict], data_row: dict, entropy_bits: float) -> str:
    head = ("| model | steps | excess NLL (bits/token) | GM (true model) | unigram entropy (nats) "
            "| reverse CE n=2 (bits) | reverse CE n=3 (bits) | n-gram TV n=2 | n-gram TV n=3 |\n"
            "|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows + [data_row]:
        lines.append(f"| {_label(r)} | {r['steps']} | {r['excess_nll_bits']:+.4f} +- "
                     f"{r['nll_se']:.4f} | {r['gm']:.3g} +- {r['gm_se']:.2g} | "
                     f"{r['unigram_entropy']:.4f} +- {r['unigram_entropy_se']:.4f} | "
                     + " | ".join(_pm(r, k, ".4f", ".4f") for k in
                                  ("reverse_ce_2", "reverse_ce_3", "ngram_tv_2", "ngram_tv_3"))
                     + " |")
    lines.append(f"\nentropy of the data: {entropy_bits:.4f} bits/token; excess NLL = exact NLL "
                 "of the samples minus it; GM: mean +- standard error over pairs; n = "
                 f"{rows[0]['n'] if rows else 0} samples per row. Reverse CE: exact cross-entropy "
                 "of the true process under an n-gram model fitted to the samples (interpolated "
                 "smoothing, beta = 1); n-gram TV: to the exact n-gram distribution; both +- a "
                 "bootstrap standard error over rows, and both above 0 for any finite sample: "
                 "compare with the data (floor) row, an exact data sample of the same size. "
                 "Lower is better for GM, reverse CE and TV.")
    return "\n".join(lines)


def _plot(rows: list[dict], data_row: dict, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _say("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    curves = {m: sorted((r for r in rows if r["model"] == m), key=lambda r: r["steps"])
              for m in ("teacher", SHARPENED)}
    students = [r for r in rows if r["model"] not in curves]
    fig, axes = plt.subplots(1, 5, figsize=(23, 4))
    panels = (("excess_nll_bits", "nll_se", "excess NLL (bits/token)"),
              ("gm", "gm_se", "gradient moment (true model)"),
              ("unigram_entropy", "unigram_entropy_se", "per-sample unigram entropy (nats)"),
              ("reverse_ce_3", "reverse_ce_3_se", "reverse CE, n = 3 (bits/token)"),
              ("ngram_tv_3", "ngram_tv_3_se", "3-gram total variation"))
    for ax, (key, se, label) in zip(axes, panels):
        for m, pts in curves.items():
            if pts:
                ax.errorbar([r["steps"] for r in pts], [r[key] for r in pts],
                            yerr=[r[se] for r in pts], marker="o", capsize=3,
                            label="teacher" if m == "teacher" else "teacher, sharpened")
        for r in students:
            ax.errorbar([r["steps"]], [r[key]], yerr=[r[se]], marker="*", markersize=14,
                        linestyle="none", capsize=3, label=f"{r['model']} (k={r['steps']})")
        if key in ("unigram_entropy", "reverse_ce_3", "ngram_tv_3"):
            ax.axhline(data_row[key], color="gray", linestyle="--", label="data (floor)")
        else:
            ax.axhline(0.0, color="gray", linestyle="--", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sampling steps")
        ax.set_title(label)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def run_demo(cfg: DemoConfig) -> dict:
    """Run (or resume) the demo; returns the results dict also written to results.json."""
    from ..data.hmm import hmm_dataset
    from ..processes import make_process
    from .metrics import hmm_metrics

    t0 = time.time()
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    (run / "demo_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    _say(f"data: HMM '{cfg.hmm_preset}', {cfg.n_train} training sequences (seed {cfg.seed})")
    ds = hmm_dataset(cfg.hmm_preset, n_train=cfg.n_train, n_val=max(2000, cfg.n_eval),
                     seed=cfg.seed)
    H = ds.info["entropy_rate_bits"]
    proc = make_process("masked", ds.vocab_size, "linear")
    _say(f"entropy of the data: {H:.4f} bits/token (K={ds.vocab_size}, L={ds.seq_len})")
    _say(f"training the teacher ({cfg.teacher_steps} steps) -> {run / 'teacher'}")
    teacher, data_args = _teacher(cfg, ds, proc, run)
    students = {}
    for k in cfg.ks:
        _say(f"distilling a k={k} student ({cfg.distill_steps} iterations) -> "
             f"{run / f'student_k{k}'}")
        students[k] = _student(cfg, k, teacher, ds, proc, run, data_args)
    _say(f"evaluating with {cfg.n_eval} samples per row")
    rows = [_evaluate(cfg, "teacher", teacher, n, ds, proc, run) for n in cfg.teacher_eval_steps]
    sharp = _target_sampling(cfg)
    if sharp is not None and cfg.sharpened_teacher_rows:
        rows += [_evaluate(cfg, SHARPENED, teacher, n, ds, proc, run, sharp)
                 for n in cfg.teacher_eval_steps]
    rows += [_evaluate(cfg, f"student_k{k}", m, k, ds, proc, run) for k, m in students.items()]
    data_row = {"model": "data", "steps": "-",
                **hmm_metrics(ds.hmm, ds.val[:cfg.n_eval], H, cfg.gm_half_batch, cfg.seed)}
    table = format_table(rows, data_row, H)
    plotted = _plot(rows, data_row, run / "results.png")
    results = {"config": cfg.to_dict(), "entropy_rate_bits": H, "rows": rows, "data": data_row,
               "elapsed_s": round(time.time() - t0, 1), "plot": str(run / "results.png")
               if plotted else None}
    (run / "results.json").write_text(json.dumps(results, indent=2))
    (run / "results.md").write_text(table + "\n")
    print(table)
    _say(f"done in {results['elapsed_s']:.0f} s; table {run / 'results.md'}"
         + (f", plot {run / 'results.png'}" if plotted else ""))
    return results
