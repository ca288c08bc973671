"""D-MMD distillation of a discrete diffusion teacher into a k-step student.

Three networks with the DenoiserModel interface (processes.py): the frozen
teacher, the student (starts as the teacher; for masked diffusion with a
zero-initialized Gaussian noise input, models.transformer.with_noise_input)
and the auxiliary (starts as the teacher). One iteration (method.md section 2):

    s ~ U(0, 1), delta ~ U(0, 1/k), t = min(1, s + delta)     (one per sequence)
    x_data from the dataset, z_t ~ q(z_t | x_data)             (process.corrupt)
    p = student(z_t, t, eps), x ~ Cat(p), z_s ~ q(z_s | z_t, x) (ops.posterior_step;
                                                                 no gradient)
    generator iteration: minimize generator_loss(p, teacher(z_s, s), aux(z_s, s))
    auxiliary iteration: minimize auxiliary_loss(aux(z_s, s), teacher(z_s, s), y)

With cfg.fused_head (default 'auto': when all three networks expose hidden()
and head, ops.fused_head.has_fused_head) the losses are computed from hidden
states and output heads (ops.linear_generator_loss / linear_auxiliary_loss)
instead of [B, L, K] logits; the result is the same to rounding.

The student sees z_t at time t; teacher and auxiliary see z_s at time s. The
iterations cycle through gen_updates generator iterations then aux_updates
auxiliary ones (default 1:1: even iterations generator, odd auxiliary), each
with its own batch and its own Adam optimizer.

Signal positions and the weight over time (our choices; docs/distill.md):
masked diffusion uses only positions still masked in z_s (revealed ones are
copied by every model), uniform diffusion uses every position. Each signal
position gets weight w(s): 'constant' (1) or 'elbo' (the ELBO weight at s,
-a'_s / (1 - a_s) for masked = 1/s for the linear schedule, -a'_s / a_s for
uniform, clamped at max_weight). Losses are summed over positions and divided
by batch * length (a per-token scale).

Checkpoints are the teachers' format (checkpoint.py): model.safetensors holds
the student's EMA weights and config.json a model config with d_noise > 0, so
checkpoint.load_model and `dmmd sample --steps k` take a student as they take
a teacher. Resume is exact: raw student/aux weights, EMA, both optimizers, the
data and noise generators and the step are saved.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import checkpoint as ckpt
from .. import dist_checkpoint as dck
from .. import ops
from .. import parallel as par
from ..ops.fused_head import has_fused_head, head_params
from ..data.base import TokenDataset
from ..processes import Process
from ..logging_sinks import check_log_to, open_sinks, require_sinks
from ..training import EMA, StopOnInterrupt, _log, _resolve_device, _setup_distributed, dist_info

__all__ = ["DistillConfig", "distill", "make_student", "check_setup", "time_weight"]

WEIGHTS = ("constant", "elbo")
TARGETS = ("hard", "soft")


@dataclass
class DistillConfig:
    k: int = 8  # student sampling steps
    steps: int = 2000  # iterations (generator + auxiliary)
    batch_size: int = 64
    lr: float = 1e-5  # student (generator) learning rate
    aux_lr: float | None = None  # default: lr
    beta1: float = 0.0  # Adam; beta1 = 0 was stable where momentum drifted
    beta2: float = 0.99
    warmup: int = 0  # linear warm-up iterations
    min_lr_ratio: float = 1.0  # cosine decay to lr * min_lr_ratio (1 = constant lr)
    grad_clip: float = 1.0  # 0 disables
    ema: float = 0.99  # student EMA decay (per generator update), 0 disables
    gen_updates: int = 1  # generator iterations per cycle
    aux_updates: int = 1  # auxiliary iterations per cycle
    target: str = "hard"  # auxiliary target: 'hard' y = one-hot(x), 'soft' y = p (masked only)
    tau: float = 1.0  # teacher temperature
    top_p: float = 1.0  # soft top-p of the teacher (1 = off)
    delta: float = 2.0  # soft top-p penalty in nats
    weight: str = "constant"  # w(s): 'constant' | 'elbo'
    max_weight: float = 100.0  # clamp of the 'elbo' weight
    d_noise: int = -1  # student noise width; -1: 32 for masked, 0 for uniform
    process: str = "auto"  # the teacher's expected process: 'auto' | 'masked' | 'uniform'
    eval_every: int = 0  # calls evaluate(student, step) every this many iterations
    save_every: int = 500
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    bf16: bool = True  # autocast to bf16 on CUDA (ignored on CPU)
    # losses from hidden states + heads, never the [B, L, K] logits (ops.fused_head):
    # 'auto' when all three networks expose hidden() and head, True (error if one
    # does not) or False
    fused_head: str | bool = "auto"
    progress: bool = True
    parallel: str = "ddp"  # 'ddp' | 'fsdp': all three networks sharded (parallel.py)
    grad_accum: int = 1  # micro-batches of batch_size per update (each network)
    rng: str = "rank"  # random streams: 'rank' (seed + rank) | 'global' (world-size invariant)
    fsdp_bf16: bool = False  # FSDP mixed precision: bf16 parameters, fp32 gradient reduction
    offload_teacher: bool = False  # FSDP: keep the teacher's shards on the CPU (CUDA only)
    log_to: str = "jsonl"  # log sinks, comma-separated: jsonl (always), tensorboard, wandb

    def __post_init__(self):
        par.check_options(self.parallel, self.grad_accum, self.rng, self.fsdp_bf16,
                          self.offload_teacher)
        check_log_to(self.log_to)
        if int(self.k) < 1:
            raise ValueError(f"k: expected a number of student steps >= 1, got {self.k}")
        for name in ("steps", "batch_size", "gen_updates", "aux_updates"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.weight not in WEIGHTS:
            raise ValueError(f"weight: expected one of {WEIGHTS}, got {self.weight!r}")
        if self.target not in TARGETS:
            raise ValueError(f"target: expected one of {TARGETS}, got {self.target!r}")
        if self.process not in ("auto", "masked", "uniform"):
            raise ValueError(f"process: expected 'auto', 'masked' or 'uniform', got {self.process!r}")
        if not self.tau > 0:
            raise ValueError(f"tau: expected > 0, got {self.tau}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p: expected a number in (0, 1], got {self.top_p}")
        if self.fused_head not in ("auto", True, False):
            raise ValueError(f"fused_head: expected 'auto', True or False, got {self.fused_head!r}")
        if not self.lr > 0 or (self.aux_lr is not None and not self.aux_lr > 0):
            raise ValueError(f"lr/aux_lr: expected > 0, got {self.lr}/{self.aux_lr}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DistillConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"DistillConfig: unknown fields {sorted(unknown)}")
        return cls(**d)

    def noise_width(self, process: Process) -> int:
        if self.d_noise >= 0:
            return int(self.d_noise)
        return 32 if process.kind == "masked" else 0

    def is_generator_iteration(self, i: int) -> bool:
        return i % (self.gen_updates + self.aux_updates) < self.gen_updates


def time_weight(process: Process, s: torch.Tensor, kind: str, max_weight: float) -> torch.Tensor:
    """w(s) [B] float32: 'constant' = 1; 'elbo' = the ELBO weight at s, clamped."""
    if kind == "constant":
        return torch.ones_like(s, dtype=torch.float32)
    s64 = s.to(torch.float64)
    w = (process.schedule.masked_weight(s64) if process.kind == "masked"
         else process.schedule.rate(s64))
    return w.clamp(max=max_weight).float()


# ------------------------------------------------------------------- set-up ----
def _model_config(model) -> dict | None:
    """The model's registry spec (models.registry.model_spec), or None."""
    from ..models.registry import model_spec

    return model_spec(model)


