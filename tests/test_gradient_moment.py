"""Gradient moment: unbiasedness against closed forms, the zero case, and that
the reference model's .grad buffers and requires_grad flags are left alone.

Statistical checks use fixed seeds and a 4-standard-error band: for a
normally distributed mean the false-alarm rate is about 6e-5 per check."""

import math

import pytest
import torch
import torch.nn.functional as F

from dmmd_ext.evaluation.gradient_moment import (GradientMomentEstimator, batch_gradient,
                                                 gradient_moment, pair_estimate)


pytestmark = pytest.mark.usefixtures("one_thread")

Z = 4.0


def categorical_setup(k=5):
    theta = torch.nn.Parameter(torch.randn(k, generator=torch.Generator().manual_seed(1)))

    def nll(batch):  # batch: [b] class ids; L = mean NLL of a categorical softmax(theta)
        return F.cross_entropy(theta.expand(batch.shape[0], k), batch)

    return theta, nll


def test_categorical_matches_closed_form():
    # grad L = softmax(theta) - mean one-hot, so GM = ||q_samples - q_data||^2 exactly.
    k = 5
    theta, nll = categorical_setup(k)
    g = torch.Generator().manual_seed(2)
    q_s = torch.tensor([0.4, 0.3, 0.1, 0.1, 0.1])
    q_d = torch.tensor([0.2, 0.2, 0.2, 0.2, 0.2])
    n = 128 * 300
    samples = torch.multinomial(q_s, n, replacement=True, generator=g)
    data = torch.multinomial(q_d, n, replacement=True, generator=g)
    est = gradient_moment(nll, [theta], samples, data, half_batch=64)
    exact = float(((q_s - q_d) ** 2).sum())
    assert est.n == 300
    assert abs(est.mean - exact) < Z * est.stderr
    assert est.stderr < 0.1 * exact  # the check has power: GM is resolved to 10%


def test_gaussian_mean_matches_closed_form_and_plugin_is_biased():
    # L = mean 0.5||x - mu||^2, grad = mu - mean(x): GM = ||m_data - m_samples||^2,
    # while the plug-in ||g(S) - g(D)||^2 adds (tr S_s + tr S_d) / batch.
    d, half = 3, 4
    mu = torch.nn.Parameter(torch.zeros(d))

    def nll(x):
        return 0.5 * ((x - mu) ** 2).sum(-1).mean()

    g = torch.Generator().manual_seed(3)
    m_s, m_d = torch.tensor([0.3, 0.0, -0.2]), torch.tensor([0.0, 0.1, 0.0])
    n = 2 * half * 600
    samples = m_s + 1.5 * torch.randn(n, d, generator=g)
    data = m_d + torch.randn(n, d, generator=g)
    est = gradient_moment(nll, [mu], samples, data, half_batch=half)
    exact = float(((m_s - m_d) ** 2).sum())
    assert abs(est.mean - exact) < Z * est.stderr

    plug = [float(sum(((a - b) ** 2).sum() for a, b in zip(batch_gradient(nll, s, [mu]),
                                                          batch_gradient(nll, dd, [mu]))))
            for s, dd in zip(samples.split(half), data.split(half))]
    plug_mean = sum(plug) / len(plug)
    plug_exact = exact + d * (1.5 ** 2 + 1.0) / half
    assert abs(plug_mean - plug_exact) < 0.1 * plug_exact
    assert plug_mean > exact + 10 * est.stderr


def test_identical_distributions_give_zero_and_single_estimates_can_be_negative():
    theta, nll = categorical_setup(5)
    g = torch.Generator().manual_seed(4)
    q = torch.tensor([0.4, 0.3, 0.1, 0.1, 0.1])
    samples = torch.multinomial(q, 16 * 200, replacement=True, generator=g)
    data = torch.multinomial(q, 16 * 200, replacement=True, generator=g)
    est_obj = GradientMomentEstimator(nll, [theta])
    values = [est_obj.update(s, d) for s, d in zip(samples.split(16), data.split(16))]
    est = est_obj.result()
    assert abs(est.mean) < Z * est.stderr
    assert min(values) < 0 < max(values)  # not clamped: clamping would bias the mean upward


def test_grad_buffers_and_flags_untouched_and_works_under_no_grad():
    model = torch.nn.Linear(4, 3)
    frozen = torch.nn.Linear(3, 3)
    frozen.requires_grad_(False)
    unused = torch.nn.Parameter(torch.ones(2))
    marker = torch.full_like(model.weight, 7.0)
    model.weight.grad = marker.clone()
    params = list(model.parameters()) + list(frozen.parameters()) + [unused]

    def nll(x):
        return F.cross_entropy(frozen(torch.tanh(model(x))), torch.zeros(x.shape[0], dtype=torch.long))

    g = torch.Generator().manual_seed(5)
    x = torch.randn(8, 4, generator=g)
    y = torch.randn(8, 4, generator=g) + 1.0
    with torch.no_grad():
        value = pair_estimate(nll, params, x[:4], y[:4], x[4:], y[4:])
    assert math.isfinite(value) and value != 0.0
    assert torch.equal(model.weight.grad, marker)
    assert model.bias.grad is None and unused.grad is None
    assert all(p.grad is None for p in frozen.parameters())
    assert not any(p.requires_grad for p in frozen.parameters())
    assert model.weight.requires_grad
    grads = batch_gradient(nll, x, params)
    assert torch.equal(grads[-1], torch.zeros(2))  # unused parameter: zero gradient
    assert grads[2].abs().sum() > 0  # frozen parameters are differentiated


def test_estimate_is_exact_dot_product_of_gradient_differences():
    theta, nll = categorical_setup(4)
    s1, d1, s2, d2 = (torch.tensor(v) for v in ([0, 0, 1], [2, 3, 3], [0, 1, 1], [3, 2, 2]))
    onehot_mean = lambda b: F.one_hot(b, 4).double().mean(0)  # noqa: E731
    expected = float(((onehot_mean(d1) - onehot_mean(s1)) * (onehot_mean(d2) - onehot_mean(s2))).sum())
    assert pair_estimate(nll, [theta], s1, d1, s2, d2) == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_errors_name_the_argument():
    theta, nll = categorical_setup(3)
    x = torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match="scalar"):
        batch_gradient(lambda b: theta.expand(2, 3).sum(1), x, [theta])
    with pytest.raises(ValueError, match="`samples`.*even"):
        GradientMomentEstimator(nll, [theta]).update(x[:3], x[:4])
    with pytest.raises(ValueError, match="n_pairs"):
        gradient_moment(nll, [theta], x, x, half_batch=2, n_pairs=5)
    with pytest.raises(ValueError, match="params"):
        batch_gradient(nll, x, [])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none visible)")
def test_cuda_matches_cpu():
    theta_cpu = torch.nn.Parameter(torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(6)))
    theta_gpu = torch.nn.Parameter(theta_cpu.detach().cuda())

    def nll_for(theta):
        return lambda b: F.cross_entropy(theta.expand(b.shape[0], 6), b.to(theta.device))

    g = torch.Generator().manual_seed(7)
    s = torch.randint(0, 6, (64 * 10,), generator=g)
    d = torch.randint(0, 3, (64 * 10,), generator=g)
    cpu = gradient_moment(nll_for(theta_cpu), [theta_cpu], s, d, half_batch=32)
    gpu = gradient_moment(nll_for(theta_gpu), [theta_gpu], s, d, half_batch=32, device="cuda")
    assert gpu.mean == pytest.approx(cpu.mean, rel=1e-9) and gpu.stderr == pytest.approx(cpu.stderr, rel=1e-6)
