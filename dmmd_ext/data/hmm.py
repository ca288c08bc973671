"""A synthetic hidden-Markov language with exact likelihood.

Stationary HMM: S hidden states, K tokens. Parameters are log-space tensors
(init_logits [S], trans_logits [S, S], emit_logits [S, K]; probabilities are
their softmaxes), so the exact NLL is differentiable with respect to the true
parameters (the gradient-moment evaluation uses that).

- log_prob(x): forward algorithm, batched, float64, with per-position scaling
  (log p(x) = sum of the log normalizers: exact, no underflow);
- sample(n, generator): exact ancestral sampling of states and tokens;
- entropy_rate(): H(X_1..X_L) / L for the configured L in nats/bits. Exact by
  enumerating all K^L sequences when K^L <= 2^20; otherwise a Monte Carlo
  estimate -mean(log p(x)) / L over exact samples, returned with its standard
  error (it is an estimate of the per-token entropy of length-L blocks, which
  is slightly above the asymptotic entropy rate because of the first tokens).

Presets (PRESETS): 'cycle' (default): 8 states walking a cycle (next state with
probability 0.8, stay 0.1, jump anywhere 0.1), each emitting one of its own two
tokens (0.45 each) or any token (0.1), K = 16, L = 64. Neighbouring tokens are
strongly dependent while every single position is almost uniform, so few-step
factorized sampling (independent draws per position) visibly hurts. 'random': a
Dirichlet-drawn HMM from a seed. 'toy': 3 states, 4 tokens, L = 6 (tests).

Knobs (make_hmm / hmm_dataset overrides / the CLI's --hmm-* flags): seed (the
random kind's parameters), n_states, vocab_size, seq_len, and two structure
strengths in [0, 1), applied to either kind after its matrices are built:
- stickiness s: transitions A <- (1 - s) A + s I (each state keeps an extra s of
  self-transition mass: s -> 1 gives long runs of one state);
- peakiness p: emissions B[i] <- (1 - p) B[i] + p onehot(argmax_k B[i, k]) (each
  state leans further on its own favourite token: p -> 1 makes a state's token
  almost certain, so the tokens carry the state sequence's structure).
Both default to 0, which leaves every preset bit-identical (x * 1 + 0 is exact).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .base import TokenDataset

__all__ = ["HMM", "PRESETS", "hmm_dataset", "make_hmm"]

PRESETS = {
    "cycle": dict(kind="cycle", n_states=8, vocab_size=16, seq_len=64),
    "random": dict(kind="random", n_states=6, vocab_size=12, seq_len=32, seed=0),
    "toy": dict(kind="random", n_states=3, vocab_size=4, seq_len=6, seed=0),
}


class HMM:
    """Exact HMM over sequences of length seq_len (see the module docstring)."""

    def __init__(self, init_logits, trans_logits, emit_logits, seq_len: int):
        self.init_logits = torch.as_tensor(init_logits, dtype=torch.float64)
        self.trans_logits = torch.as_tensor(trans_logits, dtype=torch.float64)
        self.emit_logits = torch.as_tensor(emit_logits, dtype=torch.float64)
        S = self.init_logits.shape[0]
        if self.trans_logits.shape != (S, S) or self.emit_logits.dim() != 2 \
                or self.emit_logits.shape[0] != S:
            raise ValueError(f"HMM: expected init [S], trans [S, S], emit [S, K]; got "
                             f"{tuple(self.init_logits.shape)}, {tuple(self.trans_logits.shape)}, "
                             f"{tuple(self.emit_logits.shape)}")
        if seq_len < 1:
            raise ValueError(f"seq_len: expected >= 1, got {seq_len}")
        self.seq_len = int(seq_len)

    @property
    def n_states(self) -> int:
        return self.init_logits.shape[0]

    @property
    def vocab_size(self) -> int:
        return self.emit_logits.shape[1]

    def parameters(self) -> list[torch.Tensor]:
        return [self.init_logits, self.trans_logits, self.emit_logits]

    def requires_grad_(self, flag: bool = True) -> "HMM":
        for p in self.parameters():
            p.requires_grad_(flag)
        return self

    def log_probs(self):
        return (torch.log_softmax(self.init_logits, -1), torch.log_softmax(self.trans_logits, -1),
                torch.log_softmax(self.emit_logits, -1))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) in nats, float64 [B], for tokens x [B, L'] (any L' >= 1).
        Differentiable with respect to the parameters."""
        if x.dim() != 2 or x.shape[1] < 1:
            raise ValueError(f"x: expected [B, L] tokens with L >= 1, got shape {tuple(x.shape)}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.vocab_size):
            raise ValueError(f"x: tokens must lie in [0, {self.vocab_size}), got values in "
                             f"[{int(x.min())}, {int(x.max())}]")
        # Scaled forward recursion in probability space (float64): exact, and one
        # [B, S] x [S, S] product per position instead of a logsumexp over [B, S, S].
        log_pi, log_a, log_b = self.log_probs()
        a, emit = log_a.exp(), log_b.exp().t()[x.long().cpu()]  # emit [B, L, S]
        f = log_pi.exp()[None] * emit[:, 0]
        c = f.sum(-1)
        total = c.log()
        f = f / c[:, None]
        for i in range(1, x.shape[1]):
            f = (f @ a) * emit[:, i]
            c = f.sum(-1)
            total = total + c.log()
            f = f / c[:, None]
        return total

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n exact samples, int64 [n, seq_len]."""
        # Inverse-CDF draws from float64 uniforms: exact up to float64 rounding.
        log_pi, log_a, log_b = self.log_probs()
        cpi, ca, cb = (p.exp().cumsum(-1) for p in (log_pi, log_a, log_b))
        u = torch.rand(n, 2 * self.seq_len, generator=generator, dtype=torch.float64)

        def draw(cdf, col):
            return torch.searchsorted(cdf, u[:, col:col + 1].mul(cdf[:, -1:])).clamp_max(
                cdf.shape[-1] - 1)[:, 0]

        s = draw(cpi.expand(n, -1).contiguous(), 0)
        out = torch.empty(n, self.seq_len, dtype=torch.long)
        for i in range(self.seq_len):
            if i:
                s = draw(ca[s], 2 * i)
            out[:, i] = draw(cb[s], 2 * i + 1)
        return out

    @torch.no_grad()
    def entropy_rate(self, n_samples: int = 20000, seed: int = 1234,
                     max_enumerate: int = 2 ** 20) -> dict:
        """H(X_1..X_L) / L: exact when K^L <= max_enumerate, else Monte Carlo
        (n_samples exact samples). Returns nats, bits, standard error (bits) and method."""
        K, L = self.vocab_size, self.seq_len
        if K ** L <= max_enumerate:
            grids = torch.cartesian_prod(*[torch.arange(K)] * L).reshape(-1, L)
            lp = self.log_prob(grids)
            h = float(-(lp.exp() * lp).sum()) / L
            return {"nats": h, "bits": h / math.log(2), "se_bits": 0.0, "method": "exact",
                    "seq_len": L}
        g = torch.Generator().manual_seed(seed)
        lps = torch.cat([self.log_prob(self.sample(min(4096, n_samples - i), g))
                         for i in range(0, n_samples, 4096)])
        per_tok = -lps / L
        h, se = float(per_tok.mean()), float(per_tok.std() / math.sqrt(n_samples))
        return {"nats": h, "bits": h / math.log(2), "se_bits": se / math.log(2),
                "method": f"monte carlo, {n_samples} samples", "seq_len": L}

    def to_dict(self) -> dict:
        return {"init_logits": self.init_logits.tolist(), "trans_logits": self.trans_logits.tolist(),
                "emit_logits": self.emit_logits.tolist(), "seq_len": self.seq_len}


def _stationary(a: torch.Tensor) -> torch.Tensor:
    p = torch.full((a.shape[0],), 1.0 / a.shape[0], dtype=torch.float64)
    for _ in range(10000):
        p = p @ a
    return p / p.sum()


def _check_knobs(kind, n_states, vocab_size, seq_len, stickiness, peakiness) -> None:
    if kind not in ("cycle", "random"):
        raise ValueError(f"kind: expected 'cycle' or 'random', got {kind!r}")
    for name, v in (("n_states", n_states), ("vocab_size", vocab_size), ("seq_len", seq_len)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {v!r}")
    for name, v in (("stickiness", stickiness), ("peakiness", peakiness)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise ValueError(f"{name}: expected a number in [0, 1), got {v!r}")


def _sharpen(a: torch.Tensor, b: torch.Tensor, stickiness: float, peakiness: float):
    """Mix transitions with the identity and emissions with each state's argmax one-hot."""
    a = (1.0 - stickiness) * a + stickiness * torch.eye(a.shape[0], dtype=a.dtype)
    top = torch.zeros_like(b).scatter_(1, b.argmax(1, keepdim=True), 1.0)
    return a, (1.0 - peakiness) * b + peakiness * top


def make_hmm(kind: str = "cycle", n_states: int = 8, vocab_size: int = 16, seq_len: int = 64,
             seed: int = 0, p_next: float = 0.8, p_stay: float = 0.1,
             p_emit_noise: float = 0.1, stickiness: float = 0.0, peakiness: float = 0.0) -> HMM:
    """Build an HMM: 'cycle' (structured, see the module docstring) or 'random'
    (Dirichlet(0.3) transitions and emissions drawn with the seed), then apply
    stickiness and peakiness (module docstring; 0 = unchanged)."""
    _check_knobs(kind, n_states, vocab_size, seq_len, stickiness, peakiness)
    S, K = n_states, vocab_size
    if kind == "cycle":
        if K % S:
            raise ValueError(f"vocab_size: 'cycle' needs a multiple of n_states={S}, got {K}")
        per = K // S
        a = torch.full((S, S), (1.0 - p_next - p_stay) / S, dtype=torch.float64)
        a += torch.eye(S, dtype=torch.float64) * p_stay
        a[torch.arange(S), (torch.arange(S) + 1) % S] += p_next
        b = torch.full((S, K), p_emit_noise / K, dtype=torch.float64)
        for s in range(S):
            b[s, s * per:(s + 1) * per] += (1.0 - p_emit_noise) / per
    else:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
        rng = np.random.default_rng(seed)
        a = torch.from_numpy(rng.dirichlet(np.full(S, 0.3), size=S)) + 1e-3
        b = torch.from_numpy(rng.dirichlet(np.full(K, 0.3), size=S)) + 1e-3
        a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    a, b = _sharpen(a, b, stickiness, peakiness)
    return HMM(_stationary(a).log(), a.log(), b.log(), seq_len)


def hmm_dataset(preset: str = "cycle", n_train: int = 50000, n_val: int = 2000, seed: int = 0,
                entropy_samples: int = 20000, hmm_seed: int | None = None,
                **overrides) -> TokenDataset:
    """A TokenDataset of exact HMM samples (fixed by seed); .hmm holds the true model
    and .info['entropy_rate_bits'] its per-token entropy for the configured length.

    seed draws the samples; hmm_seed (the random kind's parameter seed, default the
    preset's) and overrides (any make_hmm argument: n_states, vocab_size, seq_len,
    stickiness, peakiness, ...) change the language. info['hmm'] holds the full
    make_hmm arguments (make_hmm(**info['hmm']) rebuilds the HMM) and info['spec']
    this call's arguments (registry.rebuild_dataset rebuilds the dataset)."""
    if preset not in PRESETS:
        raise ValueError(f"hmm preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    if hmm_seed is not None:
        if PRESETS[preset]["kind"] != "random":
            raise ValueError(f"hmm_seed: preset {preset!r} is not random (its HMM has no seed)")
        overrides["seed"] = hmm_seed
    cfg = {**PRESETS[preset], **overrides}
    hmm = make_hmm(**cfg)
    g = torch.Generator().manual_seed(seed)
    train, val = hmm.sample(n_train, g), hmm.sample(n_val, g)
    ent = hmm.entropy_rate(n_samples=entropy_samples)
    spec = {"name": "hmm", "preset": preset, "n_train": n_train, "n_val": n_val, "seed": seed,
            "entropy_samples": entropy_samples, **{k: v for k, v in overrides.items()
                                                   if k != "seed"}}
    if "seed" in overrides:
        spec["hmm_seed"] = overrides["seed"]
    ds = TokenDataset(f"hmm-{preset}", train, val, hmm.vocab_size,
                      info={"hmm": cfg, "entropy_rate_bits": ent["bits"],
                            "entropy_rate_se_bits": ent["se_bits"],
                            "entropy_method": ent["method"], "spec": spec})
    ds.hmm = hmm
    return ds
