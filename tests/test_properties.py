"""Property-based tests over every op's argument space (hypothesis): for any
arguments, either a clear error that names the argument (ValueError,
TypeError or RuntimeError whose message starts with the argument's name) or
the reference's answer. Hostile values (NaN, +-inf, 0, huge and tiny scales,
ids that do not fit, offsets past the contract) are drawn on purpose, so the
next class of silent wrong answers is found here rather than by users.

CPU kernels always; the CUDA kernels through the `kb` backends (the GPU or the
emulator) on a smaller budget. DMMD_HYPOTHESIS_EXAMPLES scales the budget."""

from __future__ import annotations

import math
import os
import re

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings, strategies as st

from conftest import cuda_backends
from dmmd_ext import ops, reference

N_EX = int(os.environ.get("DMMD_HYPOTHESIS_EXAMPLES", "60"))
SETTINGS = settings(max_examples=N_EX, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))
CUDA_SETTINGS = settings(max_examples=max(8, N_EX // 4), deadline=None, derandomize=True,
                         suppress_health_check=list(HealthCheck))
KB = [b for b in cuda_backends() if isinstance(b, str)]

_INF, _NAN = float("inf"), float("nan")


def _clear_error(e: Exception, names) -> bool:
    return isinstance(e, (ValueError, TypeError, RuntimeError)) and bool(
        re.match(r"(%s)\b" % "|".join(map(re.escape, names)), str(e)))


def _run(fn, names):
    """fn() or None when it raised a clear error; anything else fails."""
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001 - the property is about the error itself
        assert _clear_error(e, names), f"unclear error: {type(e).__name__}: {e}"
        event("clear error")
        return None
    event("answer checked against the reference")
    return out


# ---- strategies

def log_uniform(lo, hi):
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda e: 10.0 ** e)


@st.composite
def mostly(draw, good, hostile):
    """good most of the time (hostile when a 0..5 draw is 5): several hostile
    arguments per call would make nearly every example an error."""
    return draw(hostile) if draw(st.integers(0, 5)) == 5 else draw(good)


hostile_float = st.sampled_from([0.0, -1.0, _NAN, _INF, -_INF, 1.0000001, 1e-45, 3.4e38, 1e300, 1e-301])
temperatures = st.one_of(log_uniform(1e-30, 1e30), log_uniform(1e-30, 1e30), st.just(1.0),
                         st.sampled_from([1e-45, 3.4e38, 1e300]),
                         st.sampled_from([0.0, -1.0, _NAN, _INF, -_INF, 1e-301]))
top_ps = mostly(st.one_of(st.floats(1e-6, 1.0), st.just(1.0)),
                st.sampled_from([0.0, -0.5, _NAN, 1.0000001]))
seeds = mostly(st.integers(-(2**63), 2**64 - 1), st.sampled_from([None, 2**64, -(2**63) - 1, 1.5]))
offsets = mostly(st.integers(0, 2**61 - 1), st.sampled_from([-1, 2**61, 2**70]))


@st.composite
def logit_rows(draw, max_n=5, max_v=33, dtypes=(torch.float32, torch.bfloat16, torch.float16)):
    n = draw(st.integers(1, max_n))
    V = draw(st.integers(1, max_v))
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.one_of(log_uniform(1e-3, 1e30), st.just(0.0)))
    shift = draw(st.sampled_from([0.0, 1e6, -1e6, 1e30, -3e38]))
    g = torch.Generator().manual_seed(seed)
    l = torch.randn(n, V, generator=g, dtype=torch.float64) * scale + shift
    special = draw(st.sampled_from([None, _INF, -_INF, _NAN]))
    if special is not None:
        l[torch.rand(n, V, generator=g) < 0.2] = special
    if dtype != torch.float32:  # keep finite values finite in the narrow dtypes
        lim = torch.finfo(dtype).max
        l = torch.where(l.isfinite(), l.clamp(-lim, lim), l)
    return l.to(dtype)


# ---- sample_categorical

SAMPLE_ARGS = ("logits", "temperature", "top_k", "top_p", "mask", "exclude", "seed", "offset")


def _check_sample(run, l, T, k, p, ex, seed, offset):
    got = _run(lambda: run(l, T, k, p, ex, seed, offset), SAMPLE_ARGS)
    if got is None:
        return
    # accepted: the arguments were in range, and the answer is the reference's
    assert math.isfinite(T) and T >= 1e-300 and 0 < p <= 1 and k >= 0, (T, k, p)
    assert seed is not None and 0 <= offset < 2**61
    want, margin = reference.sample_categorical(l, T, k, p, exclude=ex, seed=seed % 2**64,
                                                offset=offset, return_margin=True)
    clear = margin > 1e-4  # the kernel scores in float32, the reference in float64
    invalid = want < 0
    assert torch.equal(got[invalid], want[invalid])
    assert torch.equal(got[clear & ~invalid], want[clear & ~invalid]), (got, want, margin)


