"""The top-p contract (csrc/include/dmmd/sample.h, detmath.h): integer masses
round(det_exp64(x - xmax) 2^S), target = min(total, ceil(top_p * total)).

The reference's kept set is the kernels' bit for bit, so with the kernel's own
float32 noise (the gumbel_from_bits test hook) the reference reproduces every
draw exactly: no margin filter here, unlike test_sampling.py."""

import functools
import math

import pytest
import torch

import dmmd_ext  # noqa: F401
from dmmd_ext import ops
from dmmd_ext.reference import sampling as RS

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
INF, NAN = float("inf"), float("nan")
pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: no thread contention


@functools.lru_cache(maxsize=8)
def kernel_noise(N, V, seed, offset):
    """[N, V] float32: the kernel's Gumbel noise of each class."""
    bits = RS.gumbel_bits(N, V, seed, offset)
    return torch.ops.dmmd_ext.gumbel_from_bits(bits.reshape(-1)).reshape(N, V)


def exact_draw(l, T=1.0, k=0, p=1.0, exclude=-1, seed=0, offset=0):
    """The kernel's draws from the reference kept set and the kernel's float32
    Gumbel noise: argmax of dadd(x, g) (g alone for +inf), lowest index on ties."""
    V = l.shape[-1]
    l = l.reshape(-1, V).float()
    N = l.shape[0]
    x, valid, keep = RS.kept_classes(l, T, k, p, exclude)
    g = kernel_noise(N, V, seed, offset)
    score = torch.where(x == INF, g, x + g)  # float32 IEEE add, as dadd
    score = torch.where(keep, score, torch.full_like(score, -INF))
    idx = score.argmax(1)  # first maximum
    return torch.where(valid, idx, torch.full_like(idx, -1))


def check(l, T=1.0, k=0, p=1.0, exclude=-1, seed=3, offset=4):
    got = ops.sample_categorical(l, T, k, p, exclude=exclude, seed=seed, offset=offset)
    want = exact_draw(l, T, k, p, exclude, seed, offset)
    assert torch.equal(got.reshape(-1), want), (T, k, p, exclude, (got.reshape(-1) != want).sum())
    return got


def logits(n, V, dtype=torch.float32, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, V, generator=g) * scale).to(dtype)


# ---- det_exp64 (the reference's statement; the kernels' through the draws below) ----

def _ulps(a, b):
    """|a - b| in units in the last place, via the ordered bit patterns (a, b >= 0)."""
    return (a.view(torch.int64) - b.view(torch.int64)).abs()


def test_det_exp64_accuracy_and_special_values():
    grid = torch.linspace(-745.0, 0.0, 400_001, dtype=torch.float64)
    dense = torch.linspace(-1.0, 0.0, 100_001, dtype=torch.float64)  # one binade step
    xs = torch.cat([grid, dense])
    got = RS.det_exp64(xs)
    want = torch.tensor([math.exp(v) for v in xs.tolist()], dtype=torch.float64)
    assert int(_ulps(got, want).max()) <= 1  # 0.82 ulp from the truth, measured (mpmath)
    assert (_ulps(got, want) == 0).double().mean().item() > 0.85
    special = torch.tensor([0.0, -0.0, -INF, NAN, -746.0, -1e300, 710.0, 1e300, INF,
                            -745.13, -708.4, 1.0, 709.7], dtype=torch.float64)
    e = RS.det_exp64(special).tolist()
    assert e[:3] == [1.0, 1.0, 0.0] and math.isnan(e[3])
    assert e[4:6] == [0.0, 0.0] and e[6:9] == [INF] * 3
    assert e[9] == 5e-324  # subnormal: rounded once
    for v, r in zip(special.tolist()[10:], e[10:]):
        assert abs(r - math.exp(v)) <= math.ulp(math.exp(v)), v


