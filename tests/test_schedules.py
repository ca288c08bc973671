"""Schedules: endpoints, monotonicity, derivative against finite differences, weights."""

import math

import pytest
import torch

from dmmd_ext.schedules import SCHEDULES, get_schedule

NAMES = sorted(SCHEDULES)


@pytest.mark.parametrize("name", NAMES)
def test_endpoints_and_monotone(name):
    s = get_schedule(name)
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    a = s.alpha(t)
    assert a[0].item() == pytest.approx(1.0)
    assert a[-1].item() == pytest.approx(getattr(s, "eps", 0.0), abs=1e-12)
    assert torch.all(a[1:] <= a[:-1])


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_finite_difference(name):
    s = get_schedule(name)
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    h = 1e-6
    fd = (s.alpha(t + h) - s.alpha(t - h)) / (2 * h)
    torch.testing.assert_close(s.dalpha(t), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_weights_finite_at_endpoints(name):
    s = get_schedule(name)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    for w in (s.masked_weight(t), s.rate(t)):
        assert torch.isfinite(w).all() and (w >= 0).all()


def test_linear_weights_closed_form():
    s = get_schedule("linear")
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    torch.testing.assert_close(s.masked_weight(t), 1 / t)
    torch.testing.assert_close(s.rate(t), 1 / (1 - t))


def test_clamps_t_outside_unit_interval():
    s = get_schedule("cosine")
    assert s.alpha(torch.tensor([-0.5])).item() == pytest.approx(1.0)
    assert s.alpha(torch.tensor([1.5])).item() == pytest.approx(math.cos(math.pi / 2), abs=1e-7)


def test_roundtrip_and_errors():
    s = get_schedule({"name": "loglinear", "eps": 0.01})
    assert get_schedule(s.to_dict()).eps == 0.01
    with pytest.raises(ValueError, match="schedule: expected one of"):
        get_schedule("quadratic")
    with pytest.raises(ValueError, match="t_eps"):
        get_schedule({"name": "linear", "t_eps": 0.7})