def _check_transformer_spec(mc: dict, process: Process, dataset: TokenDataset) -> None:
    if mc.get("vocab_out") != process.vocab_size:
        raise ValueError(f"teacher: outputs {mc.get('vocab_out')} logits but its process has "
                         f"vocab_size={process.vocab_size}")
    if mc.get("vocab_in") != process.input_vocab_size:
        raise ValueError(f"teacher: takes {mc.get('vocab_in')} input ids but a {process.kind} "
                         f"process needs {process.input_vocab_size}")
    if mc.get("max_len", dataset.seq_len) < dataset.seq_len:
        raise ValueError(f"teacher: max_len={mc.get('max_len')} < dataset seq_len="
                         f"{dataset.seq_len}")


@torch.no_grad()
def _probe_output(teacher, process: Process, dataset: TokenDataset) -> None:
    """Any other model: one forward on a fully noised [1, L] input must give [1, L, K]."""
    try:
        p = next(teacher.parameters())
    except (StopIteration, AttributeError):
        return
    L = dataset.seq_len
    z = process.prior(1, L, generator=torch.Generator(device=p.device).manual_seed(0),
                      device=p.device)
    was = teacher.training
    teacher.eval()
    try:
        out = teacher(z, torch.ones(1, device=p.device))
    finally:
        teacher.train(was)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, L, process.vocab_size):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"teacher: returns {shape} for a [1, {L}] input, but a {process.kind} "
                         f"process with vocab_size={process.vocab_size} needs logits "
                         f"[1, {L}, {process.vocab_size}] (model(z, t, noise=None) -> logits)")