def _sample_cpu(l, T, k, p, ex, seed, offset):
    return ops.sample_categorical(l, T, k, p, exclude=ex, seed=seed, offset=offset)


@SETTINGS
@given(l=logit_rows(), T=temperatures, k=mostly(st.integers(0, 40), st.just(-1)), p=top_ps,
       ex=mostly(st.integers(-1, 3), st.sampled_from([-2, 40])), seed=seeds, offset=offsets)
def test_sample_categorical_property(l, T, k, p, ex, seed, offset):
    if seed is None:  # generator draws: only the error half of the property applies
        _run(lambda: ops.sample_categorical(l, T, k, p, exclude=ex), SAMPLE_ARGS)
        return
    _check_sample(_sample_cpu, l, T, k, p, ex, seed, offset)


@pytest.mark.parametrize("name", KB or [pytest.param("cuda", marks=pytest.mark.skip(
    reason="no CUDA device and no emulated CUDA build"))])
def test_sample_categorical_property_cuda(name):
    from conftest import KernelBackend
    kb = KernelBackend(name)

    @CUDA_SETTINGS
    @given(l=logit_rows(max_n=3, max_v=20), T=temperatures, k=st.integers(0, 22), p=top_ps,
           ex=st.integers(-1, 20), seed=st.integers(0, 2**64 - 1), offset=st.integers(0, 2**61 - 1))
    def prop(l, T, k, p, ex, seed, offset):
        run = lambda *a: kb.call(_sample_cpu, *a)  # noqa: E731
        _check_sample(run, l, T, k, p, ex, seed, offset)

    prop()


# ---- moment losses

LOSS_ARGS = ("student", "teacher", "aux", "target", "weight", "tau", "top_p", "delta")


@st.composite
def loss_case(draw):
    n = draw(st.integers(1, 4))
    V = draw(st.integers(1, 40))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    tau = draw(mostly(st.one_of(log_uniform(1e-30, 1e30), st.just(1.0)),
                      st.sampled_from([0.0, -1.0, _NAN, _INF, 1e-31, 1e31])))
    # teacher logits of order r * tau (so T / tau ~ r is representable), shifted
    r = draw(log_uniform(1e-3, 30.0))
    shift = draw(st.sampled_from([0.0, 1.0, 1e4]))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    tscale = min(r * tau, 1e30) if math.isfinite(tau) and tau > 0 else r
    S = torch.randn(n, V, generator=g, dtype=torch.float64) * draw(log_uniform(1e-2, 30.0))
    A = torch.randn(n, V, generator=g, dtype=torch.float64) * draw(log_uniform(1e-2, 30.0))
    T = torch.randn(n, V, generator=g, dtype=torch.float64) * tscale + shift * tscale
    p = draw(top_ps)
    delta = draw(mostly(st.floats(0.0, 8.0), st.sampled_from([-1.0, _NAN, _INF])))
    ids = torch.randint(0, V, (n,), generator=g)
    return S.to(dtype), T.to(dtype), A.to(dtype), ids, tau, p, delta, r


def _close(got, want, r):
    got, want = got.double(), want.double()
    both_nan = got.isnan() & want.isnan()
    same_inf = got.isinf() & (got == want)
    ok = both_nan | same_inf | ((got - want).abs() <= 1e-3 * (1 + r) + 1e-3 * want.abs())
    return bool(ok.all())


def _check_losses(run_gen, run_aux, case):
    S, T, A, ids, tau, p, delta, r = case
    got = _run(lambda: run_gen(S, T, A, tau, p, delta), LOSS_ARGS)
    if got is not None:
        assert 1e-30 <= tau <= 1e30 and 0 < p <= 1 and math.isfinite(delta) and delta >= 0
        want = reference.generator_loss(S.double(), T.double(), A.double(), tau=tau, top_p=p,
                                        delta=delta)
        assert _close(got, want, r), (got, want)
    got = _run(lambda: run_aux(A, T, ids, tau, p, delta), LOSS_ARGS)
    if got is not None:
        want = reference.auxiliary_loss(A.double(), T.double(), ids, tau=tau, top_p=p,
                                        delta=delta)
        assert _close(got, want, r), (got, want)


def _gen(S, T, A, tau, p, delta):
    return ops.generator_loss(S, T, A, tau=tau, top_p=p, delta=delta)


def _aux(A, T, ids, tau, p, delta):
    return ops.auxiliary_loss(A, T, ids, tau=tau, top_p=p, delta=delta)


