"""Hostile but accepted inputs: each class either gets the exact answer or a
clear error naming the argument, the rule and the value (issue: ops on hostile
inputs). Every behavioural test runs on CPU and on each CUDA backend (the GPU,
or the emulated CUDA kernels) through the `device` fixture.

Frequencies are checked against the exact softmax with a binomial z bound of
5 standard errors (false alarm rate below 1e-6 per check)."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import devices
from dmmd_ext import ops, reference

DEV = devices()


def _n(device) -> int:
    """Draws per frequency check: 4000 (a 61/39 split is 14 standard errors off
    even split; a correlation of 0.5 is 30); a quarter through the emulator,
    which runs every CUDA thread as a fiber on the CPU."""
    from dmmd_ext.ops import _common
    return 1000 if _common.kernels() is not torch.ops.dmmd_ext else 4000


def _z_ok(hits: int, n: int, p: float, z: float = 5.0) -> bool:
    return abs(hits - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0


def _freq_of_one(tokens: torch.Tensor) -> tuple[int, int]:
    t = tokens.reshape(-1)
    assert bool(((t == 0) | (t == 1)).all()), t.unique()
    return int((t == 1).sum()), t.numel()


# ---- 1. large scaled logits: the draw keeps the noise at every scale

@pytest.mark.simt_edge
@pytest.mark.parametrize("device", DEV, indirect=True)
@pytest.mark.parametrize("scale,temperature", [(1e7, 1.0), (1e30, 1.0), (1.0, 1e-6),
                                               (1.0, 1e-7), (3e38, 1.0), (-3e38, 1e-3)])
def test_tied_top_classes_are_even_at_any_scale(device, scale, temperature):
    # Before: l / T + g in float32 lost the noise once |l / T| ~ 1e6 and ties
    # went to class 0 (61/39 at 1e7; 56/44 at T = 1e-6, 89/11 at T = 1e-7).
    n = _n(device)
    l = torch.tensor([scale, scale], dtype=torch.float32).expand(n, 2).to(device)
    hits, tot = _freq_of_one(ops.sample_categorical(l, temperature, seed=3, offset=0).cpu())
    assert _z_ok(hits, tot, 0.5), (hits, tot)


@pytest.mark.parametrize("device", DEV, indirect=True)
@pytest.mark.parametrize("top,gap,temperature", [(1e7, 1.0, 1.0), (1e8, 8.0, 4.0),
                                                 (0.0, 1e-30, 1e-30), (1e6, 0.0625, 0.125)])
def test_probabilities_exact_at_large_scale(device, top, gap, temperature):
    # classes (top - gap, top): P(class 1) = 1 / (1 + exp(-gap / T)), the gap
    # taken between the float32 values
    n = _n(device)
    row = torch.tensor([top - gap, top], dtype=torch.float32)
    l = row.expand(n, 2).to(device)
    p1 = _sigmoid((float(row[1]) - float(row[0])) / temperature)
    hits, tot = _freq_of_one(ops.sample_categorical(l, temperature, seed=11, offset=2).cpu())
    assert _z_ok(hits, tot, p1), (hits, tot, p1)


@pytest.mark.simt_edge
@pytest.mark.parametrize("device", DEV, indirect=True)
def test_top_p_and_top_k_at_large_scale(device):
    # [1e7, 1e7, 1e7 - 30]: top-p 0.9 keeps the tied pair; top-k 2 too; even split
    n = _n(device)
    l = torch.tensor([1e7 - 32, 1e7, 1e7], dtype=torch.float32).expand(n, 3).to(device)
    for kw in (dict(top_p=0.9), dict(top_k=2)):
        tok = ops.sample_categorical(l, seed=5, offset=1, **kw).cpu()
        assert bool((tok >= 1).all()), kw
        hits = int((tok == 2).sum())
        assert _z_ok(hits, n, 0.5), (kw, hits)


# ---- 2. overflow of l / T: computed right (finite answers stay finite)

@pytest.mark.simt_edge
@pytest.mark.parametrize("device", DEV, indirect=True)
def test_overflowing_scaled_logits_are_computed_right(device):
    n = _n(device)
    cases = [
        # (row, temperature, exact P(class 1))
        ([-3e38, -3e38], 0.5, 0.5),           # l / T = -inf: the row was "invalid"
        ([1.0, 1.0], 1e-38, 0.5),             # l / T = +inf: was "uniform among +inf"
        ([3e38, -3e38], 1e30, 0.0),           # exp(-6e8): no draw of class 1
        ([-3e38, 3e38], 3e38, _sigmoid(2 * float(torch.tensor(3e38)) / 3e38)),  # l - lmax
        # overflows float32: formed in float64
    ]
    for row, T, p1 in cases:
        l = torch.tensor(row, dtype=torch.float32).expand(n, 2).to(device)
        tok = ops.sample_categorical(l, T, seed=1, offset=0).cpu()
        hits, tot = _freq_of_one(tok)
        assert _z_ok(hits, tot, p1), (row, T, hits, p1)


@pytest.mark.simt_edge
@pytest.mark.parametrize("device", DEV, indirect=True)
def test_posterior_step_large_logits(device):
    # the posterior draws x with the same row sampler
    n = _n(device)
    z = torch.full((1, n), 2, dtype=torch.int64)
    lg = torch.tensor([1e9, 1e9], dtype=torch.float32).expand(1, n, 2).contiguous()
    zs, x = ops.posterior_step(z.to(device), lg.to(device), 0.0, 1.0, "masked", seed=4, offset=0)
    hits, tot = _freq_of_one(x.cpu())
    assert _z_ok(hits, tot, 0.5), hits


def test_reference_centres_before_scaling():
    l = torch.tensor([[1e7, 1e7 - 1.0, float("-inf")], [float("inf"), 0.0, float("inf")]])
    cand = torch.ones(2, 3, dtype=torch.bool)
    x = reference.sampling.centred_logits(l, 1.0, cand)
    assert x[0].tolist() == [0.0, -1.0, float("-inf")]
    assert x[1].tolist() == [float("inf"), float("-inf"), float("inf")]


# ---- loss overflow: tau outside the float32-safe range is refused

@pytest.mark.parametrize("tau", [1e-38, 1e-31, 1e31, float("inf"), float("nan"), 0.0, -1.0])
def test_loss_tau_range(tau):
    S = torch.randn(3, 5)
    with pytest.raises(RuntimeError, match=r"tau: expected a value in \[1e-30, 1e30\], got"):
        ops.generator_loss(S, S, S, tau=tau)
    with pytest.raises(RuntimeError, match=r"tau: expected a value in \[1e-30, 1e30\]"):
        ops.auxiliary_loss(S, S, torch.zeros(3, dtype=torch.int64), tau=tau)


@pytest.mark.simt_edge
@pytest.mark.parametrize("device", DEV, indirect=True)
@pytest.mark.parametrize("tau,scale", [(1e-25, 1e-25), (1e-30, 3e-30), (1e25, 1e25), (0.5, 1e30)])
def test_loss_extreme_tau_matches_reference(device, tau, scale):
    # T / tau of order 1 although T and tau are extreme; T / tau was formed in
    # float32 (1 / tau overflowing to inf for tau < 3e-39)
    g = torch.Generator().manual_seed(0)
    S, A = torch.randn(4, 9, generator=g), torch.randn(4, 9, generator=g)
    T = torch.randn(4, 9, generator=g) * scale
    want = reference.generator_loss(S.double(), T.double(), A.double(), tau=tau)
    got = ops.generator_loss(S.to(device), T.to(device), A.to(device), tau=tau).cpu()
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)
    ids = torch.tensor([0, 3, 8, 1])
    want = reference.auxiliary_loss(A.double(), T.double(), ids, tau=tau)
    got = ops.auxiliary_loss(A.to(device), T.to(device), ids.to(device), tau=tau).cpu()
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)


# ---- 8. loss shift invariance with tau != 1

def _shiftable(n, V, seed):
    """Teacher logits on a 1/16 grid in [-8, 8]: shifting them by 1e4 or 2^19
    is exact in float32."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(-128, 129, (n, V), generator=g) / 16.0).float()


