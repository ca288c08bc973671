"""Checkpoints: one directory per checkpoint, shared by teachers and students.

    <dir>/model.safetensors        weights to sample with (the EMA weights when
                                   training keeps an EMA)
    <dir>/config.json              {"format", "step", "model", "process", ...}: enough
                                   to rebuild the model and process (load_model)
    <dir>/train_state.safetensors  optional: raw weights, EMA weights, ... (tensors)
    <dir>/train_state.pt           optional: optimizer state and other picklable state
                                   (torch.save; loaded with weights_only=True)
    <dir>/rng_rank<r>.pt           optional: per-rank RNG states (ByteTensors)

A checkpoint is written to <dir>.tmp and renamed into place, so an interrupted
save never leaves a half-written <dir>.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

__all__ = ["FORMAT", "save_checkpoint", "read_config", "load_weights", "load_train_state",
           "load_rng", "load_model", "has_checkpoint", "build_model"]

FORMAT = "dmmd-checkpoint-v1"


def _plain(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def save_checkpoint(path: str | os.PathLike, weights: dict[str, torch.Tensor], config: dict,
                    step: int, train_tensors: dict[str, torch.Tensor] | None = None,
                    train_state: dict | None = None,
                    rng_states: dict[int, dict[str, torch.Tensor]] | None = None) -> Path:
    """Write a checkpoint directory atomically; returns its path."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(_plain(weights), str(tmp / "model.safetensors"))
    meta = {"format": FORMAT, **config, "step": int(step)}
    (tmp / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    if train_tensors:
        save_file(_plain(train_tensors), str(tmp / "train_state.safetensors"))
    if train_state is not None:
        torch.save(train_state, tmp / "train_state.pt")
    for rank, states in (rng_states or {}).items():
        torch.save(states, tmp / f"rng_rank{rank}.pt")
    replace_dir(tmp, path)
    return path


def replace_dir(tmp: Path, path: Path) -> None:
    """Move the finished directory tmp to path, keeping the previous one as
    path.old until the rename is done, so an interruption never leaves no
    checkpoint."""
    old = path.with_name(path.name + ".old")
    if path.exists():
        if old.exists():
            shutil.rmtree(old)
        path.rename(old)
    tmp.rename(path)
    if old.exists():
        shutil.rmtree(old)


def has_checkpoint(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / "config.json").is_file() and (p / "model.safetensors").is_file()


def read_config(path: str | os.PathLike) -> dict:
    p = Path(path) / "config.json"
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint: no config.json in {Path(path)} (is it a checkpoint "
                                "directory? a run directory keeps its checkpoint in <run>/checkpoint)")
    cfg = json.loads(p.read_text())
    if cfg.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path}: expected format {FORMAT!r}, got {cfg.get('format')!r}")
    return cfg


def load_weights(path: str | os.PathLike, device="cpu") -> dict[str, torch.Tensor]:
    return load_file(str(Path(path) / "model.safetensors"), device=str(device))


def load_train_state(path: str | os.PathLike, device="cpu"
                     ) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(train tensors, train_state dict); empty/None where the checkpoint has none."""
    p = Path(path)
    tensors = {}
    if (p / "train_state.safetensors").is_file():
        tensors = load_file(str(p / "train_state.safetensors"), device=str(device))
    state = None
    if (p / "train_state.pt").is_file():
        state = torch.load(p / "train_state.pt", map_location=device, weights_only=True)
    return tensors, state


def load_rng(path: str | os.PathLike, rank: int) -> dict[str, torch.Tensor] | None:
    f = Path(path) / f"rng_rank{rank}.pt"
    return torch.load(f, weights_only=True) if f.is_file() else None


def build_model(model_config: dict):
    """The model a config's "model" spec describes (models.registry: the built-in
    transformer, a Hugging Face directory "hf:DIR" or "package.module:factory"),
    with fresh weights."""
    from .models.registry import build_model as _build

    return _build(model_config)


def load_model(path: str | os.PathLike, device="cpu"):
    """(model in eval mode, process, config) from a checkpoint directory."""
    from .processes import make_process

    cfg = read_config(path)
    model = build_model(cfg.get("model") or {})
    model.load_state_dict(load_weights(path))
    model.to(device).eval()
    return model, make_process(cfg["process"]), cfg