def check_setup(teacher, process: Process, dataset: TokenDataset, cfg: DistillConfig) -> None:
    """Clear errors for configurations that cannot work."""
    if cfg.process != "auto" and cfg.process != process.kind:
        raise ValueError(f"teacher: this trainer expects a {cfg.process} teacher (process="
                         f"{cfg.process!r}) but the teacher is a {process.kind} diffusion model; "
                         f"distill it with process='{process.kind}' or 'auto'")
    dataset.check_vocab(process.vocab_size, "teacher")
    mc = _model_config(teacher)
    if mc is not None and mc.get("arch", "transformer") == "transformer":
        _check_transformer_spec(mc, process, dataset)
    else:  # a model whose config is not ours (Hugging Face, a user's module)
        _probe_output(teacher, process, dataset)
    if int(getattr(teacher, "d_noise", 0) or 0) > 0:
        raise ValueError("teacher: has a noise input (d_noise > 0): it is a student; distill "
                         "from the teacher checkpoint")
    if cfg.target == "soft" and process.kind != "masked":
        raise ValueError("target: 'soft' auxiliary targets are defined for masked diffusion only; "
                         f"the teacher is {process.kind}")


def make_student(teacher: nn.Module, d_noise: int) -> nn.Module:
    """The student's starting point: the teacher, plus a zero-initialized noise
    input when d_noise > 0 (so it computes exactly what the teacher computes):
    the built-in Transformer's own (with_noise_input), for any other model a
    hook on its input embedding (models.noise.NoiseInput)."""
    if d_noise > 0:
        from ..models.noise import NoiseInput
        from ..models.transformer import Transformer, with_noise_input

        if isinstance(teacher, Transformer):
            return with_noise_input(teacher, d_noise)
        return NoiseInput(copy.deepcopy(teacher), d_noise)
    return copy.deepcopy(teacher)