@SETTINGS
@given(case=loss_case())
def test_losses_property(case):
    _check_losses(_gen, _aux, case)


@pytest.mark.parametrize("name", KB or [pytest.param("cuda", marks=pytest.mark.skip(
    reason="no CUDA device and no emulated CUDA build"))])
def test_losses_property_cuda(name):
    from conftest import KernelBackend
    kb = KernelBackend(name)

    @CUDA_SETTINGS
    @given(case=loss_case())
    def prop(case):
        _check_losses(lambda *a: kb.call(_gen, *a), lambda *a: kb.call(_aux, *a), case)

    prop()


# ---- corrupt

CORRUPT_ARGS = ("x0", "alpha", "process", "mask_id", "vocab_size", "vocab_size - 1", "keep",
                "seed", "offset")


@SETTINGS
@given(dtype=st.sampled_from([torch.int32, torch.int64]),
       shape=st.sampled_from([(5,), (3, 4), (2, 3, 2)]),
       process=st.sampled_from(["masked", "uniform"]),
       vocab=mostly(st.integers(1, 50), st.sampled_from([0, -3, 2**31, 2**31 + 1, 2**40, 7.0])),
       mask_delta=st.one_of(st.none(), st.integers(-2, 3), st.just(2**31)),
       alpha=mostly(st.floats(0.0, 1.0), st.sampled_from([_NAN, -0.1, 1.5, _INF])),
       seed=st.integers(-(2**63), 2**64 - 1), offset=offsets)
def test_corrupt_property(dtype, shape, process, vocab, mask_delta, alpha, seed, offset):
    vmax = vocab if isinstance(vocab, int) and vocab > 0 else 1
    x0 = (torch.arange(math.prod(shape)) % min(vmax, 50)).reshape(shape).to(dtype)
    mask_id = None
    if mask_delta is not None and isinstance(vocab, int):
        mask_id = vocab + mask_delta
    got = _run(lambda: ops.corrupt(x0, alpha, process, vocab, mask_id=mask_id, seed=seed,
                                   offset=offset), CORRUPT_ARGS)
    if got is None:
        return
    assert isinstance(vocab, int) and vocab >= 1 and 0 <= alpha <= 1 and 0 <= offset < 2**61
    m = vocab if mask_id is None else mask_id
    if dtype == torch.int32:
        assert (m if process == "masked" else vocab - 1) < 2**31
    want = reference.corrupt(x0, alpha, process, vocab, mask_id=mask_id, seed=seed % 2**64,
                             offset=offset)
    assert got.dtype == dtype and torch.equal(got.long(), want.long())


# ---- posterior_step

POST_ARGS = ("z_t", "logits", "alpha_t", "alpha_s", "process", "mask_id", "temperature",
             "top_k", "top_p", "seed", "offset")


@SETTINGS
@given(process=st.sampled_from(["masked", "uniform"]), B=st.integers(1, 3), L=st.integers(1, 5),
       K=st.integers(1, 12), a_t=mostly(st.floats(0, 1), st.sampled_from([_NAN, -0.5])),
       gap=mostly(st.floats(0, 1), st.just(-0.25)), T=temperatures, k=st.integers(-1, 14),
       p=top_ps, seed=st.integers(0, 2**64 - 1), offset=offsets, scale=log_uniform(1e-2, 1e30))
def test_posterior_step_property(process, B, L, K, a_t, gap, T, k, p, seed, offset, scale):
    g = torch.Generator().manual_seed(B * 100 + L * 10 + K)
    logits = torch.randn(B, L, K, generator=g) * scale
    if process == "masked":
        z = torch.randint(0, K + 1, (B, L), generator=g)
    else:
        z = torch.randint(0, K, (B, L), generator=g)
    a_s = min(a_t + gap, 1.0) if not math.isnan(a_t) else a_t
    got = _run(lambda: ops.posterior_step(z, logits, a_t, a_s, process, temperature=T, top_k=k,
                                          top_p=p, seed=seed, offset=offset), POST_ARGS)
    if got is None:
        return
    assert 0 <= a_t <= a_s <= 1 and math.isfinite(T) and T >= 1e-300 and 0 < p <= 1 and k >= 0
    zs, x = got
    rzs, rx = reference.posterior_step(z, logits, a_t, a_s, process, temperature=T, top_k=k,
                                       top_p=p, seed=seed, offset=offset)
    # x may differ from the reference only at near-tied float32 scores; given x
    # the move is exact, so compare where x agrees
    same = x == rx
    assert same.float().mean() >= 0.9, (x, rx)
    assert torch.equal(zs[same], rzs[same])
