"""Sharded checkpoints of FSDP runs (torch.distributed.checkpoint, DCP).

An FSDP run's checkpoint directory is a usual checkpoint (checkpoint.py) plus
the sharded training state:

    <dir>/model.safetensors, config.json  the weights to sample with, gathered
                                          (full tensors) and written by rank 0:
                                          load_model / load_student / `dmmd sample`
                                          read it on one process as any checkpoint
    <dir>/train_state.pt                  {"sharded": "dcp", "step", "world_size", "rng"}
    <dir>/dcp/                            DCP: every rank writes its own shards of the
                                          raw weights, optimizer states and EMA
    <dir>/rng_rank<r>.pt                  per-rank generator states (rng='rank' only)

DCP reshards on load, so a run resumes at another world size as long as its
random streams do not depend on the rank (rng='global', parallel.py); with
rng='rank' the world size must match. The directory is written to <dir>.tmp
and renamed by rank 0 (all ranks must see one file system).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import (get_model_state_dict,
                                                     get_optimizer_state_dict,
                                                     set_model_state_dict,
                                                     set_optimizer_state_dict)

from . import checkpoint as ckpt

__all__ = ["is_sharded", "full_state", "save_teacher", "restore_teacher", "save_distill",
           "restore_distill", "check_resumable", "check_unsharded"]


def is_sharded(path) -> bool:
    return (Path(path) / "dcp" / ".metadata").is_file()


def full_state(sd: dict, rank: int) -> dict[str, torch.Tensor]:
    """Full CPU tensors of a (sharded) state dict on rank 0, {} elsewhere.
    Collective: every rank gathers one tensor at a time (peak: one full tensor)."""
    out = {}
    for k, v in sd.items():
        full = v.full_tensor() if hasattr(v, "full_tensor") else v
        if rank == 0:
            out[k] = full.detach().to("cpu").contiguous().clone()
    return out


# ------------------------------------------------------------ write / read ----
def _write(path, state: dict, weights: dict, config: dict, step: int, rng_mode: str,
           rng: dict, rank: int, world: int) -> None:
    """All ranks: DCP shards + RNG; rank 0: the export and the atomic rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if rank == 0:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    dist.barrier()
    dcp.save(state, checkpoint_id=str(tmp / "dcp"))
    if rng_mode == "rank":
        torch.save({k: v.cpu() for k, v in rng.items()}, tmp / f"rng_rank{rank}.pt")
    if rank == 0:
        save_file(weights, str(tmp / "model.safetensors"))
        meta = {"format": ckpt.FORMAT, **config, "step": int(step)}
        (tmp / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
        torch.save({"sharded": "dcp", "step": int(step), "world_size": world, "rng": rng_mode},
                   tmp / "train_state.pt")
    dist.barrier()
    if rank == 0:
        ckpt.replace_dir(tmp, path)
    dist.barrier()


def check_resumable(path, rank: int, world: int, rng_mode: str) -> dict:
    """The sharded checkpoint's train_state.pt, after clear errors for what
    cannot resume exactly here."""
    path = Path(path)
    if not is_sharded(path):
        raise ValueError(f"resume: {path} is not a sharded (FSDP) checkpoint; it was written by a "
                         "DDP or single-process run: resume it with parallel='ddp' (no --fsdp), "
                         "or start a new run directory")
    state = torch.load(path / "train_state.pt", weights_only=True)
    if state.get("rng") != rng_mode:
        raise ValueError(f"resume: {path} was trained with rng={state.get('rng')!r}; resume with "
                         f"the same (--rng {state.get('rng')}), got rng={rng_mode!r}")
    if rng_mode == "rank" and state.get("world_size") != world:
        raise ValueError(f"resume: {path} was saved by {state.get('world_size')} ranks with "
                         f"rng='rank' (per-rank random streams); resume at world size "
                         f"{state.get('world_size')} (got {world}), or train with rng='global' "
                         "(--rng global), whose streams do not depend on the world size")
    if rng_mode == "rank" and not (path / f"rng_rank{rank}.pt").is_file():
        raise ValueError(f"resume: {path} has no rng_rank{rank}.pt")
    return state


def _load_rng(path, rank: int, rng_mode: str, data_gen, noise_gen) -> None:
    if rng_mode != "rank":
        return
    rng = torch.load(Path(path) / f"rng_rank{rank}.pt", weights_only=True)
    data_gen.set_state(rng["data"])
    noise_gen.set_state(rng["noise"])


def _has(path, prefix: str) -> bool:
    meta = dcp.FileSystemReader(str(Path(path) / "dcp")).read_metadata()
    return any(k.startswith(prefix) for k in meta.state_dict_metadata)


def _ema_targets(model) -> dict:
    return {k: v.detach().float().clone() for k, v in model.state_dict().items()
            if v.dtype.is_floating_point}


# ---------------------------------------------------------------- teacher ----
def save_teacher(path, model, opt, ema, data_gen, noise_gen, config: dict, step: int,
                 rank: int, world: int, rng_mode: str) -> None:
    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}
    if ema is not None:
        state["ema"] = dict(ema.shadow)
    weights = full_state(ema.state_for(model) if ema is not None else model.state_dict(), rank)
    _write(path, state, weights, config, step, rng_mode,
           {"data": data_gen.get_state(), "noise": noise_gen.get_state()}, rank, world)


