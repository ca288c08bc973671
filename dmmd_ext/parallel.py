"""Data parallelism for the trainers: DDP or FSDP2 wrapping, gradient
accumulation, world-size-invariant random streams and per-step metering.

FSDP2 (torch.distributed.fsdp.fully_shard) shards each block of a model's block
list, then the root. Every FSDP module here, the root included, reshards after
forward: the trainers run no-grad forwards of the student, the auxiliary and the
teacher, after which no backward would reshard a root that kept its parameters
gathered (and an optimizer built then would hold the gathered tensors).

Meta-device initialization (load_full_state): a model built under
torch.device("meta") is sharded without a broadcast, then every rank allocates
its shards and copies its slices from a full state dict it reads itself (the
memory-mapped safetensors checkpoint), so no rank holds the full model on its
device and rank 0 sends nothing.

Gradient accumulation: the trainers run `grad_accum` micro-batches per optimizer
step, each loss divided by grad_accum, and gradients are synchronized only on the
last micro-batch (DDP: require_backward_grad_sync, what no_sync() sets; FSDP:
set_requires_gradient_sync).

Random streams ('rank' or 'global', TrainConfig/DistillConfig.rng):
'rank' is the trainers' original scheme (one data and one noise generator per
rank, seeded with seed and the rank, state saved for exact resume). 'global'
reseeds both generators before every micro-batch from (seed, global micro-batch
index), index = (step * world + rank) * grad_accum + micro: the micro-batches of
a step are the same at any world size with the same world * grad_accum, so a
2-process run equals a 1-process run with grad_accum 2 (up to reduction order),
and resume needs no generator state (any world size).
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = ["PARALLEL", "RNG_MODES", "check_options", "block_list", "shard", "ddp", "is_fsdp",
           "is_meta", "unsaved_buffers", "load_full_state",
           "grad_sync", "clip_grad_norm", "reseed", "micro_index", "Meter", "peak_memory_mb",
           "init_single_process_group", "add_arguments", "options"]

PARALLEL = ("ddp", "fsdp")
RNG_MODES = ("rank", "global")


def check_options(parallel: str, grad_accum: int, rng: str, fsdp_bf16: bool = False,
                  offload_teacher: bool = False) -> None:
    """Clear errors for the parallelism options (config fields and their flags)."""
    if parallel not in PARALLEL:
        raise ValueError(f"parallel: expected one of {PARALLEL}, got {parallel!r}")
    if int(grad_accum) < 1:
        raise ValueError(f"grad_accum (--grad-accum): expected >= 1, got {grad_accum}")
    if rng not in RNG_MODES:
        raise ValueError(f"rng (--rng): expected one of {RNG_MODES}, got {rng!r}")
    if parallel != "fsdp" and (fsdp_bf16 or offload_teacher):
        which = "fsdp_bf16 (--fsdp-bf16)" if fsdp_bf16 else "offload_teacher (--offload-teacher)"
        raise ValueError(f"{which}: needs parallel='fsdp' (--fsdp), got parallel={parallel!r}")


def init_single_process_group(device: torch.device) -> None:
    """FSDP needs a process group even for one process: a local one of size 1."""
    if dist.is_initialized():
        return
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RuntimeError("parallel: WORLD_SIZE > 1 but no process group; call the trainer's "
                           "_setup_distributed first")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            store=dist.HashStore(), rank=0, world_size=1)


# ------------------------------------------------------------- wrapping ----
_BLOCK_PATHS = ("blocks", "layers", "model.layers", "transformer.h", "gpt_neox.layers")


def block_list(model: nn.Module) -> nn.ModuleList:
    """The model's list of repeated blocks: the reference Transformer's `blocks`,
    or a Hugging Face-style `layers` / `model.layers` / `transformer.h`."""
    for path in _BLOCK_PATHS:
        obj = model
        for name in path.split("."):
            obj = getattr(obj, name, None)
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return obj
    raise ValueError(f"--fsdp: model {type(model).__name__} has no block list to shard "
                     f"(looked for a non-empty nn.ModuleList at {', '.join(_BLOCK_PATHS)}); "
                     "use parallel='ddp' or give the model one of these attributes")


def _broadcast_from_rank0(model: nn.Module) -> None:
    """Rank 0's weights everywhere (what DDP does at construction): fully_shard
    keeps each rank's own slice, so ranks that started apart would mix weights.
    Not for a model on the meta device (no weights yet: load_full_state fills them)."""
    if dist.get_world_size() == 1 or is_meta(model):
        return
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)


def shard(model: nn.Module, device: torch.device, *, frozen: bool = False, bf16: bool = False,
          offload: bool = False) -> nn.Module:
    """fully_shard each block of `model`, then the root (in place; returns model).

    frozen: a network that is never updated (the teacher): requires_grad off, so
    no gradients and no optimizer state. bf16: parameters all-gathered and computed
    in bf16, gradients reduced in fp32. offload: parameters kept on the CPU between
    uses (CPUOffloadPolicy; CUDA only)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import (CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy,
                                        fully_shard)

    if offload and device.type != "cuda":
        raise ValueError(f"offload_teacher (--offload-teacher): CPU offload needs a CUDA device, "
                         f"got device {device}")
    blocks = block_list(model)
    init_single_process_group(device)
    if frozen:
        model.requires_grad_(False)
    _broadcast_from_rank0(model)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    kw = dict(mesh=mesh, reshard_after_forward=True,
              mp_policy=(MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
                         if bf16 else MixedPrecisionPolicy()),
              offload_policy=CPUOffloadPolicy() if offload else OffloadPolicy())
    for blk in blocks:
        fully_shard(blk, **kw)
    fully_shard(model, **kw)
    return model


