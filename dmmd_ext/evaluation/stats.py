"""Streaming mean and standard error (Welford), shared by the metrics that
average many independent estimates (gradient-moment pairs, per-sample NLLs)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Estimate:
    """A mean over ``n`` independent estimates and its standard error
    (``nan`` when n < 2: one estimate says nothing about its spread)."""

    mean: float
    stderr: float
    n: int

    def as_dict(self) -> dict:
        return {"mean": self.mean, "stderr": self.stderr, "n": self.n}

    def __str__(self) -> str:
        return f"{self.mean:.4g} +- {self.stderr:.2g} (n={self.n})"


class RunningMean:
    """Welford's update: numerically stable in float64 even when the estimates
    are large and nearly equal, and needs no stored history."""

    def __init__(self) -> None:
        self.n = 0
        self._mean = 0.0
        self._m2 = 0.0

    def update(self, value: float) -> None:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"RunningMean.update: expected a finite value, got {value}")
        self.n += 1
        delta = value - self._mean
        self._mean += delta / self.n
        self._m2 += delta * (value - self._mean)

    def extend(self, values) -> None:
        for v in values:
            self.update(v)

    def result(self) -> Estimate:
        if self.n == 0:
            raise ValueError("RunningMean.result: no estimates were added (n = 0)")
        if self.n < 2:
            return Estimate(self._mean, math.nan, self.n)
        var = self._m2 / (self.n - 1)
        return Estimate(self._mean, math.sqrt(var / self.n), self.n)
