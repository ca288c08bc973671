"""Discrete diffusion processes: small objects with a narrow interface.

A process owns the vocabulary size K and the schedule a_t, and offers
sample_time, corrupt (z_t ~ q(z_t | x0)), loss (the continuous-time ELBO),
prior, step (one ancestral step t -> s) and sample (n-step ancestral sampling).
The trainer never needs more than this interface; the model is any callable
following DenoiserModel.

Forward process (method.md section 1): q(z_t | x) = Cat(a_t x + (1 - a_t) pi),
pi = one-hot(MASK) for MaskedProcess (MASK = K, model input vocabulary K + 1),
pi = 1/K for UniformProcess. Models output K logits (never MASK); the logits
are those of x_hat(z_t, t) = p(x | z_t), and a step draws x ~ Cat(x_hat) per
position, then z_s ~ q(z_s | z_t, x) (kernels: ops.corrupt, ops.posterior_step).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from . import ops
from .schedules import Schedule, get_schedule

__all__ = ["DenoiserModel", "Process", "MaskedProcess", "UniformProcess", "make_process",
           "soft_top_p_logits", "sampling_logits", "check_soft_top_p", "uniform_elbo_integrand"]


@runtime_checkable
class DenoiserModel(Protocol):
    """Any callable (an nn.Module or a function) with this signature:

        model(z, t, noise=None) -> logits

    z: int64 [B, L] tokens in [0, input_vocab_size) (the MASK id K included for
    masked processes); t: float [B] diffusion times in [0, 1]; noise: optional
    float [B, L, d_noise] Gaussian input of D-MMD students (teachers ignore it);
    logits: float [B, L, K] over the K data tokens (never MASK).

    A model that takes noise exposes an int attribute d_noise > 0; samplers
    then draw fresh standard normal noise at every step.
    """

    def __call__(self, z: torch.Tensor, t: torch.Tensor,
                 noise: torch.Tensor | None = None) -> torch.Tensor: ...


class Process:
    """Common part of both processes. Subclasses set kind, mask_id, input_vocab_size
    and define loss and prior."""

    kind = "base"

    def __init__(self, vocab_size: int, schedule: str | dict | Schedule = "linear"):
        if int(vocab_size) < 1:
            raise ValueError(f"vocab_size: expected >= 1, got {vocab_size}")
        self.vocab_size = int(vocab_size)
        self.schedule = get_schedule(schedule)

    # ---- time and corruption -------------------------------------------------------
    def sample_time(self, batch: int, generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu", antithetic: bool = True) -> torch.Tensor:
        """t in [0, 1), float32 [batch]. antithetic=True spreads the batch evenly
        (t_b = (u + b / batch) mod 1, one uniform u): same marginal U(0, 1), lower
        variance of the batch-mean loss (as in MDLM)."""
        if antithetic:
            u = torch.rand((), generator=generator, device=device)
            return torch.remainder(u + torch.arange(batch, device=device) / batch, 1.0)
        return torch.rand(batch, generator=generator, device=device)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return self.schedule.alpha(t.to(torch.float64))

    def corrupt(self, x0: torch.Tensor, t: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """z_t ~ q(z_t | x0) for x0 [B, L] and t [B] (kernel: ops.corrupt)."""
        return ops.corrupt(x0, self.alpha(t), self.kind, self.vocab_size, mask_id=self.mask_id,
                           generator=generator)

    # ---- sampling ----------------------------------------------------------------------
    def step(self, z_t: torch.Tensor, logits: torch.Tensor, t, s, temperature: float = 1.0,
             top_p: float = 1.0, top_k: int = 0,
             generator: torch.Generator | None = None, soft_top_p: float = 1.0,
             delta: float = 2.0) -> torch.Tensor:
        """One ancestral step: x ~ Cat(softmax(logits / temperature)) (top-k/top-p
        truncated, or soft top-p: see soft_top_p_logits), z_s ~ q(z_s | z_t, x).
        t, s: floats or [B] tensors, s < t."""
        a_t = self._rate(t, z_t)
        a_s = self._rate(s, z_t)
        logits, temperature = sampling_logits(logits, temperature, top_p, top_k, soft_top_p, delta)
        z_s, _ = ops.posterior_step(z_t, logits, a_t, a_s, self.kind, self.mask_id,
                                    temperature=temperature, top_k=top_k, top_p=top_p,
                                    generator=generator)
        return z_s

    def _rate(self, t, like: torch.Tensor):
        """a_t as the kernels take it: a Python float for a number t, else float64 [B]."""
        if isinstance(t, (int, float)):
            return float(self.schedule.alpha(torch.tensor(float(t), dtype=torch.float64)))
        return self.schedule.alpha(t.to(device=like.device, dtype=torch.float64))

    @torch.no_grad()
    def sample(self, model: DenoiserModel, n_steps: int, batch: int, length: int,
               temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
               generator: torch.Generator | None = None,
               device: torch.device | str | None = None, soft_top_p: float = 1.0,
               delta: float = 2.0) -> torch.Tensor:
        """n-step ancestral sampling on the grid t_j = j / n_steps, from the prior
        at t = 1 to clean tokens at t = 0; one model evaluation per step. Returns
        int64 [batch, length] tokens in [0, K). soft_top_p/delta: as in step."""
        if n_steps < 1:
            raise ValueError(f"n_steps: expected >= 1, got {n_steps}")
        check_soft_top_p(soft_top_p, delta, top_p, top_k)
        if device is None:
            device = generator.device if generator is not None else _model_device(model)
        z = self.prior(batch, length, generator=generator, device=device)
        d_noise = int(getattr(model, "d_noise", 0) or 0)
        for j in range(n_steps, 0, -1):
            t = torch.full((batch,), j / n_steps, device=device)
            noise = None
            if d_noise:
                noise = torch.randn(batch, length, d_noise, generator=generator, device=device)
            logits = model(z, t, noise)
            z = self.step(z, logits, j / n_steps, (j - 1) / n_steps, temperature=temperature,
                          top_p=top_p, top_k=top_k, generator=generator, soft_top_p=soft_top_p,
                          delta=delta)
        return z

    # ---- serialization -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"kind": self.kind, "vocab_size": self.vocab_size,
                "schedule": self.schedule.to_dict()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, schedule={self.schedule})"

    def _check_loss_args(self, logits, x0, z_t, t):
        B, L = x0.shape
        if logits.shape != (B, L, self.vocab_size):
            raise ValueError(f"logits: expected shape {(B, L, self.vocab_size)} (K = vocab_size, "
                             f"never MASK), got {tuple(logits.shape)}")
        if z_t.shape != x0.shape:
            raise ValueError(f"z_t: expected shape {tuple(x0.shape)}, got {tuple(z_t.shape)}")
        if t.shape != (B,):
            raise ValueError(f"t: expected shape ({B},), got {tuple(t.shape)}")


def check_soft_top_p(soft_top_p: float, delta: float, top_p: float = 1.0, top_k: int = 0) -> bool:
    """Validate the soft top-p options; True when they change the draw."""
    if not (isinstance(soft_top_p, (int, float)) and 0.0 < soft_top_p <= 1.0):
        raise ValueError(f"soft_top_p: expected a number in (0, 1], got {soft_top_p!r}")
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta >= 0.0):
        raise ValueError(f"delta: expected a finite number >= 0 (nats), got {delta!r}")
    active = soft_top_p < 1.0 and delta > 0.0
    if active and (top_p < 1.0 or top_k > 0):
        # A hard cut of the softened distribution has no counterpart in the
        # distillation targets: refuse rather than define a third sampler.
        raise ValueError(f"soft_top_p={soft_top_p} cannot be combined with a hard top_p={top_p} "
                         f"or top_k={top_k}; use one of them")
    return active


def soft_top_p_logits(logits: torch.Tensor, soft_top_p: float, delta: float = 2.0,
                      temperature: float = 1.0) -> torch.Tensor:
    """float32 logits / temperature - delta * (1 - m), m the indicator of the
    soft_top_p nucleus of softmax(logits / temperature): the smallest set of most
    probable classes with mass >= soft_top_p, every class tied with the least
    probable one inside. Sampling softmax of the result draws from the sharpened
    teacher the students are distilled towards (reference.losses.
    sharpened_teacher_log_probs, tau = temperature), here in float32."""
    x = logits.float() / temperature
    sorted_x, _ = x.sort(dim=-1, descending=True, stable=True)
    cum = torch.softmax(sorted_x, dim=-1).cumsum(dim=-1)
    k = (cum < soft_top_p).sum(dim=-1, keepdim=True).clamp(max=x.shape[-1] - 1)
    inside = x >= sorted_x.gather(-1, k)  # ties with the threshold class are inside
    return torch.where(inside, x, x - delta)


def sampling_logits(logits: torch.Tensor, temperature: float, top_p: float, top_k: int,
                    soft_top_p: float, delta: float) -> tuple[torch.Tensor, float]:
    """(logits, temperature) to hand to the kernels: unchanged when soft top-p is
    off (so the draws are bitwise those of plain sampling), else the soft top-p
    logits with the temperature already applied."""
    if not check_soft_top_p(soft_top_p, delta, top_p, top_k):
        return logits, temperature
    return soft_top_p_logits(logits, soft_top_p, delta, temperature), 1.0


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


class MaskedProcess(Process):
    """Absorbing-state (masked) diffusion, MASK = K."""

    kind = "masked"

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    @property
    def input_vocab_size(self) -> int:
        return self.vocab_size + 1

    def prior(self, batch: int, length: int, generator=None, device="cpu") -> torch.Tensor:
        """All-MASK tokens, int64 [batch, length]."""
        return torch.full((batch, length), self.mask_id, dtype=torch.long, device=device)

    def loss(self, logits: torch.Tensor, x0: torch.Tensor, z_t: torch.Tensor,
             t: torch.Tensor) -> torch.Tensor:
        """MDLM continuous-time NELBO estimate per sequence (nats, [B]):

            sum_{l : z_t[l] = MASK}  -a'_t / (1 - a_t) * (-log softmax(logits)[l, x0[l]])

        With t ~ U(0, 1) and z_t ~ q(z_t | x0) its mean is the NELBO, an upper bound on
        -log p(x0). The weight is clamped at t_eps (schedules.py)."""
        self._check_loss_args(logits, x0, z_t, t)
        ce = F.cross_entropy(logits.float().transpose(1, 2), x0.long(), reduction="none")
        ce = torch.where(z_t == self.mask_id, ce, 0.0)  # 0, not 0 * inf, when unmasked
        w = self.schedule.masked_weight(t.to(torch.float64)).float()
        return w * ce.sum(dim=1)


class UniformProcess(Process):
    """Uniform-state diffusion: a corrupted token is uniform over the K tokens."""

    kind = "uniform"
    mask_id = -1

    @property
    def input_vocab_size(self) -> int:
        return self.vocab_size

    def prior(self, batch: int, length: int, generator=None, device="cpu") -> torch.Tensor:
        """Uniform tokens, int64 [batch, length]."""
        return torch.randint(0, self.vocab_size, (batch, length), generator=generator,
                             device=device)

    def loss(self, logits: torch.Tensor, x0: torch.Tensor, z_t: torch.Tensor,
             t: torch.Tensor) -> torch.Tensor:
        """Continuous-time NELBO estimate per sequence (nats, [B]) of uniform-state
        diffusion with the mixture reverse model p(z_s | z_t) = sum_y x_hat(y) q(z_s | z_t, y)
        (the one the sampler runs). See uniform_elbo_integrand for the formula."""
        self._check_loss_args(logits, x0, z_t, t)
        tt = self.schedule._safe(t.to(torch.float64))
        a, abar = self.schedule.alpha(tt), self.schedule.one_minus_alpha(tt)
        lam = self.schedule.rate(tt).float()
        per_pos = uniform_elbo_integrand(logits, x0, z_t, a, abar)
        return lam * per_pos.sum(dim=1)


def uniform_elbo_integrand(logits: torch.Tensor, x0: torch.Tensor, z_t: torch.Tensor,
                           alpha: torch.Tensor, one_minus_alpha: torch.Tensor | None = None
                           ) -> torch.Tensor:
    """Per-position integrand of the uniform-state continuous-time NELBO, without
    the factor lambda_t = -a'_t / a_t (returns [B, L]).

    Derivation (ours; the same path-KL argument as Campbell et al. 2022 / UDLM).
    The forward chain jumps from any token to each other token at rate lambda_t / K.
    Write a = a_t, rho = (1 + (K - 1) a) / (1 - a), i = z_t, p = softmax(logits) =
    x_hat. Given the clean token y, the reverse rate i -> j (j != i) is
    (lambda_t / K) q_t(j | y) / q_t(i | y) = (lambda_t / K) R_y(j) with
    R_y(j) = 1 + [j = y] (rho - 1) + [i = y] (1 / rho - 1). The model's rate is the
    p-mixture of these, R_p(j) = 1 + p_j (rho - 1) + p_i (1 / rho - 1), the data's is
    R_0 = R_{x0}. The KL between the two reverse path measures gives

        NELBO(x0) = int_0^1 lambda_t E_{z_t ~ q(.|x0)} sum_l (1/K) sum_{j != z_t[l]}
                       R_0(j) * phi(R_p(j) / R_0(j) - 1) dt,    phi(d) = d - log(1 + d),

    plus KL(q(z_1 | x0) || uniform) (0 when a_1 = 0) and a t = 0 reconstruction term
    (0 since a_0 = 1). Each summand is >= 0 and vanishes iff p = one-hot(x0). The
    difference R_p - R_0 is formed directly, so the integrand keeps its precision near
    t = 1 where both rates approach 1. Tests: tests/test_processes.py checks it against
    the exactly enumerated discrete-time ELBO with many steps and checks that the exact
    posterior model gives NELBO = -log p(x0)."""
    K = logits.shape[-1]
    p = torch.softmax(logits.float(), dim=-1)
    # Rates are formed in float64 and kept apart where 1 - a_t or 1 - p_i would cancel.
    a = alpha.double().reshape(-1, *([1] * (p.dim() - 1)))
    abar = (1 - a) if one_minus_alpha is None else one_minus_alpha.double().reshape(a.shape)
    rho_m1 = (K * a / abar).float()  # rho - 1
    inv_rho = (abar / (1 + (K - 1) * a)).float()  # 1 / rho
    i = z_t.long().unsqueeze(-1)
    onehot_x = F.one_hot(x0.long(), K).float()
    clean = (z_t == x0).unsqueeze(-1)
    p_i = p.gather(-1, i)
    not_i = (p.sum(-1, keepdim=True) - p_i).clamp_min(0)  # 1 - p_i without cancellation
    r0 = torch.where(clean, inv_rho, 1 + onehot_x * rho_m1)
    rp = not_i + p * rho_m1 + p_i * inv_rho  # R_p = 1 + p_j (rho - 1) + p_i (1/rho - 1)
    diff = (p - onehot_x) * rho_m1 + torch.where(clean, not_i * (1 - inv_rho), -p_i * (1 - inv_rho))
    d = diff / r0
    terms = torch.where(d.abs() < 1e-3, r0 * d * d * (0.5 - d / 3.0 + d * d / 4.0),
                        rp - r0 - r0 * (rp.log() - r0.log()))  # r0 * (d - log(1 + d))
    terms = terms.scatter(-1, i, 0.0)  # j != z_t
    return terms.sum(-1) / K


_PROCESS_KINDS = {"masked": MaskedProcess, "absorbing": MaskedProcess, "uniform": UniformProcess}


def make_process(kind: str | dict, vocab_size: int | None = None,
                 schedule: str | dict | Schedule = "linear") -> Process:
    """make_process('masked', 16, 'linear'), or from the dict Process.to_dict wrote."""
    if isinstance(kind, dict):
        return make_process(kind["kind"], kind["vocab_size"], kind.get("schedule", "linear"))
    if kind not in _PROCESS_KINDS:
        raise ValueError(f"process: expected 'masked' or 'uniform', got {kind!r}")
    if vocab_size is None:
        raise ValueError("vocab_size: required")
    return _PROCESS_KINDS[kind](vocab_size, schedule)