def test_det_exp64_never_exceeds_one_and_fixed_point_bounds():
    x = -torch.rand(200_000, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = torch.cat([x * 1e-8, x, x * 50])
    assert bool((RS.det_exp64(x) <= 1.0).all())
    for V in [1, 2, 1023, 1024, 1025, 50257, 1 << 20]:
        S = RS.mass_scale_bits(V)
        assert S == min(52, 62 - V.bit_length()) and V * 2**S < 2**62
        m = RS.topp_masses(torch.tensor([0.0, -0.0, -30.0, -INF]), torch.tensor(0.0), V)
        assert m[0] == 2**S and m[1] == 2**S and m[3] == 0
        assert m[2] == round(math.exp(-30.0) * 2**S)


def test_mass_target_rounds_up_and_stays_within_total():
    total = torch.tensor([4 << 50, 3, 10**18, 1])
    assert RS.mass_target(total, 0.5).tolist() == [2 << 50, 2, 5 * 10**17, 1]
    big = torch.randint(1 << 53, 1 << 62, (10000,), generator=torch.Generator().manual_seed(2))
    for p in [math.nextafter(1.0, 0.0), 0.999999, 1e-300]:
        t = RS.mass_target(big, p)
        assert bool((t <= big).all()) and bool((t >= 1).all())


# ---- CPU kernel == reference, every draw ------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("V", [1, 2, 3, 255, 256, 257, 1000, 50257])
def test_top_p_draws_equal_reference(dtype, V):
    n = 3 if V > 10000 else 48
    l = logits(n, V, dtype, seed=V)
    for p in [0.001, 0.5, 0.9, 0.999999]:
        for k in [0, 40]:
            check(l, 1.0, k, p)
    check(l, 0.7, 5, 0.8, exclude=V // 2 if V > 1 else -1)


def test_permuted_rows_at_an_exact_boundary():
    # One row's values in many orders: the same masses, different noise per class.
    # top_p is chosen so that the target equals a cumulative mass exactly (the
    # boundary class is the last one in) or exceeds it by one unit (one more
    # class joins): a one-unit mass difference anywhere above would show.
    V, n = 24, 600
    base = torch.linspace(0.0, -6.0, V) + 0.013 * torch.arange(V) ** 1.5
    order = base.sort(descending=True)
    m = RS.topp_masses(order.values, order.values[:1], V)
    cum, total = m.cumsum(0).tolist(), int(m.sum())
    gen = torch.Generator().manual_seed(9)
    rows = torch.stack([base[torch.randperm(V, generator=gen)] for _ in range(n)])
    for j in [0, 3, 7]:
        p = cum[j] / total
        while math.ceil(p * float(total)) > cum[j]:
            p = math.nextafter(p, 0.0)
        while math.ceil(math.nextafter(p, 1.0) * float(total)) <= cum[j]:
            p = math.nextafter(p, 1.0)
        assert int(RS.mass_target(torch.tensor([total]), p)) == cum[j]
        p_up = math.nextafter(p, 1.0)
        for q, last in [(p, j), (p_up, j + 1)]:
            got = check(rows, 1.0, 0, q)
            drawn = rows.gather(1, got[:, None]).squeeze(1)
            assert bool((drawn >= order.values[last]).all())
            assert bool((drawn == order.values[last]).any())  # the boundary class is in


@pytest.mark.parametrize("V", [2, 4, 64, 1000])
def test_all_equal_logits_keep_everything(V):
    # target = top_p * total is reached exactly inside the tie: the whole tie is kept.
    # Every class must show up: 2000 rows miss one of 64 even classes with
    # probability 64 (63/64)^2000 < 1e-12 (400 rows missed one about 1 time in 9).
    n = 2000 if V <= 64 else 400
    l = torch.full((n, V), 1.5)
    for p in [0.25, 0.5, 0.9]:
        got = check(l, 1.0, 0, p)
        assert got.unique().numel() == V or V > n
    m = RS.topp_masses(l[:1], l[:1, :1], V)
    assert int(RS.mass_target(m.sum(1), 0.5)) == V // 2 * int(m[0, 0])


def test_tied_thresholds_and_special_rows():
    g = torch.Generator().manual_seed(5)
    ties = torch.randint(-3, 3, (200, 300), generator=g).float()  # long runs of ties
    for p in [0.05, 0.3, 0.5, 0.8]:
        for k in [0, 17]:
            check(ties, 1.0, k, p)
    rows = logits(8, 300, seed=6)
    rows[0] = -INF
    rows[1, 5] = NAN
    rows[2, [3, 77]] = INF
    rows[3, : 150] = -INF
    rows[4] = -0.0
    rows[4, ::3] = 0.0
    rows[5, 10] = NAN  # excluded: the row is valid
    rows[6] = torch.tensor([3e38, -3e38, 0.0] * 100)
    for p in [0.001, 0.5, 0.999999]:
        got = check(rows, 1.0, 0, p, exclude=10)
        assert got[0] == -1 and got[1] == -1 and int(got[2]) in (3, 77) and got[5] >= 0


def test_posterior_step_uses_the_same_nucleus():
    # posterior_step draws x with the row sampler (row = flat position)
    K, n = 50, 64
    l = logits(n, K, seed=12)
    z = torch.full((1, n), K - 1)  # all masked (mask_id = K - 1: never drawn)
    _, x = ops.posterior_step(z, l[None], 0.3, 0.6, "masked", mask_id=K - 1, top_p=0.6, seed=2)
    assert torch.equal(x[0], exact_draw(l, 1.0, 0, 0.6, exclude=K - 1, seed=2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("V", [3, 257, 4099, 50257])
def test_cuda_top_p_bitwise_and_deterministic(kb, dtype, V):
    l = logits(64 if V < 10000 else 8, V, dtype, seed=V)
    for k, p in [(0, 0.001), (0, 0.9), (40, 0.5), (0, 0.999999)]:
        cpu = ops.sample_categorical(l, 1.0, k, p, seed=4, offset=8)
        for b in kb.reruns(2):
            dev = b.call(ops.sample_categorical, l, 1.0, k, p, seed=4, offset=8)
            assert torch.equal(cpu, dev), (b, k, p)