# -------------------------------------------------------------- training ----
class _State:
    """Everything that changes during training (saved for exact resume)."""

    def __init__(self, student, aux, cfg: DistillConfig, rank: int, device):
        self.student, self.aux = student, aux
        aux_lr = cfg.aux_lr if cfg.aux_lr is not None else cfg.lr
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(student.parameters(), lr=cfg.lr, betas=betas)
        self.opt_a = torch.optim.Adam(aux.parameters(), lr=aux_lr, betas=betas)
        self.base_lr = (cfg.lr, aux_lr)
        self.ema = EMA(student, cfg.ema) if cfg.ema > 0 else None
        self.data_gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
        self.noise_gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + 500 + rank)
        self.step = 0

    def sample_weights(self) -> dict[str, torch.Tensor]:
        return self.ema.state_for(self.student) if self.ema is not None else self.student.state_dict()

    def save(self, ck_dir, config: dict, rank: int, world: int) -> None:
        import torch.distributed as dist

        rng = {"data": self.data_gen.get_state(), "noise": self.noise_gen.get_state()}
        gathered = [rng]
        if world > 1:
            gathered = [None] * world
            dist.all_gather_object(gathered, rng)
        if rank == 0:
            tensors = {f"student.{k}": v for k, v in self.student.state_dict().items()}
            tensors.update({f"aux.{k}": v for k, v in self.aux.state_dict().items()})
            if self.ema is not None:
                tensors.update({f"ema.{k}": v for k, v in self.ema.shadow.items()})
            state = {"opt_student": self.opt_g.state_dict(), "opt_aux": self.opt_a.state_dict(),
                     "step": self.step, "world_size": world}
            ckpt.save_checkpoint(ck_dir, self.sample_weights(), config, self.step,
                                 train_tensors=tensors, train_state=state,
                                 rng_states={r: {k: v.cpu() for k, v in s.items()}
                                             for r, s in enumerate(gathered)})
        if world > 1:
            dist.barrier()

    def restore(self, ck_dir, rank: int) -> None:
        tensors, state = ckpt.load_train_state(ck_dir)
        if state is None or "opt_student" not in state:
            raise ValueError(f"resume: {ck_dir} is not a distillation checkpoint with training "
                             "state; use a new run directory or resume=False")

        def part(prefix):
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.student.load_state_dict(part("student."))
        self.aux.load_state_dict(part("aux."))
        if self.ema is not None:
            for k, v in part("ema.").items():
                self.ema.shadow[k].copy_(v)
        self.opt_g.load_state_dict(state["opt_student"])
        self.opt_a.load_state_dict(state["opt_aux"])
        rng = ckpt.load_rng(ck_dir, rank)
        if rng is None:
            raise ValueError(f"resume: {ck_dir} has no RNG state for rank {rank} (saved with world "
                             f"size {state.get('world_size')}); resume with the same world size")
        self.data_gen.set_state(rng["data"])
        self.noise_gen.set_state(rng["noise"])
        self.step = int(state["step"])


def _lr_scale(step: int, cfg: DistillConfig) -> float:
    if cfg.warmup and step < cfg.warmup:
        return (step + 1) / cfg.warmup
    frac = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))


def _clip(model, max_norm: float) -> float:
    return par.clip_grad_norm(model, max_norm)


def _iteration(st: _State, nets: dict, process: Process, batches, cfg: DistillConfig,
               d_noise: int, device, autocast: bool, micro: int = 0) -> dict:
    """One generator or auxiliary iteration; returns the logged numbers."""
    gen = cfg.is_generator_iteration(st.step)
    x0 = next(batches)
    B, L = x0.shape
    g = st.noise_gen
    s = torch.rand(B, generator=g, device=device)
    t = (s + torch.rand(B, generator=g, device=device) / cfg.k).clamp(max=1.0)
    z_t = process.corrupt(x0, t, generator=g)
    eps = torch.randn(B, L, d_noise, generator=g, device=device) if d_noise else None
    amp = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast)
    fused = nets["fused"]  # then student_ddp / aux_ddp return hidden states
    if gen:
        student = nets["student_ddp"]
    else:
        student = st.student.hidden if fused else st.student
    with torch.set_grad_enabled(gen), amp:
        h_s = p_logits = student(z_t, t, eps)
        if fused:  # logits for the draw only: no autograd graph keeps them
            with torch.no_grad():
                p_logits = F.linear(h_s.detach(), *head_params(st.student))
    # The op reads bf16 logits (autocast) directly: no float32 copy of [B, L, K].
    z_s, x = ops.posterior_step(z_t, p_logits.detach(), process.alpha(t), process.alpha(s),
                                process.kind, process.mask_id if process.kind == "masked" else None,
                                generator=g, validate=False)
    if process.kind == "masked":
        signal = (z_s == process.mask_id).float()
    else:
        signal = torch.ones(B, L, device=device)
    w = time_weight(process, s, cfg.weight, cfg.max_weight)[:, None] * signal
    if fused:
        del p_logits
        loss = _fused_loss(st, nets, gen, h_s, z_s, s, x, w, cfg, amp) / (B * L)
    else:
        loss = _plain_loss(st, nets, gen, p_logits, z_s, s, x, w, cfg, amp) / (B * L)
    opt, model = (st.opt_g, st.student) if gen else (st.opt_a, st.aux)
    if micro == 0:
        opt.zero_grad(set_to_none=True)
    (loss / cfg.grad_accum).backward()
    gnorm = 0.0
    if micro == cfg.grad_accum - 1:  # the last micro-batch of the update
        gnorm = _clip(model, cfg.grad_clip)
        opt.step()
        if gen and st.ema is not None:
            st.ema.update(st.student)
    return {"kind": "gen" if gen else "aux", "loss": float(loss.detach()), "grad_norm": gnorm,
            "signal_frac": float(signal.mean())}


