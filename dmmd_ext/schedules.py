"""Noise schedules a_t: the probability that a token is still clean at time t.

a_t decreases from a_0 = 1 to a_1 = 0 (or a small eps). A Schedule offers
alpha(t), its derivative dalpha(t), and the two weights the ELBOs need.

Clamping: every method clamps t to [0, 1] first. The ELBO weights divide by
1 - a_t (masked, singular at t = 0) or by a_t (uniform, singular at t = 1 when
a_1 = 0); those methods clamp t further to [t_eps, 1 - t_eps] (t_eps = 1e-5 by
default), which changes the integral by O(t_eps). Processes draw training
times from (0, 1) anyway (see processes.Process.sample_time).
"""

from __future__ import annotations

import math

import torch

__all__ = ["Schedule", "LinearSchedule", "CosineSchedule", "LogLinearSchedule", "get_schedule",
           "SCHEDULES"]


class Schedule:
    """Base class: subclasses define _alpha and _dalpha on t already in [0, 1]."""

    name = "base"

    def __init__(self, t_eps: float = 1e-5):
        if not 0.0 <= t_eps < 0.5:
            raise ValueError(f"t_eps: expected a number in [0, 0.5), got {t_eps}")
        self.t_eps = t_eps

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """a_t, same shape and dtype as t."""
        return self._alpha(t.clamp(0.0, 1.0))

    def one_minus_alpha(self, t: torch.Tensor) -> torch.Tensor:
        """1 - a_t without cancellation near t = 0 (matters for cosine)."""
        return self._one_minus_alpha(t.clamp(0.0, 1.0))

    def _one_minus_alpha(self, t):
        return 1.0 - self._alpha(t)

    def dalpha(self, t: torch.Tensor) -> torch.Tensor:
        """d a_t / dt (<= 0)."""
        return self._dalpha(t.clamp(0.0, 1.0))

    def _safe(self, t: torch.Tensor) -> torch.Tensor:
        return t.clamp(self.t_eps, 1.0 - self.t_eps)

    def masked_weight(self, t: torch.Tensor) -> torch.Tensor:
        """-a'_t / (1 - a_t): the MDLM cross-entropy weight (1/t for linear)."""
        t = self._safe(t)
        return -self._dalpha(t) / self._one_minus_alpha(t)

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        """lambda_t = -a'_t / a_t: the total jump rate of the forward chain."""
        t = self._safe(t)
        return -self._dalpha(t) / self._alpha(t)

    def to_dict(self) -> dict:
        return {"name": self.name, "t_eps": self.t_eps}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(t_eps={self.t_eps})"


class LinearSchedule(Schedule):
    """a_t = 1 - t."""

    name = "linear"

    def _alpha(self, t):
        return 1.0 - t

    def _dalpha(self, t):
        return torch.full_like(t, -1.0)


class CosineSchedule(Schedule):
    """a_t = cos(pi t / 2); a_1 is 0 up to rounding."""

    name = "cosine"

    def _alpha(self, t):
        return torch.cos(0.5 * math.pi * t)

    def _one_minus_alpha(self, t):
        return 2.0 * torch.sin(0.25 * math.pi * t) ** 2

    def _dalpha(self, t):
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)


class LogLinearSchedule(Schedule):
    """MDLM's log-linear schedule: total noise sigma_t = -log(1 - (1 - eps) t),
    so a_t = exp(-sigma_t) = 1 - (1 - eps) t and a_1 = eps (> 0, so the prior
    term of the ELBO is O(eps) and is not included in the losses)."""

    name = "loglinear"

    def __init__(self, t_eps: float = 1e-5, eps: float = 1e-3):
        super().__init__(t_eps)
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"eps: expected a number in [0, 1), got {eps}")
        self.eps = eps

    def _alpha(self, t):
        return 1.0 - (1.0 - self.eps) * t

    def _dalpha(self, t):
        return torch.full_like(t, -(1.0 - self.eps))

    def to_dict(self) -> dict:
        return {**super().to_dict(), "eps": self.eps}


SCHEDULES = {"linear": LinearSchedule, "cosine": CosineSchedule, "loglinear": LogLinearSchedule}


def get_schedule(spec: str | dict | Schedule) -> Schedule:
    """A Schedule from its name ('linear', 'cosine', 'loglinear'), from the dict
    that Schedule.to_dict wrote, or passed through."""
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {sorted(SCHEDULES)}, got {name!r}")
    return SCHEDULES[name](**spec)
