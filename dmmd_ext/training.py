"""Teacher training: minimize the process's continuous-time NELBO.

AdamW, linear warm-up then cosine decay, gradient clipping, EMA weights,
bf16 autocast on CUDA only, periodic validation (NELBO in bits per token,
with a fixed corruption seed so evaluations are comparable), checkpoints
(checkpoint.py) with everything needed to resume exactly, a JSONL log and a
tqdm bar. Under torchrun (WORLD_SIZE > 1) it runs DDP: gloo on CPU, nccl on
CUDA; each rank draws its own batches and noise (seed + rank) and rank 0
validates and saves.

Exact resume: the data generator, the noise generator, the optimizer, the raw
and EMA weights and the step are saved; resuming from step k replays the same
batches and noise as an uninterrupted run (tested on CPU, bitwise).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

from . import checkpoint as ckpt
from . import dist_checkpoint as dck
from . import parallel as par
from .logging_sinks import check_log_to, open_sinks, require_sinks
from .data.base import TokenDataset
from .processes import Process

__all__ = ["TrainConfig", "train_teacher", "lr_at", "evaluate_nelbo", "EMA", "dist_info",
           "StopOnInterrupt"]


class StopOnInterrupt:
    """Ctrl-C (SIGINT) during training: the step in progress finishes, then the
    trainer saves a checkpoint and returns (a second Ctrl-C stops at once).
    Use as a context manager; `requested()` is agreed on by every DDP rank."""

    def __init__(self):
        self.flag, self._old = False, None

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        import signal

        if self.flag:  # second Ctrl-C: the usual KeyboardInterrupt
            signal.signal(signal.SIGINT, self._old or signal.default_int_handler)
            raise KeyboardInterrupt
        self.flag = True
        print("\ninterrupt: finishing this step, saving a checkpoint (Ctrl-C again to abort)",
              flush=True)

    def requested(self, world: int = 1, device=None) -> bool:
        if world > 1:
            t = torch.tensor([1.0 if self.flag else 0.0], device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            return bool(t.item())
        return self.flag

    def __exit__(self, *exc):
        import signal

        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup: int = 100
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables
    ema: float = 0.999  # 0 disables
    eval_every: int = 250
    eval_batches: int = 8
    eval_seed: int = 12345
    save_every: int = 500
    log_every: int = 10
    seed: int = 0
    device: str = "auto"  # 'auto' | 'cpu' | 'cuda' | 'cuda:1' ...
    bf16: bool = True  # autocast to bf16 on CUDA (ignored on CPU)
    progress: bool = True
    antithetic: bool = True
    parallel: str = "ddp"  # 'ddp' | 'fsdp' (parallel.py; DDP only when WORLD_SIZE > 1)
    grad_accum: int = 1  # micro-batches of batch_size per optimizer step
    rng: str = "rank"  # random streams: 'rank' (seed + rank) | 'global' (world-size invariant)
    fsdp_bf16: bool = False  # FSDP mixed precision: bf16 parameters, fp32 gradient reduction
    log_to: str = "jsonl"  # log sinks, comma-separated: jsonl (always), tensorboard, wandb

    def __post_init__(self):
        check_log_to(self.log_to)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"TrainConfig: unknown fields {sorted(unknown)}")
        return cls(**d)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over cfg.warmup steps, then cosine to lr * min_lr_ratio."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    span = max(1, cfg.steps - cfg.warmup)
    frac = min(1.0, (step - cfg.warmup) / span)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


class EMA:
    """Exponential moving average of a module's floating-point parameters (fp32)."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in module.state_dict().items()
                       if v.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        sd = module.state_dict()
        keys = list(self.shadow)
        torch._foreach_lerp_([self.shadow[k] for k in keys], [sd[k].float() for k in keys],
                             1.0 - self.decay)

    def state_for(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """module's state dict with the EMA values in place of its parameters."""
        sd = module.state_dict()
        return {k: self.shadow[k].to(v.dtype) if k in self.shadow else v for k, v in sd.items()}


def dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _setup_distributed(device: torch.device) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist_info()


def _resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    return torch.device(spec)


@torch.no_grad()
def evaluate_nelbo(model, process: Process, dataset: TokenDataset, batch_size: int,
                   max_batches: int, seed: int, device, autocast: bool = False) -> float:
    """Validation NELBO in bits per token: one time and corruption draw per
    sequence from a generator seeded with `seed` (the same draws every call)."""
    was_training = model.training
    model.eval()
    g = torch.Generator(device=device).manual_seed(seed)
    total, count = 0.0, 0
    for x0 in dataset.eval_batches(batch_size, max_batches, device=device):
        t = process.sample_time(x0.shape[0], generator=g, device=device)
        z = process.corrupt(x0, t, generator=g)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(z, t)
        total += float(process.loss(logits, x0, z, t).sum())
        count += x0.numel()
    model.train(was_training)
    return total / count / math.log(2)


def _param_groups(model: nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and "tok" not in name and "pos_emb" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _log(path: Path, record: dict, sinks=None) -> None:
    """One record to log.jsonl and to the run's other sinks (logging_sinks.Sinks)."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    if sinks is not None:
        sinks.log(record)


def train_teacher(model: nn.Module, process: Process, dataset: TokenDataset, cfg: TrainConfig,
                  run_dir: str | os.PathLike, model_config: dict | None = None,
                  extra_config: dict | None = None, resume: bool = True,
                  stop_after: int | None = None) -> dict:
    """Train model (a DenoiserModel nn.Module) on dataset with process's NELBO.

    run_dir receives log.jsonl and checkpoint/ (see checkpoint.py); model_config
    (models.registry spec; default model_spec(model)) is stored so
    checkpoint.load_model can rebuild the model. With resume=True and an existing
    run_dir/checkpoint, training continues from it exactly. stop_after=k ends the
    run after step k with a checkpoint, as an interruption would (the schedule still
    follows cfg.steps). Returns a summary dict."""
    dataset.check_vocab(process.vocab_size, "process")
    if model_config is None:
        from .models.registry import model_spec

        model_config = model_spec(model)
    par.check_options(cfg.parallel, cfg.grad_accum, cfg.rng, cfg.fsdp_bf16)
    require_sinks(cfg.log_to)
    fsdp = cfg.parallel == "fsdp"
    device = _resolve_device(cfg.device)
    rank, world = _setup_distributed(device)
    run_dir = Path(run_dir)
    ck_dir = run_dir / "checkpoint"
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume and (run_dir / "log.jsonl").is_file():  # starting over: a clean log
            (run_dir / "log.jsonl").unlink()
    model.to(device).train()
    if fsdp:  # before the optimizer: fully_shard replaces the parameters
        par.shard(model, device, bf16=cfg.fsdp_bf16)
    autocast = cfg.bf16 and device.type == "cuda"

    data_gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    noise_gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + 500 + rank)
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr,
                            betas=(cfg.beta1, cfg.beta2))
    start, saved = 0, {}
    if resume and ckpt.has_checkpoint(ck_dir) and fsdp:
        start, saved = dck.restore_teacher(ck_dir, model, opt, data_gen, noise_gen, rank, world,
                                           cfg.rng)
    elif resume and ckpt.has_checkpoint(ck_dir):
        dck.check_unsharded(ck_dir)
        start, saved = _restore(ck_dir, model, opt, data_gen, noise_gen, rank)
    ddp = model
    if world > 1 and not fsdp:  # DDP broadcasts rank 0's weights here, so the EMA starts from them
        ddp = par.ddp(model, device)
    ema = EMA(model, cfg.ema) if cfg.ema > 0 else None
    if ema is not None:
        for k in ema.shadow:
            if f"ema.{k}" in saved:
                ema.shadow[k].copy_(saved[f"ema.{k}"])

    config = {"model": model_config or {}, "process": process.to_dict(),
              "data": dataset.describe(), "train": cfg.to_dict(), "kind": "teacher",
              "world_size": world, **(extra_config or {})}
    if rank == 0:
        (run_dir / "run_config.json").write_text(json.dumps(config, indent=2, default=str))
    log_path = run_dir / "log.jsonl"
    batches = dataset.batches(cfg.batch_size, generator=data_gen, device=device)
    bar = None
    if cfg.progress and rank == 0:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.steps, initial=start, desc="train-teacher", dynamic_ncols=True)
    last_val, t0, c0 = None, time.time(), time.process_time()  # cpu_s: all threads, this process
    L = dataset.seq_len
    meter = par.Meter(device, world, cfg.batch_size * cfg.grad_accum * world * L)
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    state = dict(model=model, ddp=ddp, opt=opt, ema=ema, process=process, dataset=dataset,
                 cfg=cfg, device=device, autocast=autocast, batches=batches, noise_gen=noise_gen,
                 data_gen=data_gen, config=config, ck_dir=ck_dir, log_path=log_path, bar=bar,
                 rank=rank, world=world, L=L, t0=t0, c0=c0, meter=meter, fsdp=fsdp)
    state["sinks"] = open_sinks(cfg.log_to, run_dir, rank, config, name=run_dir.name)
    try:
        with StopOnInterrupt() as state["stop"]:
            end, interrupted = _train_loop(state, start, end)
    finally:
        state["sinks"].close()
    last_val = state["last_val"]
    if bar is not None:
        bar.close()
    if world > 1:
        dist.barrier()
    return {"steps": end, "val_nelbo_bpt": last_val, "run_dir": str(run_dir),
            "checkpoint": str(ck_dir), "world_size": world, "elapsed_s": time.time() - t0,
            **({"interrupted": True} if interrupted else {})}


def _train_loop(v: dict, start: int, end: int) -> tuple[int, bool]:
    """The teacher's training steps start..end-1; returns (last step done, interrupted).
    v: the trainer's state (model, optimizer, ...); v['last_val'] gets the last
    validation NELBO."""
    model, ddp, opt, ema, process, dataset, cfg = (v[k] for k in (
        "model", "ddp", "opt", "ema", "process", "dataset", "cfg"))
    device, autocast, batches, noise_gen, bar, rank, world, L = (v[k] for k in (
        "device", "autocast", "batches", "noise_gen", "bar", "rank", "world", "L"))
    log_path, t0, c0 = v["log_path"], v["t0"], v["c0"]
    data_gen, meter, fsdp = v["data_gen"], v["meter"], v["fsdp"]
    last_val = v["last_val"] = None
    for step in range(start, end):
        lr = lr_at(step, cfg)
        for grp in opt.param_groups:
            grp["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for micro in range(cfg.grad_accum):  # gradients synchronized on the last one only
            if cfg.rng == "global":
                par.reseed(data_gen, noise_gen, cfg.seed,
                           par.micro_index(step, micro, cfg.grad_accum, rank, world))
            with par.grad_sync([ddp], micro == cfg.grad_accum - 1):
                x0 = next(batches)
                t = process.sample_time(x0.shape[0], generator=noise_gen, device=device,
                                        antithetic=cfg.antithetic)
                z = process.corrupt(x0, t, generator=noise_gen)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
                    logits = ddp(z, t)
                loss = process.loss(logits, x0, z, t).mean() / L  # nats per token
                (loss / cfg.grad_accum).backward()
            loss_sum += float(loss.detach())
        gnorm = par.clip_grad_norm(model, cfg.grad_clip)
        opt.step()
        if ema is not None:
            ema.update(model)
        done = step + 1
        is_log = done % cfg.log_every == 0 or done == cfg.steps or step == start
        m = meter.step(loss_sum / cfg.grad_accum, is_log)  # all ranks: global batch mean loss
        if rank == 0 and is_log:
            rec = {"step": done, "loss_bpt": m.pop("loss") / math.log(2), "lr": lr,
                   "grad_norm": float(gnorm), "elapsed_s": round(time.time() - t0, 3),
                   "cpu_s": round(time.process_time() - c0, 3), **m}
            _log(log_path, rec, v["sinks"])
            if bar is not None:
                bar.set_postfix(loss_bpt=f"{rec['loss_bpt']:.3f}",
                                val=f"{last_val:.3f}" if last_val is not None else "-")
        if bar is not None:
            bar.update(1)
        is_eval = cfg.eval_every and (done % cfg.eval_every == 0 or done == cfg.steps)
        is_save = (cfg.save_every and done % cfg.save_every == 0) or done == end
        if is_eval and (rank == 0 or fsdp):  # a sharded forward needs every rank
            last_val = _validate(model, ema, process, dataset, cfg, device, autocast)
            if rank == 0:
                _log(log_path, {"step": done, "val_nelbo_bpt": last_val,
                                "elapsed_s": round(time.time() - t0, 3)}, v["sinks"])
            v["last_val"] = last_val
        stopping = done < end and v["stop"].requested(world, device)
        if (is_save or stopping) and fsdp:
            dck.save_teacher(v["ck_dir"], model, opt, ema, data_gen, noise_gen, v["config"], done,
                             rank, world, cfg.rng)
        elif is_save or stopping:
            _save(v["ck_dir"], model, opt, ema, data_gen, noise_gen, v["config"], done, rank,
                  world)
        if stopping:
            return done, True
    return end, False


def _validate(model, ema, process, dataset, cfg, device, autocast) -> float:
    """Validation with the weights that are saved for sampling (EMA if kept)."""
    if ema is None:
        return evaluate_nelbo(model, process, dataset, cfg.batch_size, cfg.eval_batches,
                              cfg.eval_seed, device, autocast)
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(ema.state_for(model))
    try:
        return evaluate_nelbo(model, process, dataset, cfg.batch_size, cfg.eval_batches,
                              cfg.eval_seed, device, autocast)
    finally:
        model.load_state_dict(raw)


def _save(ck_dir, model, opt, ema, data_gen, noise_gen, config, step, rank, world):
    rng = {"data": data_gen.get_state(), "noise": noise_gen.get_state()}
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, rng)
    else:
        gathered = [rng]
    if rank == 0:
        raw = model.state_dict()
        tensors = {f"raw.{k}": v for k, v in raw.items()}
        if ema is not None:
            tensors.update({f"ema.{k}": v for k, v in ema.shadow.items()})
        weights = ema.state_for(model) if ema is not None else raw
        ckpt.save_checkpoint(ck_dir, weights, config, step, train_tensors=tensors,
                             train_state={"optimizer": opt.state_dict(), "step": step,
                                          "world_size": world},
                             rng_states={r: {k: v.cpu() for k, v in s.items()}
                                         for r, s in enumerate(gathered)})
    if world > 1:
        dist.barrier()


def _restore(ck_dir, model, opt, data_gen, noise_gen, rank):
    """Load raw weights, optimizer and this rank's RNG states; returns (step, tensors)."""
    tensors, state = ckpt.load_train_state(ck_dir)
    if state is None:
        raise ValueError(f"resume: {ck_dir} holds no train_state.pt (an inference-only "
                         "checkpoint); start a new run directory or pass resume=False")
    model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("raw.")})
    opt.load_state_dict(state["optimizer"])
    rng = ckpt.load_rng(ck_dir, rank)
    if rng is None:
        raise ValueError(f"resume: {ck_dir} has no RNG state for rank {rank} (saved with "
                         f"world size {state.get('world_size')}); resume with the same world size")
    data_gen.set_state(rng["data"])
    noise_gen.set_state(rng["noise"].to(noise_gen.get_state().device))
    return int(state["step"]), tensors