def _plain_loss(st, nets, gen, p_logits, z_s, s, x, w, cfg, amp):
    """The iteration's summed loss from the three networks' logits."""
    with torch.no_grad(), amp:
        t_logits = nets["teacher"](z_s, s)
    kw = dict(weight=w, tau=cfg.tau, top_p=cfg.top_p, delta=cfg.delta, reduction="sum")
    if gen:
        with torch.no_grad(), amp:
            a_logits = st.aux(z_s, s)
        return ops.generator_loss(p_logits, t_logits, a_logits, **kw)
    with amp:
        a_logits = nets["aux_ddp"](z_s, s)
    target = x if cfg.target == "hard" else p_logits.detach()
    return ops.auxiliary_loss(a_logits, t_logits, target, **kw)


def _fused_loss(st, nets, gen, h_s, z_s, s, x, w, cfg, amp):
    """_plain_loss from hidden states and heads (ops.fused_head): the same loss
    without [B, L, K] logits; h_s is the student's hidden state at z_t."""
    (ws, bs), (wt, bt), (wa, ba) = (head_params(m) for m in (st.student, nets["teacher"], st.aux))
    kw = dict(weight=w, tau=cfg.tau, top_p=cfg.top_p, delta=cfg.delta, reduction="sum",
              b_teacher=bt)
    with torch.no_grad(), amp:
        h_t = nets["teacher"].hidden(z_s, s)
    if gen:
        with torch.no_grad(), amp:
            h_a = st.aux.hidden(z_s, s)
        with amp:
            return ops.linear_generator_loss(h_s, ws, h_t, wt, h_a, wa.detach(), b_student=bs,
                                             b_aux=None if ba is None else ba.detach(), **kw)
    with amp:
        h_a = nets["aux_ddp"](z_s, s)
        target = x if cfg.target == "hard" else (h_s.detach(), ws.detach(),
                                                 None if bs is None else bs.detach())
        return ops.linear_auxiliary_loss(h_a, wa, h_t, wt, target, b_aux=ba, **kw)


class _Hidden(nn.Module):
    """model.hidden as a forward, so that DDP can wrap the fused-head path (the
    head's parameters get their gradients from the loss op, outside forward)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, z, t, noise=None):
        return self.model.hidden(z, t, noise)


def _use_fused_head(mode, nets: dict, fsdp: bool = False) -> bool:
    """cfg.fused_head resolved for these networks ('auto': when all expose it).
    Not under FSDP: the fused losses read the heads' weights outside the
    networks' forward, where FSDP keeps them sharded."""
    if fsdp:
        if mode is True:
            raise ValueError("fused_head=True: not supported with parallel='fsdp' (the heads' "
                             "weights stay sharded outside forward); use fused_head='auto' or "
                             "False")
        return False
    lacking = [name for name, m in nets.items() if not has_fused_head(m)]
    if mode is True and lacking:
        raise ValueError(f"fused_head=True: the {', '.join(lacking)} network(s) lack hidden(z, t, "
                         "noise=None) and a head (an nn.Linear or a (weight, bias) pair); use "
                         "fused_head='auto' or False")
    return not lacking if mode == "auto" else bool(mode)