def is_meta(model: nn.Module) -> bool:
    """Built on the meta device (shapes only, no storage)."""
    return any(t.is_meta for t in list(model.parameters()) + list(model.buffers()))


def unsaved_buffers(model: nn.Module) -> list[str]:
    """Names of the non-persistent buffers (not in state_dict: to_empty would leave
    them uninitialized and load_full_state could not fill them)."""
    return [f"{mod_name}.{b}" if mod_name else b for mod_name, mod in model.named_modules()
            for b in getattr(mod, "_non_persistent_buffers_set", ())]


def load_full_state(model: nn.Module, device: torch.device, full_sd: dict) -> None:
    """A model built on the meta device and sharded (shard): allocate its shards on
    device, then every rank copies its own slice out of full_sd, a full state dict
    it holds itself (e.g. a memory-mapped safetensors file): no broadcast from rank
    0, and no rank ever holds the full model on the device. strict: every key."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    unsaved = unsaved_buffers(model)
    if unsaved:  # would stay garbage after to_empty
        raise ValueError(f"meta-device loading: {type(model).__name__} has buffers that are not "
                         f"in its state dict ({', '.join(unsaved)}); load it on the CPU instead")
    model.to_empty(device=device)
    # set_model_state_dict replaces the dict's values by the local shards: a copy each time
    set_model_state_dict(model, dict(full_sd),
                         options=StateDictOptions(full_state_dict=True, strict=True))


def ddp(model: nn.Module, device: torch.device) -> nn.Module:
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


def is_fsdp(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def grad_sync(modules, enabled: bool):
    """Gradient synchronization of the wrapped `modules` on (the last micro-batch
    of a step) or off (the others: gradients accumulate locally). Must enclose
    the forward as well as the backward (DDP decides in forward)."""
    saved = []
    for m in modules:
        if is_fsdp(m):
            m.set_requires_gradient_sync(enabled)
        elif isinstance(m, nn.parallel.DistributedDataParallel):
            saved.append((m, m.require_backward_grad_sync))
            m.require_backward_grad_sync = enabled
    try:
        yield
    finally:
        for m, old in saved:
            m.require_backward_grad_sync = old
        for m in modules:
            if is_fsdp(m):
                m.set_requires_gradient_sync(True)


def clip_grad_norm(model: nn.Module, max_norm: float) -> float:
    """clip_grad_norm_ (0 disables) -> the global norm before clipping, as a float
    (FSDP gradients are DTensors: the norm is a replicated DTensor)."""
    if max_norm <= 0:
        return 0.0
    norm = nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None],
                                    max_norm)
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


# --------------------------------------------------------- random streams ----
def micro_index(step: int, micro: int, grad_accum: int, rank: int, world: int) -> int:
    """Global index of a micro-batch: its place in the global batch of its step."""
    return (step * world + rank) * grad_accum + micro


def reseed(data_gen: torch.Generator, noise_gen: torch.Generator, seed: int, index: int) -> None:
    """'global' streams: both generators from (seed, global micro-batch index),
    mixed so that neighbouring seeds and indices give unrelated states."""
    mix = (int(seed) * 0x9E3779B97F4A7C15 + int(index) * 0xBF58476D1CE4E5B9) % (1 << 62)
    data_gen.manual_seed(2 * mix)
    noise_gen.manual_seed(2 * mix + 1)


# --------------------------------------------------------------- metering ----
def peak_memory_mb(device: torch.device) -> float:
    """This process's peak memory: CUDA max_memory_allocated, else max RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