@pytest.mark.simt_edge
@pytest.mark.parametrize("device", DEV, indirect=True)
@pytest.mark.parametrize("tau", [0.9, 0.5, 2.0])
@pytest.mark.parametrize("top_p", [1.0, 0.8])
def test_losses_shift_invariant_in_teacher(device, tau, top_p):
    # Before: at tau 0.9 the loss moved by 2.6e-4 at an offset of 1e4 and by
    # 0.19 at 1e6 (T / tau rounded before the maximum was removed).
    n, V = 6, 300
    g = torch.Generator().manual_seed(1)
    S, A = torch.randn(n, V, generator=g), torch.randn(n, V, generator=g)
    T = _shiftable(n, V, 2)
    ids = torch.randint(0, V, (n,), generator=g)
    d = lambda x: x.to(device)
    base_g = ops.generator_loss(d(S), d(T), d(A), tau=tau, top_p=top_p).cpu()
    base_a = ops.auxiliary_loss(d(A), d(T), d(ids), tau=tau, top_p=top_p).cpu()
    want = reference.generator_loss(S.double(), T.double(), A.double(), tau=tau, top_p=top_p)
    torch.testing.assert_close(base_g.double(), want, rtol=1e-4, atol=1e-5)
    for c in (1e4, 2.0**19):
        Tc = T + c
        assert torch.equal(Tc - c, T)  # exact shift
        got_g = ops.generator_loss(d(S), d(Tc), d(A), tau=tau, top_p=top_p).cpu()
        got_a = ops.auxiliary_loss(d(A), d(Tc), d(ids), tau=tau, top_p=top_p).cpu()
        torch.testing.assert_close(got_g, base_g, rtol=1e-5, atol=2e-5)
        torch.testing.assert_close(got_a, base_a, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("device", DEV, indirect=True)
def test_loss_gradients_shift_invariant_in_teacher(device):
    n, V, tau = 4, 257, 0.9
    g = torch.Generator().manual_seed(3)
    S, A = torch.randn(n, V, generator=g), torch.randn(n, V, generator=g)
    T = _shiftable(n, V, 4)

    def grads(Tx):
        s = S.to(device).requires_grad_()
        ops.generator_loss(s, Tx.to(device), A.to(device), tau=tau, top_p=0.9).sum().backward()
        a = A.to(device).requires_grad_()
        ops.auxiliary_loss(a, Tx.to(device), S.to(device), tau=tau, top_p=0.9).sum().backward()
        return s.grad.cpu(), a.grad.cpu()

    g0, g1 = grads(T), grads(T + 2.0**19)
    for x, y in zip(g0, g1):
        torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-6)