def distill(teacher: nn.Module, process: Process, dataset: TokenDataset, cfg: DistillConfig,
            run_dir: str | os.PathLike, teacher_config: dict | None = None,
            extra_config: dict | None = None, resume: bool = True,
            student_factory: Callable[[nn.Module, int], nn.Module] | None = None,
            evaluate: Callable[[nn.Module, int], dict] | None = None,
            teacher_weights: dict[str, torch.Tensor] | None = None) -> dict:
    """Distill teacher (a DenoiserModel nn.Module trained for process on dataset's
    vocabulary) into a cfg.k-step student; writes run_dir/checkpoint (the
    student, see the module docstring), run_dir/log.jsonl and run_config.json.

    teacher_config: the teacher's model spec (for the student's config.json;
    default: models.registry.model_spec(teacher), e.g. {'arch': 'transformer', ...}
    or {'arch': 'hf:DIR', ...}). evaluate, if
    given, is called on rank 0 with the student (EMA weights loaded, eval mode)
    every cfg.eval_every iterations and at the end; its dict is logged.
    teacher_weights: with a built-in Transformer teacher built on the meta device
    and parallel='fsdp', its full state dict (e.g. the memory-mapped
    model.safetensors): every rank loads its own shards of the three networks
    from it (parallel.load_full_state), nothing is broadcast. Returns a summary dict."""
    require_sinks(cfg.log_to)  # before any work: a missing package stops every rank
    if par.is_meta(teacher):
        _check_meta_teacher(teacher, cfg, teacher_weights, student_factory)
    with StopOnInterrupt() as stop:  # Ctrl-C: finish the iteration, save, return
        return _distill(teacher, process, dataset, cfg, run_dir, teacher_config, extra_config,
                        resume, student_factory, evaluate, stop, teacher_weights)


def _check_meta_teacher(teacher, cfg: DistillConfig, weights, student_factory) -> None:
    """What meta-device initialization supports: FSDP, the built-in Transformer and
    make_student (whose only new weights, the noise input, start at zero)."""
    from ..models.transformer import Transformer

    why = ("needs parallel='fsdp' (--fsdp)" if cfg.parallel != "fsdp" else
           "needs teacher_weights (its full state dict)" if weights is None else
           "supports the built-in Transformer only" if not isinstance(teacher, Transformer) else
           "supports the default student_factory only" if student_factory is not None else
           "does not support offload_teacher (--offload-teacher)" if cfg.offload_teacher else "")
    if why:
        raise ValueError(f"teacher on the meta device: {why}; otherwise pass a teacher with "
                         "its weights loaded")
    keys, have = set(teacher.state_dict()), set(weights)
    if keys != have:  # what load_state_dict(strict=True) would refuse
        raise ValueError(f"teacher_weights: do not match the teacher (missing "
                         f"{sorted(keys - have)[:5]}, unexpected {sorted(have - keys)[:5]})")


def _full_weights(model: nn.Module, teacher_weights: dict) -> dict:
    """model's starting state dict: the teacher's tensors, zeros for the keys the
    teacher lacks (make_student's zero-initialized noise input)."""
    return {k: teacher_weights[k] if k in teacher_weights else torch.zeros(v.shape, dtype=v.dtype)
            for k, v in model.state_dict().items()}