class Meter:
    """Per-step numbers that need every rank: the loss averaged over the global
    batch, tokens/s of the whole job and each rank's peak memory. One all_gather
    of a small tensor per call (all ranks must call)."""

    def __init__(self, device: torch.device, world: int, tokens_per_step: int):
        self.device, self.world, self.tokens = device, world, tokens_per_step
        self.t_last, self.steps = time.time(), 0

    def step(self, loss: float, log: bool) -> dict:
        """loss: this rank's mean loss; returns {'loss'} always and, on log steps,
        'tokens_per_s' (since the previous log) and 'peak_mem_mb' [per rank]."""
        self.steps += 1
        row = torch.tensor([float(loss), peak_memory_mb(self.device) if log else 0.0],
                           dtype=torch.float64, device=self.device)
        rows = [row]
        if self.world > 1:
            rows = [torch.empty_like(row) for _ in range(self.world)]
            dist.all_gather(rows, row)
        out = {"loss": sum(float(r[0]) for r in rows) / len(rows)}
        if log:
            now = time.time()
            out["tokens_per_s"] = round(self.steps * self.tokens / max(now - self.t_last, 1e-9), 1)
            out["peak_mem_mb"] = [round(float(r[1]), 1) for r in rows]
            self.t_last, self.steps = now, 0
        return out


# -------------------------------------------------------------------- CLI ----
def add_arguments(p, offload_teacher: bool = False) -> None:
    """The parallelism flags of `dmmd train-teacher` / `dmmd distill`."""
    g = p.add_argument_group("parallelism (under torchrun; docs/usage.md, docs/scaling.md)")
    g.add_argument("--fsdp", action="store_true",
                   help="shard the networks with FSDP2 (per block, then the root) instead of DDP")
    g.add_argument("--grad-accum", type=int, default=1,
                   help="micro-batches of --batch-size per optimizer step")
    g.add_argument("--rng", default="rank", choices=RNG_MODES,
                   help="random streams: per rank, or keyed by the global micro-batch index "
                        "(same run at any world size with the same world x grad-accum)")
    g.add_argument("--fsdp-bf16", action="store_true",
                   help="FSDP mixed precision: bf16 parameters, fp32 gradient reduction")
    if offload_teacher:  # distillation: the frozen teacher
        g.add_argument("--offload-teacher", action="store_true",
                       help="FSDP: keep the frozen teacher's shards on the CPU (CUDA only)")


def options(a) -> dict:
    """Config fields from the flags of add_arguments."""
    out = {"parallel": "fsdp" if a.fsdp else "ddp", "grad_accum": a.grad_accum, "rng": a.rng,
           "fsdp_bf16": a.fsdp_bf16}
    if hasattr(a, "offload_teacher"):
        out["offload_teacher"] = a.offload_teacher
    return out