# ---- 3. int32 ids that would wrap

# (not simt_edge: the sanitizer run cannot throw C++ exceptions, its preloaded
# libasan finds no real __cxa_throw to forward to)
@pytest.mark.parametrize("device", DEV, indirect=True)
def test_corrupt_int32_rejects_ids_that_wrap(device):
    x0 = torch.zeros(4, 3, dtype=torch.int32).to(device)
    with pytest.raises(RuntimeError, match=r"mask_id: expected a value <= 2\^31 - 1 for int32 x0"):
        ops.corrupt(x0, 0.5, "masked", 10, mask_id=2**31)
    with pytest.raises(RuntimeError, match=r"mask_id: .*got 2147483648"):
        ops.corrupt(x0, 0.5, "masked", 2**31)  # default mask_id = vocab_size
    with pytest.raises(RuntimeError, match=r"vocab_size - 1: expected a value <= 2\^31 - 1"):
        ops.corrupt(x0, 0.5, "uniform", 2**31 + 5)
    # the largest that fit are accepted, and int64 takes any
    z = ops.corrupt(x0, 0.0, "masked", 10, mask_id=2**31 - 1, seed=1).cpu()
    assert bool((z == 2**31 - 1).all())
    z = ops.corrupt(x0.long(), 0.0, "masked", 10, mask_id=2**40, seed=1).cpu()
    assert bool((z == 2**40).all())
    z = ops.corrupt(x0, 0.0, "uniform", 2**31, seed=1).cpu()
    assert z.dtype == torch.int32 and bool((z >= 0).all())


@pytest.mark.parametrize("device", DEV, indirect=True)
def test_posterior_int32_rejects_mask_id_that_wraps(device):
    z = torch.zeros(2, 3, dtype=torch.int32).to(device)
    lg = torch.zeros(2, 3, 4).to(device)
    with pytest.raises(RuntimeError, match=r"mask_id: expected a value <= 2\^31 - 1 for int32 z_t"):
        ops.posterior_step(z, lg, 0.2, 0.5, "masked", mask_id=2**31)


# ---- 4. double backward