def restore_teacher(path, model, opt, data_gen, noise_gen, rank: int, world: int,
                    rng_mode: str) -> tuple[int, dict]:
    """Loads raw weights, optimizer and RNG in place; returns (step, {'ema.<k>': tensor})
    as training._restore does."""
    meta = check_resumable(path, rank, world, rng_mode)
    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}
    if _has(path, "ema."):
        state["ema"] = _ema_targets(model)
    dcp.load(state, checkpoint_id=str(Path(path) / "dcp"))
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, opt, state["optim"])
    _load_rng(path, rank, rng_mode, data_gen, noise_gen)
    return int(meta["step"]), {f"ema.{k}": v for k, v in state.get("ema", {}).items()}


# ------------------------------------------------------------ distillation ----
def _distill_state(st) -> dict:
    state = {"student": get_model_state_dict(st.student), "aux": get_model_state_dict(st.aux),
             "opt_student": get_optimizer_state_dict(st.student, st.opt_g),
             "opt_aux": get_optimizer_state_dict(st.aux, st.opt_a)}
    if st.ema is not None:
        state["ema"] = dict(st.ema.shadow)
    return state


def save_distill(path, st, config: dict, rank: int, world: int, rng_mode: str) -> None:
    """The distillation _State: student, auxiliary, both optimizers, EMA; the export
    is the student's sampling weights (EMA if kept)."""
    weights = full_state(st.sample_weights(), rank)
    _write(path, _distill_state(st), weights, config, st.step, rng_mode,
           {"data": st.data_gen.get_state(), "noise": st.noise_gen.get_state()}, rank, world)


def restore_distill(path, st, rank: int, world: int, rng_mode: str) -> None:
    meta = check_resumable(path, rank, world, rng_mode)
    state = _distill_state(st)
    if st.ema is not None and not _has(path, "ema."):
        raise ValueError(f"resume: {path} holds no student EMA but this run keeps one (ema > 0)")
    dcp.load(state, checkpoint_id=str(Path(path) / "dcp"))
    set_model_state_dict(st.student, state["student"])
    set_model_state_dict(st.aux, state["aux"])
    set_optimizer_state_dict(st.student, st.opt_g, state["opt_student"])
    set_optimizer_state_dict(st.aux, st.opt_a, state["opt_aux"])
    _load_rng(path, rank, rng_mode, st.data_gen, st.noise_gen)
    st.step = int(meta["step"])


def check_unsharded(path) -> None:
    """A DDP / single-process resume cannot read an FSDP run's sharded state."""
    if is_sharded(path):
        raise ValueError(f"resume: {path} is a sharded checkpoint of an FSDP run; resume it with "
                         "parallel='fsdp' (--fsdp, any world size with --rng global), or start "
                         "a new run directory")