def _distill(teacher, process, dataset, cfg, run_dir, teacher_config, extra_config, resume,
             student_factory, evaluate, stop, teacher_weights=None) -> dict:
    check_setup(teacher, process, dataset, cfg)
    device = _resolve_device(cfg.device)
    rank, world = _setup_distributed(device)
    run_dir, autocast = Path(run_dir), cfg.bf16 and device.type == "cuda"
    ck_dir = run_dir / "checkpoint"
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume and (run_dir / "log.jsonl").is_file():  # starting over: a clean log
            (run_dir / "log.jsonl").unlink()
    d_noise = cfg.noise_width(process)
    meta = par.is_meta(teacher)  # weights come from teacher_weights after sharding
    teacher = (teacher if meta else teacher.to(device)).eval().requires_grad_(False)
    student = (student_factory or make_student)(teacher, d_noise)
    student = (student if meta else student.to(device)).requires_grad_(True)
    aux = copy.deepcopy(teacher).requires_grad_(True)
    student.train(), aux.train()
    fsdp = cfg.parallel == "fsdp"
    nets3 = (teacher, student, aux)
    full = [_full_weights(m, teacher_weights) for m in nets3] if meta else None
    if fsdp:  # before the optimizers: fully_shard replaces the parameters
        par.shard(teacher, device, frozen=True, bf16=cfg.fsdp_bf16, offload=cfg.offload_teacher)
        par.shard(student, device, bf16=cfg.fsdp_bf16)
        par.shard(aux, device, bf16=cfg.fsdp_bf16)
    if meta:
        for m, sd in zip(nets3, full):
            par.load_full_state(m, device, sd)
    del full
    st = _State(student, aux, cfg, rank, device)
    if resume and ckpt.has_checkpoint(ck_dir) and fsdp:
        dck.restore_distill(ck_dir, st, rank, world, cfg.rng)
    elif resume and ckpt.has_checkpoint(ck_dir):
        dck.check_unsharded(ck_dir)
        st.restore(ck_dir, rank)
    fused = _use_fused_head(cfg.fused_head, {"teacher": teacher, "student": student, "aux": aux},
                            fsdp)
    wrap = _Hidden if fused else (lambda m: m)
    nets = {"teacher": teacher, "student_ddp": wrap(student), "aux_ddp": wrap(aux), "fused": fused}
    if world > 1 and not fsdp:
        ids = [device.index] if device.type == "cuda" else None
        nets["student_ddp"] = nn.parallel.DistributedDataParallel(nets["student_ddp"],
                                                                  device_ids=ids)
        nets["aux_ddp"] = nn.parallel.DistributedDataParallel(nets["aux_ddp"], device_ids=ids)

    if teacher_config is None:
        teacher_config = _model_config(teacher) or {}
    student_config = dict(teacher_config)
    if student_config:
        student_config["d_noise"] = d_noise
    config = {"model": student_config, "process": process.to_dict(), "data": dataset.describe(),
              "kind": "student", "k": cfg.k, "distill": cfg.to_dict(), "world_size": world,
              "teacher_model": teacher_config, **(extra_config or {})}
    if rank == 0:
        (run_dir / "run_config.json").write_text(json.dumps(config, indent=2, default=str))
    log_path = run_dir / "log.jsonl"
    batches = dataset.batches(cfg.batch_size, generator=st.data_gen, device=device)
    bar = None
    if cfg.progress and rank == 0:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.steps, initial=st.step, desc=f"distill k={cfg.k}", dynamic_ncols=True)
    run = {"gen": None, "aux": None}  # running losses for the progress bar
    window: dict[str, list[dict]] = {"gen": [], "aux": []}  # records since the last log line
    last_eval, t0 = None, time.time()
    interrupted = False
    meter = par.Meter(device, world, cfg.batch_size * cfg.grad_accum * world * dataset.seq_len)
    sinks = open_sinks(cfg.log_to, run_dir, rank, config, name=run_dir.name)
    try:
        while st.step < cfg.steps:
            scale = _lr_scale(st.step, cfg)
            for opt, base in ((st.opt_g, st.base_lr[0]), (st.opt_a, st.base_lr[1])):
                for grp in opt.param_groups:
                    grp["lr"] = base * scale
            rec, perf = _accumulate(st, nets, process, batches, cfg, d_noise, device, autocast,
                                    rank, world, meter)
            st.step += 1
            kind = rec.pop("kind")
            window[kind].append(rec)
            run[kind] = rec["loss"] if run[kind] is None else 0.98 * run[kind] + 0.02 * rec["loss"]
            if rank == 0 and (st.step % cfg.log_every == 0 or st.step == cfg.steps):
                _log(log_path, {"step": st.step, **_summarize(window), "lr_scale": scale,
                                "elapsed_s": round(time.time() - t0, 3), **perf}, sinks)
                window = {"gen": [], "aux": []}
            if bar is not None:
                bar.set_postfix({f"{k}_loss": f"{v:.4f}" for k, v in run.items() if v is not None})
                bar.update(1)
            done = st.step == cfg.steps
            if evaluate is not None and (rank == 0 or fsdp) and cfg.eval_every and (
                    st.step % cfg.eval_every == 0 or done):  # a sharded forward needs every rank
                last_eval = _evaluate(st, evaluate)
                if rank == 0:
                    _log(log_path, {"step": st.step, "eval": last_eval,
                                    "elapsed_s": round(time.time() - t0, 3)}, sinks)
                if bar is not None:
                    bar.write(f"step {st.step}: {json.dumps(last_eval)}")
            stopping = not done and stop is not None and stop.requested(world, device)
            is_save = (cfg.save_every and st.step % cfg.save_every == 0) or done or stopping
            if is_save and fsdp:
                dck.save_distill(ck_dir, st, config, rank, world, cfg.rng)
            elif is_save:
                st.save(ck_dir, config, rank, world)
            if stopping:
                interrupted = True
                break
    finally:
        sinks.close()
    if bar is not None:
        bar.close()
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
    return {"steps": st.step, "k": cfg.k, "run_dir": str(run_dir), "checkpoint": str(ck_dir),
            "world_size": world, "running_loss": run, "eval": last_eval,
            "elapsed_s": time.time() - t0, **({"interrupted": True} if interrupted else {})}


