"""Sampling with a D-MMD student (or a teacher): k ancestral steps on the grid
t_j = j / k, each with fresh Gaussian noise eps when the model has a noise
input (d_noise > 0): processes.Process.sample, run in chunks so that thousands
of evaluation samples fit in memory.

For masked diffusion, sample_many skips work that cannot change the result
(sparse=True): a step reveals each MASK independently of x with probability
(a_s - a_t) / (1 - a_t), so the reveal coins are drawn first and the model runs
only on the rows where some position is revealed, and x is drawn only there.
The samples have exactly the distribution of Process.sample (not the same
random stream); with many steps (n >> L) most rows reveal nothing at most steps,
so a 256-step teacher at L = 64 costs a fraction of 256 full evaluations. The
number of sampling steps (the NFE a sampler is charged with) is unchanged."""

from __future__ import annotations

import torch

from .. import ops
from ..checkpoint import load_model
from ..processes import check_soft_top_p, sampling_logits

__all__ = ["sample_many", "sample_masked_sparse", "load_student"]


@torch.no_grad()
def sample_many(model, process, n_steps: int, n: int, length: int, batch_size: int = 512,
                seed: int = 0, device=None, sparse: bool = True, progress: bool | str = False,
                **sampling) -> torch.Tensor:
    """n samples (int64 [n, length], on the CPU) from n_steps-step ancestral
    sampling, drawn batch_size at a time from one generator seeded with seed.
    sampling: temperature, top_p, top_k, soft_top_p, delta (Process.sample).
    progress: a tqdm bar over chunks x steps (a string: its label)."""
    if n < 1:
        raise ValueError(f"n: expected >= 1 samples, got {n}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    if device is None:
        device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    chunks = range(0, n, batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(chunks) * n_steps, dynamic_ncols=True, leave=False,
                   desc=progress if isinstance(progress, str) else f"sample n={n_steps}")
    out = []
    try:
        for i in chunks:
            b = min(batch_size, n - i)
            if sparse and process.kind == "masked":
                x = sample_masked_sparse(model, process, n_steps, b, length, generator=g,
                                         device=device, on_step=bar.update if bar else None,
                                         **sampling)
            else:
                x = process.sample(model, n_steps, b, length, generator=g, device=device,
                                   **sampling)
                if bar is not None:
                    bar.update(n_steps)
            out.append(x.cpu())
    finally:
        if bar is not None:
            bar.close()
    return torch.cat(out)


@torch.no_grad()
def sample_masked_sparse(model, process, n_steps: int, batch: int, length: int,
                         generator: torch.Generator | None = None, device="cpu",
                         temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                         on_step=None, soft_top_p: float = 1.0, delta: float = 2.0) -> torch.Tensor:
    """n_steps-step ancestral sampling of a masked-diffusion model that evaluates
    the model only on rows with a reveal (see the module docstring); on_step(1)
    is called after every step when given. soft_top_p/delta: the sharpened draw of
    processes.soft_top_p_logits (1 or 0: off)."""
    if process.kind != "masked":
        raise ValueError(f"process: sample_masked_sparse needs a masked process, got {process.kind}")
    if n_steps < 1:
        raise ValueError(f"n_steps: expected >= 1, got {n_steps}")
    check_soft_top_p(soft_top_p, delta, top_p, top_k)
    z = process.prior(batch, length, device=device)
    d_noise = int(getattr(model, "d_noise", 0) or 0)
    for j in range(n_steps, 0, -1):
        a_t, a_s = (float(process.alpha(torch.tensor(v / n_steps))) for v in (j, j - 1))
        p_reveal = 1.0 if a_s >= 1.0 else (a_s - a_t) / (1.0 - a_t)
        u = torch.rand(batch, length, generator=generator, device=device, dtype=torch.float64)
        reveal = (z == process.mask_id) & (u < p_reveal)
        rows = reveal.any(1).nonzero().squeeze(1)
        if on_step is not None:
            on_step(1)
        if rows.numel() == 0:
            continue
        zr, rr = z[rows], reveal[rows]
        t = torch.full((rows.numel(),), j / n_steps, device=device)
        noise = None
        if d_noise:
            noise = torch.randn(rows.numel(), length, d_noise, generator=generator, device=device)
        logits, temp = sampling_logits(model(zr, t, noise).float(), temperature, top_p, top_k,
                                       soft_top_p, delta)
        x = ops.sample_categorical(logits, temp, top_k, top_p, mask=rr, generator=generator)
        z[rows] = torch.where(rr, x, zr)
    return z


def load_student(path, device="cpu"):
    """(student in eval mode, process, k, config) from a distillation checkpoint
    directory (a run's checkpoint/)."""
    model, process, cfg = load_model(path, device)
    if cfg.get("kind") != "student":
        raise ValueError(f"checkpoint {path}: expected a student (kind 'student'), got "
                         f"{cfg.get('kind')!r}")
    return model, process, int(cfg["k"]), cfg
