"""A D-MMD noise input for any denoiser that has an input embedding layer.

NoiseInput(base, d_noise) wraps a denoiser base(z, t) and adds a learned
projection of a per-position Gaussian vector eps [B, L, d_noise] to the output
of base's input embedding (an nn.Embedding: base.get_input_embeddings() when
base has that method, else the first nn.Embedding among its modules). The
projection starts at zero, so the wrapped model computes exactly what base
computes until it is trained: the student's starting point (method.md,
section 2). The addition is a forward hook registered for the duration of one
call, so nothing about base changes and any architecture works (Hugging Face
models, the user's own modules), as long as base looks its tokens up in that
embedding once per call.

The built-in Transformer has its own noise input (transformer.with_noise_input);
this wrapper is for every other model.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["NoiseInput", "find_input_embedding"]


def find_input_embedding(model: nn.Module) -> tuple[str, nn.Embedding]:
    """(dotted name, module) of model's input token embedding."""
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    for name, mod in model.named_modules():
        if (emb is not None and mod is emb) or (emb is None and isinstance(mod, nn.Embedding)):
            return name, mod
    raise ValueError(f"noise input: {type(model).__name__} has no nn.Embedding (and no "
                     "get_input_embeddings()) to add the noise to; pass d_noise=0 or give the "
                     "model a noise input of its own (an int attribute d_noise > 0)")


class NoiseInput(nn.Module):
    """See the module docstring. Attributes: base, noise_proj, d_noise."""

    def __init__(self, base: nn.Module, d_noise: int):
        super().__init__()
        if int(d_noise) < 1:
            raise ValueError(f"d_noise: expected >= 1, got {d_noise}")
        self.base = base
        self.embedding_name, emb = find_input_embedding(base)
        p = emb.weight
        self.noise_proj = nn.Linear(int(d_noise), emb.embedding_dim, bias=False).to(p.device, p.dtype)
        nn.init.zeros_(self.noise_proj.weight)
        spec = getattr(base, "dmmd_spec", None)
        if isinstance(spec, dict):
            self.dmmd_spec = {**spec, "d_noise": int(d_noise)}

    @property
    def d_noise(self) -> int:
        return self.noise_proj.in_features

    def get_input_embeddings(self) -> nn.Module:
        return self.base.get_submodule(self.embedding_name)

    def forward(self, z: torch.Tensor, t: torch.Tensor | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            return self.base(z, t)
        B, L = z.shape
        if noise.shape != (B, L, self.d_noise):
            raise ValueError(f"noise: expected shape {(B, L, self.d_noise)}, got {tuple(noise.shape)}")
        add = self.noise_proj(noise.to(self.noise_proj.weight.dtype))
        calls = []

        def hook(_mod, _inp, out):
            if out.shape != add.shape:
                raise ValueError(f"noise input: the embedding {self.embedding_name!r} returned "
                                 f"shape {tuple(out.shape)}, the noise projection {tuple(add.shape)}")
            calls.append(1)
            return out + add.to(out.dtype)

        handle = self.get_input_embeddings().register_forward_hook(hook)
        try:
            out = self.base(z, t)
        finally:
            handle.remove()
        if len(calls) != 1:
            raise RuntimeError(f"noise input: the embedding {self.embedding_name!r} was called "
                               f"{len(calls)} times in one forward (expected once)")
        return out
