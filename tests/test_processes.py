"""Processes: corruption rates, posterior marginals by simulation, the ELBOs
(continuous time against the exactly enumerated discrete-time ELBO, exactness
for the true posterior, endpoints), samplers, errors."""

import math

import pytest
import torch
from scipy import stats

from dmmd_ext.processes import DenoiserModel, make_process

KINDS = ["masked", "uniform"]
P_FALSE_ALARM = 1e-4  # per chi-square test, fixed seeds


# ----------------------------------------------------------------- exact helpers ----
def _pi(kind, K):
    S = K + 1 if kind == "masked" else K
    pi = torch.zeros(S, dtype=torch.float64)
    if kind == "masked":
        pi[K] = 1
    else:
        pi[:] = 1 / K
    return pi


def _q(a, y, pi):
    """q(z_t = . | x = y) over the S input states."""
    e = torch.zeros_like(pi)
    e[y] = 1
    return a * e + (1 - a) * pi


class ToyDenoiser:
    """x_hat(y | z = i, t) for one position: a softmax of random logits, mixed toward
    one-hot(i) as t -> 0 for clean inputs (a sensible uniform denoiser must become
    certain of a clean token at t -> 0, or the NELBO diverges like log(1/t))."""

    def __init__(self, K, S, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.K = K
        self.W = torch.randn(S, K, generator=g, dtype=torch.float64)
        self.v = torch.randn(K, generator=g, dtype=torch.float64)

    def probs(self, i, t):
        i, t = torch.as_tensor(i), torch.as_tensor(t, dtype=torch.float64)
        soft = torch.softmax(self.W[i] + t[..., None] * self.v, -1)
        onehot = torch.nn.functional.one_hot(i.clamp_max(self.K - 1), self.K).double()
        clean = (i < self.K)[..., None]
        return torch.where(clean, (1 - t[..., None]) * onehot + t[..., None] * soft, soft)


def discrete_nelbo(kind, K, x0, model, n):
    """Exact n-step discrete-time NELBO of one token (linear schedule, a_1 = 0 so the
    prior term is 0): sum_j E_{z_t} KL(q(z_s | z_t, x0) || sum_y x_hat(y) q(z_s | z_t, y))."""
    pi = _pi(kind, K)
    S = len(pi)
    total = 0.0
    for j in range(1, n + 1):
        t, s = j / n, (j - 1) / n
        a_t, a_s = 1 - t, 1 - s
        beta = a_t / a_s
        Q = beta * torch.eye(S, dtype=torch.float64) + (1 - beta) * pi[None, :]  # Q[c, i]
        qt0 = _q(a_t, x0, pi)
        for i in range(S):
            if qt0[i] == 0 or (kind == "masked" and i != K):
                continue  # masked: an unmasked z_t is copied by both, KL = 0

            def post(y):
                return Q[:, i] * _q(a_s, y, pi) / _q(a_t, y, pi)[i]

            xh = model.probs(i, t)
            p = sum(xh[y] * post(y) for y in range(K) if _q(a_t, y, pi)[i] > 0)
            q = post(x0)
            total += float(qt0[i] * (torch.xlogy(q, q) - torch.xlogy(q, p)).sum())
    return total


def continuous_nelbo(proc, x0, model, m):
    """Midpoint quadrature over t of E_{z_t ~ q(.|x0)} proc.loss (exact over z_t)."""
    K = proc.vocab_size
    pi = _pi(proc.kind, K)
    S = len(pi)
    ts = (torch.arange(m, dtype=torch.float64) + 0.5) / m
    T, Z = ts.repeat_interleave(S), torch.arange(S).repeat(m)
    logits = model.probs(Z, T).log().float()[:, None, :]
    a = proc.schedule.alpha(T)
    w = a * (Z == x0).double() + (1 - a) * pi[Z]
    loss = proc.loss(logits, torch.full((len(T), 1), x0), Z[:, None], T.float())
    return float(torch.where(w > 0, w * loss.double(), 0.0).sum() / m)


# ------------------------------------------------------------------------ ELBO ----
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("x0", [0, 2])
def test_continuous_elbo_matches_discrete_time_limit(kind, x0):
    K = 3
    proc = make_process(kind, K, "linear")
    model = ToyDenoiser(K, proc.input_vocab_size)
    cont = continuous_nelbo(proc, x0, model, 4000)
    disc = discrete_nelbo(kind, K, x0, model, 1000)
    assert cont > 0.1
    assert disc == pytest.approx(cont, rel=2e-3), (disc, cont)


class ExactPosterior:
    """x_hat(y | z_t) = p(x = y | z_t) for one position with data distribution p0."""

    def __init__(self, proc, p0):
        self.proc, self.p0 = proc, p0

    def probs(self, i, t):
        i, t = torch.as_tensor(i), torch.as_tensor(t, dtype=torch.float64)
        K, pi = self.proc.vocab_size, _pi(self.proc.kind, self.proc.vocab_size)
        a = self.proc.schedule.alpha(t)[..., None]
        like = a * torch.nn.functional.one_hot(i, len(pi))[..., :K].double() + (1 - a) * pi[i][..., None]
        w = self.p0 * like
        return w / w.sum(-1, keepdim=True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_elbo_is_tight_for_the_exact_posterior(kind, schedule):
    # With x_hat = p(x | z_t) the reverse process is the true one, so NELBO(x0) = -log p0(x0).
    K = 4
    p0 = torch.tensor([0.5, 0.25, 0.15, 0.10], dtype=torch.float64)
    proc = make_process(kind, K, schedule)
    model = ExactPosterior(proc, p0)
    for x0 in range(K):
        got = continuous_nelbo(proc, x0, model, 4000)
        assert got == pytest.approx(-math.log(p0[x0]), rel=5e-3), (x0, got)


@pytest.mark.parametrize("kind", KINDS)
def test_loss_finite_and_limits_at_endpoints(kind):
    K = 3
    proc = make_process(kind, K, "linear")
    model = ToyDenoiser(K, proc.input_vocab_size)

    def expected(t):  # E_{z_t} loss at a fixed t, x0 = 1
        S = proc.input_vocab_size
        Z = torch.arange(S)
        T = torch.full((S,), t, dtype=torch.float64)
        w = (1 - T) * (Z == 1).double() + T * _pi(kind, K)[Z]
        loss = proc.loss(model.probs(Z, T).log().float()[:, None], torch.ones(S, 1, dtype=torch.long),
                         Z[:, None], T.float())
        assert torch.isfinite(loss).all()
        return float(torch.where(w > 0, w * loss.double(), 0.0).sum())

    for t in (0.0, 1.0):
        expected(t)
    if kind == "masked":  # t -> 0: -a'(0) CE(x_hat(MASK, 0), x0), t -> 1: finite weight
        ce = -math.log(float(model.probs(K, 0.0)[1]))
        assert expected(1e-4) == pytest.approx(ce, rel=1e-3)
        assert expected(1 - 1e-4) == pytest.approx(-math.log(float(model.probs(K, 1.0)[1])), rel=1e-3)
    else:  # t -> 1 with a_1 = 0: the integrand vanishes like a_t; t -> 0: integrable
        assert expected(1 - 1e-4) < 1e-2 * expected(0.5)
        assert 1e-5 * expected(1e-5) < 1e-2 * expected(0.5)


def test_uniform_loss_zero_for_perfect_prediction():
    proc = make_process("uniform", 5)
    x0 = torch.randint(0, 5, (4, 7))
    t = torch.rand(4)
    z = proc.corrupt(x0, t)
    logits = torch.nn.functional.one_hot(x0, 5).float() * 60.0
    assert proc.loss(logits, x0, z, t).abs().max() < 1e-3


def test_masked_loss_is_weighted_ce_on_masked_positions():
    proc = make_process("masked", 6, "linear")
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 6, (3, 9), generator=g)
    t = torch.tensor([0.2, 0.5, 0.9])
    z = proc.corrupt(x0, t, generator=g)
    logits = torch.randn(3, 9, 6, generator=g)
    ce = -torch.log_softmax(logits, -1).gather(-1, x0[..., None])[..., 0]
    want = ((z == 6).float() * ce).sum(1) / t
    torch.testing.assert_close(proc.loss(logits, x0, z, t), want)


# --------------------------------------------------------- corruption / posterior ----
@pytest.mark.parametrize("kind", KINDS)
def test_corrupt_marginals(kind):
    K, B, L = 5, 200, 50
    proc = make_process(kind, K, "cosine")
    g = torch.Generator().manual_seed(1)
    x0 = torch.randint(0, K, (B, L), generator=g)
    t = torch.full((B,), 0.6)
    z = proc.corrupt(x0, t, generator=g)
    a = float(proc.alpha(t[:1]))
    kept = (z == x0).double().mean().item()
    want = a + (1 - a) / K if kind == "uniform" else a
    assert kept == pytest.approx(want, abs=4 * math.sqrt(want * (1 - want) / (B * L)))


def _chi2_ok(counts, probs):
    counts = torch.as_tensor(counts, dtype=torch.float64)
    exp = probs * counts.sum()
    keep = exp > 0
    assert counts[~keep].sum() == 0, "draws where the probability is 0"
    if keep.sum() == 1:  # a point mass: nothing left to test
        return True
    return stats.chisquare(counts[keep].numpy(), exp[keep].numpy()).pvalue > P_FALSE_ALARM


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ts", [(0.7, 0.3), (0.5, 0.0), (1.0, 0.6)])
def test_posterior_step_marginal_matches_forward(kind, ts):
    # z_t ~ q(z_t | x0), then a step with x = x0 (a certain model): z_s ~ q(z_s | x0).
    t, s = ts
    K, B, L = 4, 400, 25
    proc = make_process(kind, K, "linear")
    g = torch.Generator().manual_seed(2)
    x0 = torch.full((B, L), 2)
    z_t = proc.corrupt(x0, torch.full((B,), t), generator=g)
    logits = torch.nn.functional.one_hot(x0, K).float() * 1e4
    z_s = proc.step(z_t, logits, t, s, generator=g)
    S = proc.input_vocab_size
    counts = torch.bincount(z_s.reshape(-1), minlength=S)
    assert _chi2_ok(counts, _q(1 - s, 2, _pi(kind, K)))


# -------------------------------------------------------------------- sampling ----
class MarginalModel(torch.nn.Module):
    """Ignores context: x_hat(y | z_t) = p(x = y | z_t) for i.i.d. tokens with law p0."""

    def __init__(self, proc, p0):
        super().__init__()
        self.exact, self.calls = ExactPosterior(proc, p0), 0

    def forward(self, z, t, noise=None):
        self.calls += 1
        return self.exact.probs(z, t[:, None].expand_as(z)).log().float()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_steps", [1, 7])
def test_sampler_draws_the_data_law(kind, n_steps):
    K, B, L = 4, 300, 20
    p0 = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    proc = make_process(kind, K, "linear")
    model = MarginalModel(proc, p0)
    assert isinstance(model, DenoiserModel)
    x = proc.sample(model, n_steps, B, L, generator=torch.Generator().manual_seed(3))
    assert model.calls == n_steps
    assert x.shape == (B, L) and int(x.min()) >= 0 and int(x.max()) < K
    assert _chi2_ok(torch.bincount(x.reshape(-1), minlength=K), p0)


def test_sampler_passes_noise_to_student_models():
    proc = make_process("masked", 3)
    seen = []

    def student(z, t, noise=None):
        seen.append(None if noise is None else tuple(noise.shape))
        return torch.zeros(*z.shape, 3)

    student.d_noise = 5
    proc.sample(student, 3, 2, 4)
    assert seen == [(2, 4, 5)] * 3


def test_sample_time_antithetic_covers_unit_interval():
    proc = make_process("masked", 3)
    t = proc.sample_time(8, generator=torch.Generator().manual_seed(0))
    assert t.min() >= 0 and t.max() < 1
    gaps = torch.sort(t).values.diff()
    torch.testing.assert_close(gaps, torch.full_like(gaps, 1 / 8))


# ---------------------------------------------------------------------- errors ----
def test_bad_inputs_fail_clearly():
    proc = make_process("masked", 4)
    x0 = torch.zeros(2, 3, dtype=torch.long)
    t = torch.rand(2)
    with pytest.raises(ValueError, match=r"logits: expected shape \(2, 3, 4\)"):
        proc.loss(torch.zeros(2, 3, 5), x0, x0, t)
    with pytest.raises(ValueError, match="t: expected shape"):
        proc.loss(torch.zeros(2, 3, 4), x0, x0, torch.rand(3))
    with pytest.raises(ValueError, match="process: expected"):
        make_process("gaussian", 4)
    with pytest.raises(ValueError, match="n_steps"):
        proc.sample(lambda z, t, noise=None: None, 0, 1, 1)


def test_process_roundtrip():
    p = make_process("uniform", 7, "loglinear")
    q = make_process(p.to_dict())
    assert (q.kind, q.vocab_size, q.schedule.name) == ("uniform", 7, "loglinear")
    assert make_process("masked", 7).input_vocab_size == 8
