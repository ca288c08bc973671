"""A compact transformer for denoisers (bidirectional) and autoregressive
reference models (causal=True), built from the same pre-LN blocks.

forward(z [B, L] int64, t [B] float or None, noise [B, L, d_noise] or None)
-> logits [B, L, vocab_out]. Follows processes.DenoiserModel. forward is
head(hidden(z, t, noise)): hidden() and the nn.Linear `head` are the fused-head
interface (ops.fused_head, the distillation trainer's fused_head option).

- attention: torch.nn.functional.scaled_dot_product_attention (flash/memory-
  efficient kernels on CUDA), rotary or learned positions;
- time conditioning: 'adaln' (DiT-style shift/scale/gate per block, produced by
  a zero-initialized linear layer from a sinusoidal time embedding, so every
  block starts as the identity-plus-residual it would be unconditioned), 'add'
  (time embedding added to the token embeddings) or 'none';
- D-MMD noise input: with d_noise > 0, a per-position Gaussian vector is
  projected by noise_proj (initialized to zero) and added to the token
  embedding. with_noise_input(teacher, d) returns a copy of a teacher with that
  input enabled, so the student starts equal to the teacher.

The constructor signature Transformer(config: TransformerConfig) is stable.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["TransformerConfig", "Transformer", "PRESETS", "with_noise_input"]


@dataclass
class TransformerConfig:
    vocab_in: int  # input ids (K + 1 for masked diffusion: MASK = K)
    vocab_out: int  # output logits (K)
    max_len: int
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    causal: bool = False
    time_cond: str = "adaln"  # 'adaln' | 'add' | 'none'
    pos: str = "rotary"  # 'rotary' | 'learned'
    d_noise: int = 0
    rope_base: float = 10000.0

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model: expected a multiple of n_heads={self.n_heads}, "
                             f"got {self.d_model}")
        if self.time_cond not in ("adaln", "add", "none"):
            raise ValueError(f"time_cond: expected 'adaln', 'add' or 'none', got {self.time_cond!r}")
        if self.pos not in ("rotary", "learned"):
            raise ValueError(f"pos: expected 'rotary' or 'learned', got {self.pos!r}")
        if self.pos == "rotary" and (self.d_model // self.n_heads) % 2:
            raise ValueError("rotary positions need an even head dimension "
                             f"(d_model / n_heads = {self.d_model // self.n_heads})")
        for name in ("vocab_in", "vocab_out", "max_len", "n_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"TransformerConfig: unknown fields {sorted(unknown)}")
        return cls(**d)


# Size presets: width, depth, heads. 'tiny' trains in minutes on 2 CPU cores;
# 'gpt2-small' matches GPT-2 small's body (768 wide, 12 layers, 12 heads).
PRESETS = {
    "tiny": dict(d_model=64, n_layers=2, n_heads=4),
    "small": dict(d_model=128, n_layers=4, n_heads=4),
    "base": dict(d_model=256, n_layers=6, n_heads=8),
    "medium": dict(d_model=512, n_layers=8, n_heads=8),
    "gpt2-small": dict(d_model=768, n_layers=12, n_heads=12),
}


def preset_config(name: str, vocab_in: int, vocab_out: int, max_len: int, **overrides
                  ) -> TransformerConfig:
    if name not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {name!r}")
    return TransformerConfig(vocab_in=vocab_in, vocab_out=vocab_out, max_len=max_len,
                             **{**PRESETS[name], **overrides})


def _rope_tables(length: int, head_dim: int, base: float, device) -> tuple[torch.Tensor, ...]:
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32)
                          / head_dim))
    ang = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv[None]
    return ang.cos(), ang.sin()


def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x [B, H, L, D]; rotate pairs (x1, x2) = (first half, second half)
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.to(x.dtype)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000 so frequencies resolve it)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    emb = torch.cat([args.cos(), args.sin()], dim=-1)
    return F.pad(emb, (0, dim % 2))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.d_model
        self.n_heads, self.causal, self.dropout = cfg.n_heads, cfg.causal, cfg.dropout
        self.norm1 = nn.LayerNorm(d, elementwise_affine=cfg.time_cond != "adaln")
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=cfg.time_cond != "adaln")
        hidden = int(cfg.mlp_ratio * d)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(hidden, d))
        self.drop = nn.Dropout(cfg.dropout)
        self.adaln = None
        if cfg.time_cond == "adaln":
            self.adaln = nn.Linear(d, 6 * d)
            nn.init.zeros_(self.adaln.weight)
            nn.init.zeros_(self.adaln.bias)

    def forward(self, h, cond, rope):
        if self.adaln is not None:
            sh1, sc1, g1, sh2, sc2, g2 = self.adaln(cond)[:, None].chunk(6, dim=-1)
            a_in = self.norm1(h) * (1 + sc1) + sh1
        else:
            a_in = self.norm1(h)
        h = h + (self._attn(a_in, rope) * (1 + g1) if self.adaln is not None
                 else self._attn(a_in, rope))
        m_in = self.norm2(h) * (1 + sc2) + sh2 if self.adaln is not None else self.norm2(h)
        m_out = self.drop(self.mlp(m_in))
        return h + (m_out * (1 + g2) if self.adaln is not None else m_out)

    def _attn(self, x, rope):
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = _apply_rope(q, *rope), _apply_rope(k, *rope)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.drop(self.proj(y.transpose(1, 2).reshape(B, L, D)))


class Transformer(nn.Module):
    """See the module docstring. Attributes: config, d_noise."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = cfg = config
        d = cfg.d_model
        self.tok = nn.Embedding(cfg.vocab_in, d)
        self.pos_emb = nn.Embedding(cfg.max_len, d) if cfg.pos == "learned" else None
        self.time_mlp = None
        if cfg.time_cond != "none":
            self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.noise_proj = None
        if cfg.d_noise > 0:
            self.noise_proj = nn.Linear(cfg.d_noise, d, bias=False)
            nn.init.zeros_(self.noise_proj.weight)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm_f = nn.LayerNorm(d, elementwise_affine=cfg.time_cond != "adaln")
        self.final_adaln = None
        if cfg.time_cond == "adaln":
            self.final_adaln = nn.Linear(d, 2 * d)
            nn.init.zeros_(self.final_adaln.weight)
            nn.init.zeros_(self.final_adaln.bias)
        self.head = nn.Linear(d, cfg.vocab_out)
        self._init_weights()

    @property
    def d_noise(self) -> int:
        return self.config.d_noise

    def _init_weights(self):
        for name, p in self.named_parameters():
            if p.dim() < 2 or "adaln" in name or "noise_proj" in name:
                continue
            nn.init.normal_(p, std=0.02)
        for b in self.blocks:  # GPT-2 style scaled residual projections
            nn.init.normal_(b.proj.weight, std=0.02 / math.sqrt(2 * self.config.n_layers))
            nn.init.normal_(b.mlp[2].weight, std=0.02 / math.sqrt(2 * self.config.n_layers))
        nn.init.zeros_(self.head.bias)

    def forward(self, z: torch.Tensor, t: torch.Tensor | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.hidden(z, t, noise))

    def hidden(self, z: torch.Tensor, t: torch.Tensor | None = None,
               noise: torch.Tensor | None = None) -> torch.Tensor:
        """The states [B, L, d_model] that self.head maps to logits (the fused-head
        losses, ops.fused_head, take these and the head instead of the logits)."""
        cfg = self.config
        B, L = z.shape
        if L > cfg.max_len:
            raise ValueError(f"z: sequence length {L} exceeds max_len={cfg.max_len}")
        h = self.tok(z)
        if self.pos_emb is not None:
            h = h + self.pos_emb.weight[:L]
        cond = None
        if self.time_mlp is not None:
            if t is None:
                raise ValueError("t: this model is time-conditioned; pass t [B]")
            cond = self.time_mlp(timestep_embedding(t.reshape(B), cfg.d_model).to(h.dtype))
            if cfg.time_cond == "add":
                h = h + cond[:, None]
        if noise is not None and self.noise_proj is not None:
            if noise.shape != (B, L, cfg.d_noise):
                raise ValueError(f"noise: expected shape {(B, L, cfg.d_noise)}, "
                                 f"got {tuple(noise.shape)}")
            h = h + self.noise_proj(noise.to(h.dtype))
        rope = None
        if cfg.pos == "rotary":
            rope = _rope_tables(L, cfg.d_model // cfg.n_heads, cfg.rope_base, z.device)
        for blk in self.blocks:
            h = blk(h, cond, rope)
        h = self.norm_f(h)
        if self.final_adaln is not None:
            shift, scale = self.final_adaln(cond)[:, None].chunk(2, dim=-1)
            h = h * (1 + scale) + shift
        return h

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def with_noise_input(model: Transformer, d_noise: int) -> Transformer:
    """A deep copy of model with a d_noise-dimensional per-position Gaussian input
    whose projection starts at zero: the copy computes exactly what model computes
    until the projection is trained (the D-MMD student's starting point)."""
    if d_noise < 1:
        raise ValueError(f"d_noise: expected >= 1, got {d_noise}")
    student = copy.deepcopy(model)
    student.config = dataclasses.replace(model.config, d_noise=d_noise)
    p = next(model.parameters())
    student.noise_proj = nn.Linear(d_noise, model.config.d_model, bias=False).to(p.device, p.dtype)
    nn.init.zeros_(student.noise_proj.weight)
    return student