@pytest.mark.parametrize("device", DEV, indirect=True)
def test_double_backward_is_a_clear_error(device):
    g = torch.Generator().manual_seed(0)
    S, T, A = (torch.randn(3, 7, generator=g).to(device) for _ in range(3))
    s = S.clone().requires_grad_()
    (gs,) = torch.autograd.grad(ops.generator_loss(s, T, A).sum(), s, create_graph=True)
    with pytest.raises(RuntimeError, match="generator_loss: double backward is not supported"):
        torch.autograd.grad(gs.sum(), s, allow_unused=True)
    a = A.clone().requires_grad_()
    (ga,) = torch.autograd.grad(ops.auxiliary_loss(a, T, S).sum(), a, create_graph=True)
    with pytest.raises(RuntimeError, match="auxiliary_loss: double backward is not supported"):
        (ga ** 2).sum().backward()
    # first-order gradients under create_graph are still the plain ones
    s2 = S.clone().requires_grad_()
    ops.generator_loss(s2, T, A).sum().backward()
    torch.testing.assert_close(gs.detach(), s2.grad)


# ---- 5. messages name the argument, the rule and the value

def test_messages_name_argument_rule_and_value():
    x0 = torch.zeros(2, 3, dtype=torch.int64)
    with pytest.raises(TypeError, match=r"vocab_size: expected an integer, got float 10\.0"):
        ops.corrupt(x0, 0.5, "masked", 10.0)
    with pytest.raises(TypeError, match=r"mask_id: expected an integer"):
        ops.corrupt(x0, 0.5, "masked", 10, mask_id=11.5)
    with pytest.raises(ValueError, match=r"student: expected V = student.shape\[-1\] >= 1"):
        ops.generator_loss(torch.zeros(2, 0), torch.zeros(2, 0), torch.zeros(2, 0))
    with pytest.raises(ValueError, match=r"aux: expected V"):
        ops.auxiliary_loss(torch.zeros(2, 0), torch.zeros(2, 0), torch.zeros(2, dtype=torch.int64))
    l = torch.zeros(2, 3)
    with pytest.raises(RuntimeError, match=r"top_p: expected a value in \(0, 1\].*got 1\.0000001"):
        ops.sample_categorical(l, top_p=1.0000001)
    with pytest.raises(RuntimeError, match=r"top_p: .*got 1\.0000001"):
        ops.generator_loss(l, l, l, top_p=1.0000001)
    with pytest.raises(RuntimeError, match=r"alpha: expected values in \[0, 1\], got NaN"):
        ops.corrupt(x0, float("nan"), "masked", 10)
    with pytest.raises(RuntimeError, match=r"alpha: expected values in \[0, 1\], got min 0\.5, max 1\.5"):
        ops.corrupt(x0, torch.tensor([0.5, 1.5], dtype=torch.float64), "masked", 10)
    with pytest.raises(RuntimeError, match=r"temperature: expected a finite value >= 1e-300 .*got -0\.25"):
        ops.sample_categorical(l, temperature=-0.25)
    with pytest.raises(ValueError, match=r"seed: expected an integer in \[-2\^63, 2\^64\)"):
        ops.sample_categorical(l, seed=2**64)
    with pytest.raises(TypeError, match=r"seed: expected an integer, got float"):
        ops.sample_categorical(l, seed=1.5)
    with pytest.raises(ValueError, match=r"offset: expected an integer in \[0, 2\^61\).*got -1"):
        ops.sample_categorical(l, seed=1, offset=-1)
    with pytest.raises(ValueError, match=r"offset: .*got 2305843009213693952"):
        ops.corrupt(x0, 0.5, "masked", 10, seed=1, offset=2**61)
    with pytest.raises(TypeError, match=r"top_k: expected an integer"):
        ops.sample_categorical(l, top_k=2.5)


@pytest.mark.parametrize("device", DEV, indirect=True)
def test_seeds_above_2_63_are_the_same_64_bit_key(device):
    l = torch.randn(64, 9).to(device)
    a = ops.sample_categorical(l, seed=2**63 + 5, offset=3)
    b = ops.sample_categorical(l, seed=-(2**63) + 5, offset=3)
    assert torch.equal(a, b)
    c = ops.sample_categorical(l, seed=2**64 - 1, offset=3)
    assert torch.equal(c, ops.sample_categorical(l, seed=-1, offset=3))


# ---- 6. the offset contract: consecutive offsets own disjoint streams