def _summarize(window: dict[str, list[dict]]) -> dict:
    """Means of each iteration kind's numbers over a log window: gen_loss, aux_loss, ..."""
    out = {}
    for kind, recs in window.items():
        for key in (recs[0] if recs else {}):
            out[f"{kind}_{key}"] = sum(r[key] for r in recs) / len(recs)
        out[f"{kind}_n"] = len(recs)
    return out


def _evaluate(st: _State, evaluate) -> dict:
    """evaluate() on the weights that are saved for sampling (EMA), in eval mode."""
    raw = {k: v.clone() for k, v in st.student.state_dict().items()}
    st.student.load_state_dict(st.sample_weights())
    st.student.eval()
    try:
        with torch.no_grad():
            return evaluate(st.student, st.step)
    finally:
        st.student.load_state_dict(raw)
        st.student.train()


def _accumulate(st: _State, nets: dict, process: Process, batches, cfg: DistillConfig,
                d_noise: int, device, autocast: bool, rank: int, world: int, meter
                ) -> tuple[dict, dict]:
    """One update of one network from cfg.grad_accum micro-batches (gradients
    synchronized on the last); returns (the iteration's record with the loss
    averaged over the global batch, throughput and memory on log steps)."""
    recs = []
    for micro in range(cfg.grad_accum):
        if cfg.rng == "global":
            par.reseed(st.data_gen, st.noise_gen, cfg.seed,
                       par.micro_index(st.step, micro, cfg.grad_accum, rank, world))
        with par.grad_sync([nets["student_ddp"], nets["aux_ddp"]], micro == cfg.grad_accum - 1):
            recs.append(_iteration(st, nets, process, batches, cfg, d_noise, device, autocast,
                                   micro=micro))
    done = st.step + 1
    perf = meter.step(sum(r["loss"] for r in recs) / len(recs),
                      done % cfg.log_every == 0 or done == cfg.steps)
    rec = {k: sum(r[k] for r in recs) / len(recs) for k in recs[0] if k != "kind"}
    rec.update(kind=recs[0]["kind"], loss=perf.pop("loss"), grad_norm=recs[-1]["grad_norm"])
    return rec, perf