def _draws(op: str, seed: int, offset: int, n: int, device):
    """A per-element 0/1 statistic of one call and, for the posterior, the
    'revealed' indicator too (the issue's o vs o + 4 correlation)."""
    if op == "corrupt":
        x0 = torch.zeros(n, dtype=torch.int64).to(device)
        return {"masked": (ops.corrupt(x0, 0.5, "masked", 2, seed=seed, offset=offset) == 2)}
    if op == "corrupt_uniform":
        x0 = torch.zeros(n, dtype=torch.int64).to(device)
        return {"token": ops.corrupt(x0, 0.0, "uniform", 2, seed=seed, offset=offset) == 1}
    if op == "sample_categorical":
        l = torch.zeros(n, 2).to(device)
        return {"token": ops.sample_categorical(l, seed=seed, offset=offset) == 1}
    z = torch.full((1, n), 2, dtype=torch.int64).to(device)
    lg = torch.zeros(1, n, 2).to(device)
    zs, x = ops.posterior_step(z, lg, 0.0, 0.5, "masked", seed=seed, offset=offset)
    return {"revealed": (zs != 2)[0], "token": (x == 1)[0]}


_OPS = ["corrupt", "corrupt_uniform", "sample_categorical", "posterior_step"]


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm() + 1e-30))


@pytest.mark.simt_edge
@pytest.mark.parametrize("device", DEV, indirect=True)
@pytest.mark.parametrize("op", _OPS)
def test_consecutive_offsets_are_independent(device, op):
    # Before: offsets 0..3 gave identical draws, and posterior_step at o reused
    # the numbers of the step at o + 4 (correlation 0.5, revealed vs token).
    n = _n(device)
    bound = 5.0 / math.sqrt(n)
    runs = {o: _draws(op, 7, o, n, device) for o in (0, 1, 2, 3, 4, 5, 8)}
    for o in runs:
        for name, v in runs[o].items():
            assert abs(v.double().mean().item() - 0.5) < bound, (o, name)
    for o1 in runs:
        for o2 in runs:
            if o1 >= o2:
                continue
            for n1, v1 in runs[o1].items():
                for n2, v2 in runs[o2].items():
                    assert abs(_corr(v1, v2)) < bound, (op, o1, n1, o2, n2)
    # and the same (seed, offset) repeats exactly
    again = _draws(op, 7, 5, n, device)
    for name in again:
        assert torch.equal(again[name], runs[5][name])


@pytest.mark.parametrize("device", DEV, indirect=True)
@pytest.mark.parametrize("op", _OPS)
def test_generator_calls_are_independent(device, op):
    # Without a seed every call takes fresh numbers from the generator.
    n = _n(device)
    bound = 5.0 / math.sqrt(n)
    torch.manual_seed(0)
    first = _draws(op, None, 0, n, device)
    second = _draws(op, None, 0, n, device)
    for n1, v1 in first.items():
        for n2, v2 in second.items():
            assert abs(_corr(v1, v2)) < bound, (op, n1, n2)


def test_counter_contract_is_injective():
    # every (offset, sub_stream) of a small grid is its own Philox block
    from dmmd_ext.reference import noise
    seen = {}
    el = torch.tensor([0])
    for off in range(9):
        for sub in range(noise.SUB_STREAMS_PER_CALL):
            ctr = tuple(noise.philox_counter(off, sub, el)[0].tolist())
            assert ctr not in seen, (off, sub, seen.get(ctr))
            seen[ctr] = (off, sub)
            assert torch.equal(torch.ops.dmmd_ext.philox(5, off, sub, el),
                               noise.philox_draw(5, off, sub, el))


# ---- 7. the RNG test hooks have fake kernels

def test_rng_hooks_pass_opcheck():
    el = torch.tensor([0, 1, 5, 1 << 40], dtype=torch.int64)
    torch.library.opcheck(torch.ops.dmmd_ext.philox, (7, 3, 1, el))
    torch.library.opcheck(torch.ops.dmmd_ext.philox_block,
                          (torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=torch.int64), 9))
    bits = torch.tensor([0, 1, -1, 1 << 62], dtype=torch.int64)
    torch.library.opcheck(torch.ops.dmmd_ext.gumbel_from_bits, (bits,))
    torch.library.opcheck(torch.ops.dmmd_ext.exponential_from_bits, (bits,))
