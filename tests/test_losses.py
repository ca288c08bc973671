"""Fused logit-moment losses: kernels vs the float64 reference, gradients, the
nucleus, special values, registration (opcheck, fake, compile), errors.

Error bounds (kernel vs float64 reference on the same input values):
- loss, every input dtype (accumulation is float32): |err| <= 2e-5 * (1 + |ref|)
  for logits of scale <= 10 (the float32 rounding of a few hundred terms), scaled
  by the logit magnitude for large logits (test_large_logits);
- gradient: float32 output |err| <= 1e-5 + 1e-4 |ref|; bfloat16 output adds its
  rounding, rtol 2^-8 = 3.9e-3; float16 output rtol 2^-10 = 9.8e-4; atol 1e-6
  (float16 gradients below its subnormal range flush).
- float64 logits run a float64 kernel: rtol 1e-10.
"""

import math

import pytest
import torch

import dmmd_ext  # noqa: F401  (loads the kernels)
from dmmd_ext import ops
from dmmd_ext.ops._common import kernels
from dmmd_ext.reference import losses as R
from conftest import CUDA, devices, requires_cuda



def _raw(name):
    """The raw op, resolved at call time: the emulated kernel inside simt.use()."""
    return lambda *a, **k: getattr(kernels(), name)(*a, **k)


GEN = _raw("moment_generator_loss")
GEN_BWD = _raw("moment_generator_loss_backward")
AUX = _raw("moment_auxiliary_loss")
AUX_BWD = _raw("moment_auxiliary_loss_backward")
GEN_THR, AUX_THR = 6, 6
INF, NAN = float("inf"), float("nan")  # stats columns holding the nucleus threshold

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
GRAD_RTOL = {torch.float32: 1e-4, torch.bfloat16: 2**-8, torch.float16: 2**-10,
             torch.float64: 1e-10}


def logits(n, v, dtype=torch.float32, scale=3.0, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, v, generator=g, dtype=torch.float64) * scale).to(dtype).to(device)


def weights(n, seed=0, zero=(), device="cpu", dtype=torch.float32):
    g = torch.Generator().manual_seed(seed + 1000)
    w = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    w[list(zero)] = 0
    return w.to(dtype).to(device)


def assert_loss_close(got, want, scale=1.0, rtol=2e-5):
    got, want = got.double().cpu(), want.double().cpu()
    assert got.shape == want.shape
    finite = torch.isfinite(want)
    assert torch.equal(torch.isfinite(got), finite), (got, want)
    assert torch.equal(got[~finite], want[~finite]) or torch.isnan(want[~finite]).all()
    err = (got[finite] - want[finite]).abs()
    bound = rtol * (scale + want[finite].abs())
    assert (err <= bound).all(), f"max err {err.max().item():.3e}"


def assert_grad_close(got, want, dtype, ulps=1):
    """got vs want within the dtype's rounding; ulps=2 when both sides are kernel
    outputs (each rounded to bf16/fp16 once, so they may differ by one unit)."""
    got, want = got.double().cpu(), want.double().cpu()
    assert got.shape == want.shape
    rtol = GRAD_RTOL[dtype] * (ulps if dtype in (torch.bfloat16, torch.float16) else 1)
    atol = 1e-12 if dtype == torch.float64 else 1e-6 if dtype != torch.float32 else 1e-5
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol)


def nucleus_margin(teacher, tau, top_p):
    """Distance of top_p from the cumulative masses that decide the nucleus. Float32
    kernels and the float64 reference can only disagree within ~1e-6 of it."""
    p = torch.softmax(teacher.double() / tau, -1).sort(-1, descending=True).values.cumsum(-1)
    return (p - top_p).abs().min().item()


def gen_case(student, teacher, aux, w, tau, top_p, delta, g):
    """Kernel and reference loss and student gradient for one input."""
    s = student.detach().clone().requires_grad_()
    loss = ops.generator_loss(s, teacher, aux, w, tau, top_p, delta)
    loss.backward(g.to(loss.dtype).to(loss.device))
    sr = student.detach().cpu().double().requires_grad_()
    ref = R.generator_loss(sr, teacher.cpu(), aux.cpu(), None if w is None else w.cpu(), tau,
                           top_p, delta)
    ref.backward(g.double())
    return loss, s.grad, ref, sr.grad


def aux_case(aux, teacher, target, w, tau, top_p, delta, g):
    a = aux.detach().clone().requires_grad_()
    loss = ops.auxiliary_loss(a, teacher, target, w, tau, top_p, delta)
    loss.backward(g.to(loss.dtype).to(loss.device))
    ar = aux.detach().cpu().double().requires_grad_()
    ref = R.auxiliary_loss(ar, teacher.cpu(), target.cpu(), None if w is None else w.cpu(), tau,
                           top_p, delta)
    ref.backward(g.double())
    return loss, a.grad, ref, ar.grad


# ---------------------------------------------------------------- forward + backward

@pytest.mark.parametrize("device", devices(), indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("V", [1, 7, 100, 1500])
@pytest.mark.parametrize("tau,top_p,delta", [(1.0, 1.0, 2.0), (0.7, 0.9, 2.0), (1.3, 0.5, 0.5)])
def test_generator_matches_reference(device, dtype, V, tau, top_p, delta):
    N = 6
    S, T, A = (logits(N, V, dtype, seed=s, device=device) for s in (1, 2, 3))
    if V > 1 and top_p < 1:
        assert nucleus_margin(T, tau, top_p) > 1e-5
    w = weights(N, zero=[2], device=device)
    g = torch.randn(N, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    loss, grad, ref, ref_grad = gen_case(S, T, A, w, tau, top_p, delta, g)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    assert_loss_close(loss, ref)
    assert_grad_close(grad, ref_grad, dtype)


@pytest.mark.parametrize("device", devices(), indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("V", [1, 33, 1500])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("tau,top_p", [(1.0, 1.0), (0.8, 0.85)])
def test_auxiliary_matches_reference(device, dtype, V, soft, tau, top_p):
    N = 5
    A, T, S = (logits(N, V, dtype, seed=s, device=device) for s in (5, 6, 7))
    if V > 1 and top_p < 1:
        assert nucleus_margin(T, tau, top_p) > 1e-5
    target = S if soft else torch.randint(0, V, (N,), generator=torch.Generator().manual_seed(8)).to(device)
    w = weights(N, zero=[0], device=device)
    g = torch.randn(N, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    loss, grad, ref, ref_grad = aux_case(A, T, target, w, tau, top_p, 2.0, g)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    assert_loss_close(loss, ref)
    assert_grad_close(grad, ref_grad, dtype)


def test_float64_kernel_matches_reference():
    S, T, A = (logits(4, 300, torch.float64, seed=s) for s in (1, 2, 3))
    g = torch.ones(4, dtype=torch.float64)
    loss, grad, ref, ref_grad = gen_case(S, T, A, None, 0.9, 0.8, 2.0, g)
    assert loss.dtype == torch.float64
    assert_loss_close(loss, ref, rtol=1e-12)
    assert_grad_close(grad, ref_grad, torch.float64)


@pytest.mark.parametrize("top_p", [1.0, 0.75])
def test_gradcheck_float64(top_p):
    S, T, A = (logits(3, 6, torch.float64, seed=s) for s in (11, 12, 13))
    w = weights(3, zero=[1], dtype=torch.float64)
    S.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda s: ops.generator_loss(s, T, A, w, 0.8, top_p, 2.0), (S,))
    A2 = A.clone().requires_grad_()
    ids = torch.tensor([0, 5, 3])
    assert torch.autograd.gradcheck(
        lambda a: ops.auxiliary_loss(a, T, ids, w, 0.8, top_p, 2.0), (A2,))
    assert torch.autograd.gradcheck(
        lambda a: ops.auxiliary_loss(a, T, S.detach(), w, 0.8, top_p, 2.0), (A2,))


# ---------------------------------------------------------------- the nucleus

def kernel_threshold(T, tau, top_p):
    N = T.shape[0]
    w = torch.ones(N, dtype=torch.float64 if T.dtype == torch.float64 else torch.float32,
                   device=T.device)
    _, stats = GEN(T, T, T, w, tau, top_p, 2.0)
    _, stats_aux = AUX(T, T, None, T, w, tau, top_p, 2.0)
    assert torch.equal(stats[:, GEN_THR], stats_aux[:, AUX_THR])
    return stats[:, GEN_THR]


def assert_nucleus_matches(T, tau, top_p):
    thr = kernel_threshold(T, tau, top_p).double().cpu()
    want = R.nucleus_threshold(T.cpu(), tau, top_p)
    mask = T.double().cpu() >= thr[:, None]
    assert torch.equal(mask, R.nucleus_mask(T.cpu(), tau, top_p))
    assert torch.equal(thr, want)


def assert_nucleus_valid(T, tau, top_p, tol):
    """For large V, classes of mass ~1/V sit within float32 rounding of top_p: the
    kernel's threshold must be a logit of the row whose nucleus meets the definition
    up to tol (mass above the threshold < top_p, mass with it >= top_p)."""
    thr = kernel_threshold(T, tau, top_p).double().cpu()
    t = T.double().cpu()
    p = torch.softmax(t / tau, -1)
    for r in range(t.shape[0]):
        assert (t[r] == thr[r]).any()
        above, incl = p[r][t[r] > thr[r]].sum().item(), p[r][t[r] >= thr[r]].sum().item()
        assert above < top_p + tol and incl >= top_p - tol, (above, incl)


@pytest.mark.parametrize("device", devices(), indirect=True)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.99])
def test_nucleus_random_rows(device, dtype, top_p):
    T = logits(16, 2000, dtype, scale=2.0, seed=21, device=device)
    assert nucleus_margin(T, 1.0, top_p) > 1e-6
    assert_nucleus_matches(T, 1.0, top_p)


@pytest.mark.parametrize("device", devices(), indirect=True)
def test_nucleus_adversarial_rows(device):
    V = 64
    g = torch.Generator().manual_seed(22)
    ties = torch.randint(0, 4, (1, V), generator=g).double()  # 4 values, many ties
    dominant = torch.zeros(1, V, dtype=torch.float64)
    dominant[0, 17] = 30.0  # mass ~ 1 - 1e-11
    uniform = torch.zeros(1, V, dtype=torch.float64)
    two_level = torch.cat([torch.full((1, 8), 5.0, dtype=torch.float64),
                           torch.zeros(1, V - 8, dtype=torch.float64)], 1)
    signed_zero = torch.tensor([[-0.0, 0.0, -1.0, -0.0] * (V // 4)], dtype=torch.float64)
    with_inf = logits(1, V, torch.float64, seed=23)
    with_inf[0, ::3] = float("-inf")
    rows = torch.cat([ties, dominant, uniform, two_level, signed_zero, with_inf]).float()
    rows = rows.to(device)
    for top_p in [1e-6, 0.25, 0.5, 0.9]:
        assert_nucleus_matches(rows, 1.0, top_p)
    # the tails of these rows carry >= 1e-3 each: top_p near 1 keeps everything finite
    tail = logits(8, 16, torch.float32, scale=1.0, seed=24, device=device)
    assert_nucleus_matches(tail, 1.0, 1 - 1e-6)
    assert_nucleus_matches(tail, 0.5, 1 - 1e-6)


def test_nucleus_ties_are_inside():
    # two classes at 0.4 each, one at 0.2: top_p = 0.3 is met by one class, its tie joins.
    T = torch.log(torch.tensor([[0.4, 0.2, 0.4]]))
    thr = kernel_threshold(T, 1.0, 0.3)
    assert ((T >= thr[:, None]) == torch.tensor([[True, False, True]])).all()


def _ln2_rows(dtype):
    # masses known exactly in every exp (e^0 = 1, e^-ln2 = 1/2, e^-2ln2 = 1/4,
    # e^-200 = 0 below the fast exp's range): 1, 1, 1/2, 1/2, 1/4 x 4 of 2^S, 0 x 8
    ln2 = torch.log(torch.tensor(2.0, dtype=torch.float64)).to(dtype).double()
    row = [0.0, 0.0, -ln2, -ln2] + [-2 * ln2] * 4 + [-200.0] * 8
    gen = torch.Generator().manual_seed(3)
    return torch.stack([torch.tensor(row)[torch.randperm(16, generator=gen)] for _ in range(4)])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nucleus_fixed_point_rule_at_exact_boundaries(dtype):
    # target = ceil(top_p * total) in 2^S units: 0.5 -> 2 (reached exactly by the two
    # top classes), one ulp above 0.5 -> 2 + 2^-S (one more value joins), and so on
    T = _ln2_rows(dtype).to(dtype)
    up = lambda p: math.nextafter(p, 1.0)  # noqa: E731
    top, half, quarter = 0.0, float(T.double().unique()[-2]), float(T.double().unique()[-3])
    for p, want in [(0.25, top), (0.5, top), (up(0.5), half), (0.75, half), (up(0.75), quarter),
                    (1 - 1e-6, quarter)]:
        thr = kernel_threshold(T, 1.0, p).double()
        assert bool((thr == want).all()), (p, thr)
        if dtype == torch.float64:  # float64's exp(-ln2) is 1/2 too (float32's -ln2: not)
            assert torch.equal(thr, R.nucleus_threshold_fixed(T, 1.0, p))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_nucleus_invariant_to_vocabulary_order(dtype):
    # Integer masses: permuting the classes of S, T, A together leaves the threshold
    # bitwise unchanged even with top_p on a cumulative mass (float sums would move
    # with the order there); the loss then changes by float summation order only.
    V = 3000
    S, T, A = (logits(4, V, dtype, scale=2.0, seed=s) for s in (61, 62, 63))
    p = torch.softmax(T.double(), -1).sort(-1, descending=True).values.cumsum(-1)
    gen = torch.Generator().manual_seed(64)
    perms = [torch.randperm(V, generator=gen) for _ in range(6)]
    w = torch.ones(4, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    for top_p in [float(p[0, 40]), float(p[1, 400]), float(p[2, 7]), 0.9]:
        loss0, st0 = GEN(S, T, A, w, 1.0, top_p, 2.0)
        for perm in perms:
            loss, st = GEN(S[:, perm], T[:, perm], A[:, perm], w, 1.0, top_p, 2.0)
            assert torch.equal(st[:, GEN_THR], st0[:, GEN_THR]), top_p
            torch.testing.assert_close(loss, loss0, rtol=1e-5, atol=1e-6)
        thr = st0[:, GEN_THR].double()
        fixed = R.nucleus_threshold_fixed(T, 1.0, top_p)
        # the kernel's exp differs from float64's by its rounding: the same threshold
        # or (top_p on a boundary) the neighbouring distinct value of the row (ranked
        # among distinct values: bf16 rows hold ties, which an element rank would count)
        t = T.double()
        for r in range(t.shape[0]):
            vals = t[r].unique()
            pos = lambda x: int((vals > x).sum())  # noqa: E731
            assert abs(pos(thr[r]) - pos(fixed[r])) <= 1, (top_p, r, thr[r], fixed[r])
        assert bool((thr == fixed).sum() >= 1)


def test_sharpening_changes_loss_by_delta():
    # delta lowers outside logits: with delta = 0 the nucleus is irrelevant.
    S, T, A = (logits(3, 50, seed=s) for s in (31, 32, 33))
    a = ops.generator_loss(S, T, A, top_p=0.5, delta=0.0)
    b = ops.generator_loss(S, T, A, top_p=1.0, delta=5.0)
    c = ops.generator_loss(S, T, A, top_p=0.5, delta=5.0)
    torch.testing.assert_close(a, b)
    assert (c - a).abs().min() > 1e-3


# ---------------------------------------------------------------- special values

@pytest.mark.parametrize("device", devices(), indirect=True)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_logits(device, dtype):
    N, V = 4, 700
    g = torch.ones(N, dtype=torch.float64)
    # a common offset of 1e4: everything but the offset cancels
    S, T, A = (1e4 + logits(N, V, torch.float64, seed=s) for s in (41, 42, 43))
    S, T, A = (x.to(dtype).to(device) for x in (S, T, A))
    loss, grad, ref, ref_grad = gen_case(S, T, A, None, 1.0, 0.9, 2.0, g)
    ulp = 1e4 * (2**-23)  # one float32 ulp at 1e4: the input values are exact
    assert_loss_close(loss, ref, scale=1.0, rtol=max(2e-5, 64 * ulp))
    assert_grad_close(grad, ref_grad, dtype if dtype != torch.float32 else torch.bfloat16)
    # logits of scale 1e4: rows are one-hot, the loss is a difference of O(1e4) terms
    S, T, A = (logits(N, V, torch.float64, scale=1e4, seed=s).to(dtype).to(device)
               for s in (44, 45, 46))
    loss, grad, ref, ref_grad = gen_case(S, T, A, None, 1.0, 1.0, 2.0, g)
    assert_loss_close(loss, ref, scale=1e4, rtol=1e-6)
    lossa, grada, refa, ref_grada = aux_case(A, T, S, None, 1.0, 1.0, 2.0, g)
    assert_loss_close(lossa, refa, scale=1e4, rtol=1e-6)
    assert_grad_close(grada, ref_grada, dtype)


@pytest.mark.parametrize("device", devices(), indirect=True)
def test_exp_underflow_boundary(device):
    """Logits 80-120 below the row maximum, where the CPU's polynomial exp goes
    from normal through subnormal to exactly 0 (its argument clamp is at -88):
    every term there is < 2e-35 of the row's mass, so the losses and gradients
    equal the reference's, and no NaN appears in the rows' 0 * log-terms."""
    N, V = 6, 64
    g = torch.ones(N, dtype=torch.float64)
    base = logits(N, V, torch.float64, scale=1.0, seed=47)
    gaps = torch.linspace(80.0, 120.0, V - 8, dtype=torch.float64)
    S, T, A = base.clone(), logits(N, V, torch.float64, scale=1.0, seed=48), base.flip(-1)
    for x in (S, T, A):
        x[:, 8:] = x[:, :8].max(-1, keepdim=True).values - gaps  # the gaps, per row
    S, T, A = (x.float().to(device) for x in (S, T, A))
    loss, grad, ref, ref_grad = gen_case(S, T, A, None, 1.0, 1.0, 2.0, g)
    assert_loss_close(loss, ref)
    assert_grad_close(grad, ref_grad, torch.float32)
    lossa, grada, refa, ref_grada = aux_case(A, T, S, None, 1.0, 1.0, 2.0, g)
    assert_loss_close(lossa, refa)
    assert_grad_close(grada, ref_grada, torch.float32)


def test_fast_exp_coefficients_are_accurate():
    """The CPU kernels' exp polynomial, read from the source and evaluated in
    float32 steps, stays within 1e-7 relative error of exp on [-87, 0]
    (scripts/fit_fast_exp.py; a mistyped coefficient fails this)."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "fit_fast_exp.py"
    spec = importlib.util.spec_from_file_location("fit_fast_exp", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.kernel_coefficients()
    assert len(c) == 5
    assert mod.max_rel_err(c) < 1e-7
    assert mod.max_rel_err(c * (1 + 1e-4)) > 1e-7  # the check itself can fail


@pytest.mark.parametrize("device", devices(), indirect=True)
def test_neg_inf_logits_give_finite_loss(device):
    N, V = 3, 40
    S, T, A = (logits(N, V, seed=s) for s in (51, 52, 53))
    never = [0, 7, 39]  # e.g. MASK: no model predicts it
    for x in (S, T, A):
        x[:, never] = float("-inf")
    S[1, 3] = float("-inf")  # a class only the student excludes
    S, T, A = S.to(device), T.to(device), A.to(device)
    g = torch.ones(N, dtype=torch.float64)
    loss, grad, ref, ref_grad = gen_case(S, T, A, None, 0.9, 0.8, 2.0, g)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    assert_loss_close(loss, ref)
    assert_grad_close(grad, ref_grad, torch.float32)
    assert (grad[:, never] == 0).all()
    for target in (S, torch.tensor([1, 2, 3], device=device)):
        loss, grad, ref, ref_grad = aux_case(A, T, target, None, 0.9, 0.8, 2.0, g)
        assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
        assert_loss_close(loss, ref)
        assert_grad_close(grad, ref_grad, torch.float32)


def test_neg_inf_where_mass_is_positive():
    S, T, A = (logits(3, 10, seed=s) for s in (54, 55, 56))
    A[0, 2] = float("-inf")  # p > 0 where log a = -inf: generator loss -inf
    T[1, 2] = float("-inf")  # p > 0 where log t~ = -inf: +inf
    A[2, 2] = T[2, 2] = float("-inf")  # both: undefined, NaN
    loss = ops.generator_loss(S, T, A)
    assert loss[0] == float("-inf") and loss[1] == float("inf") and torch.isnan(loss[2])
    ref = R.generator_loss(S, T, A)
    assert ref[0] == float("-inf") and ref[1] == float("inf") and torch.isnan(ref[2])
    # auxiliary: y + t~ > 0 where A = -inf: +inf
    la = ops.auxiliary_loss(A, logits(3, 10, seed=57), torch.tensor([2, 0, 0]))
    assert la[0] == float("inf") and torch.isfinite(la[1])


@pytest.mark.parametrize("device", devices(), indirect=True)
def test_nan_row_is_isolated(device):
    N, V = 4, 300
    S, T, A = (logits(N, V, seed=s, device=device) for s in (61, 62, 63))
    clean_loss, clean_grad, _, _ = gen_case(S, T, A, None, 1.0, 0.9, 2.0, torch.ones(N))
    S2, T2 = S.clone(), T.clone()
    S2[1, 5] = float("nan")
    T2[2, 9] = float("nan")
    loss, grad, _, _ = gen_case(S2, T2, A, None, 1.0, 0.9, 2.0, torch.ones(N))
    assert torch.isnan(loss[1]) and torch.isnan(loss[2])
    assert torch.isnan(grad[1]).all() and torch.isnan(grad[2]).all()
    keep = [0, 3]
    assert torch.equal(loss[keep], clean_loss[keep]) and torch.equal(grad[keep], clean_grad[keep])
    A2 = A.clone()
    A2[3, 0] = float("nan")
    lossa = ops.auxiliary_loss(A2, T, S)
    assert torch.isnan(lossa[3]) and torch.isfinite(lossa[:3]).all()


@pytest.mark.parametrize("device", devices(), indirect=True)
def test_zero_weight_rows_untouched(device):
    N, V = 5, 129
    S, T, A = (logits(N, V, seed=s, device=device) for s in (71, 72, 73))
    S[2] = float("nan")  # not read: the row's weight is 0
    A[2] = float("nan")
    w = weights(N, zero=[2, 4], device=device)
    s = S.clone().requires_grad_()
    loss = ops.generator_loss(s, T, A, w)
    loss.sum().backward()
    assert (loss[[2, 4]] == 0).all() and torch.isfinite(loss).all()
    assert (s.grad[[2, 4]] == 0).all() and torch.isfinite(s.grad).all()
    a = A.clone().requires_grad_()
    for target in (S, torch.zeros(N, dtype=torch.int64, device=device)):
        a.grad = None
        lossa = ops.auxiliary_loss(a, T, target, w)
        lossa.sum().backward()
        assert (lossa[[2, 4]] == 0).all() and torch.isfinite(lossa).all()
        assert (a.grad[[2, 4]] == 0).all() and torch.isfinite(a.grad).all()


def test_single_class_rows():
    S, T, A = (logits(3, 1, seed=s) for s in (81, 82, 83))
    s = S.clone().requires_grad_()
    loss = ops.generator_loss(s, T, A, top_p=0.5)
    loss.sum().backward()
    assert (loss == 0).all() and (s.grad == 0).all()
    assert (ops.auxiliary_loss(A, T, torch.zeros(3, dtype=torch.int64)) == 0).all()


# ---------------------------------------------------------------- shapes and layouts

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gpt2_vocabulary(dtype):
    N, V = 3, 50257
    S, T, A = (logits(N, V, dtype, seed=s) for s in (91, 92, 93))
    assert_nucleus_valid(T, 1.0, 0.9, tol=1e-5)
    loss, grad, ref, ref_grad = gen_case(S, T, A, None, 1.0, 0.9, 2.0, torch.ones(N))
    assert_loss_close(loss, ref, rtol=5e-5)
    assert_grad_close(grad, ref_grad, dtype)
    loss, grad, ref, ref_grad = aux_case(A, T, S, None, 1.0, 0.9, 2.0, torch.ones(N))
    assert_loss_close(loss, ref, rtol=5e-5)
    assert_grad_close(grad, ref_grad, dtype)


def test_vocabulary_262144():
    N, V = 2, 262144
    S, T, A = (logits(N, V, seed=s) for s in (94, 95, 96))
    loss, grad, ref, ref_grad = gen_case(S, T, A, None, 1.0, 0.95, 2.0, torch.ones(N))
    assert_loss_close(loss, ref, rtol=1e-4)
    assert_grad_close(grad, ref_grad, torch.float32)
    assert_nucleus_valid(T, 1.0, 0.95, tol=1e-5)


def test_empty_and_leading_dims():
    S = torch.randn(0, 11, requires_grad=True)
    loss = ops.generator_loss(S, S.detach(), S.detach())
    assert loss.shape == (0,)
    loss.sum().backward()
    assert S.grad.shape == (0, 11)
    assert ops.auxiliary_loss(S, S, torch.zeros(0, dtype=torch.int64)).shape == (0,)
    # [B, L, V] -> [B, L]
    S, T, A = (logits(6, 20, seed=s).reshape(2, 3, 20) for s in (101, 102, 103))
    w = torch.rand(2, 3)
    loss = ops.generator_loss(S, T, A, w, top_p=0.9)
    flat = ops.generator_loss(S.reshape(6, 20), T.reshape(6, 20), A.reshape(6, 20),
                              w.reshape(6), top_p=0.9)
    assert loss.shape == (2, 3) and torch.equal(loss.reshape(6), flat)


def test_non_contiguous_inputs():
    N, V = 5, 300
    wide = [logits(N, 2 * V, seed=s) for s in (111, 112, 113)]
    strided_rows = [x[:, :V] for x in wide]  # row stride 2V: read in place
    transposed = [logits(V, N, seed=s).t() for s in (114, 115, 116)]  # last-dim stride N: copied
    for S, T, A in (strided_rows, transposed):
        assert not S.is_contiguous()
        want = ops.generator_loss(S.contiguous(), T.contiguous(), A.contiguous(), top_p=0.8)
        assert torch.equal(ops.generator_loss(S, T, A, top_p=0.8), want)
        s = S.clone().requires_grad_() if False else S.detach().requires_grad_()
        ops.generator_loss(s, T, A, top_p=0.8).sum().backward()
        c = S.contiguous().requires_grad_()
        ops.generator_loss(c, T.contiguous(), A.contiguous(), top_p=0.8).sum().backward()
        assert torch.equal(s.grad, c.grad)
        assert torch.equal(ops.auxiliary_loss(A, T, S), ops.auxiliary_loss(
            A.contiguous(), T.contiguous(), S.contiguous()))


def test_hard_target_equals_one_hot_soft_target():
    N, V = 4, 77
    A, T = logits(N, V, seed=121), logits(N, V, seed=122)
    ids = torch.tensor([0, 76, 5, 40])
    one_hot = torch.full((N, V), float("-inf"))
    one_hot[torch.arange(N), ids] = 0.0  # softmax is exactly one-hot
    a1, a2 = A.clone().requires_grad_(), A.clone().requires_grad_()
    l1 = ops.auxiliary_loss(a1, T, ids, top_p=0.9)
    l2 = ops.auxiliary_loss(a2, T, one_hot, top_p=0.9)
    torch.testing.assert_close(l1, l2, rtol=1e-6, atol=1e-6)
    l1.sum().backward()
    l2.sum().backward()
    torch.testing.assert_close(a1.grad, a2.grad, rtol=1e-6, atol=1e-7)


def test_reductions_and_modules():
    S, T, A = (logits(2 * 4, 30, seed=s).reshape(2, 4, 30) for s in (131, 132, 133))
    per_row = ops.generator_loss(S, T, A, tau=0.9, top_p=0.8)
    torch.testing.assert_close(ops.generator_loss(S, T, A, None, 0.9, 0.8, reduction="sum"),
                               per_row.sum())
    torch.testing.assert_close(ops.GeneratorLoss(0.9, 0.8)(S, T, A), per_row.mean())
    ids = torch.randint(0, 30, (2, 4))
    torch.testing.assert_close(ops.AuxiliaryLoss(0.9, 0.8, reduction="sum")(A, T, ids),
                               ops.auxiliary_loss(A, T, ids, None, 0.9, 0.8).sum())


def test_teacher_and_aux_get_no_gradient():
    S, T, A = (logits(3, 9, seed=s).requires_grad_() for s in (141, 142, 143))
    ops.generator_loss(S, T, A).sum().backward()
    assert S.grad is not None and T.grad is None and A.grad is None
    S.grad = None
    ops.auxiliary_loss(A, T, S).sum().backward()
    assert A.grad is not None and T.grad is None and S.grad is None


# ---------------------------------------------------------------- registration

def test_opcheck():
    S, T, A = (logits(4, 37, seed=s) for s in (151, 152, 153))
    w = weights(4, zero=[1])
    S.requires_grad_()
    torch.library.opcheck(torch.ops.dmmd_ext.moment_generator_loss, (S, T, A, w, 0.9, 0.8, 2.0))
    _, stats = GEN(S, T, A, w, 0.9, 0.8, 2.0)
    torch.library.opcheck(torch.ops.dmmd_ext.moment_generator_loss_backward, (torch.ones(4), S.detach(), T, A, w, stats, 0.9, 2.0))
    A2 = A.clone().requires_grad_()
    ids = torch.tensor([0, 3, 36, 9])
    torch.library.opcheck(torch.ops.dmmd_ext.moment_auxiliary_loss, (A2, T, ids, None, w, 0.9, 0.8, 2.0, True))
    torch.library.opcheck(torch.ops.dmmd_ext.moment_auxiliary_loss, (A2, T, None, S.detach(), w, 0.9, 0.8, 2.0, True))
    _, st = AUX(A, T, ids, None, w, 0.9, 0.8, 2.0, True)
    torch.library.opcheck(torch.ops.dmmd_ext.moment_auxiliary_loss_backward, (torch.ones(4), A, T, ids, None, w, st, 0.9, 2.0))


def test_torch_compile_matches_eager():
    S, T, A = (logits(6, 64, seed=s) for s in (161, 162, 163))
    ids = torch.randint(0, 64, (6,), generator=torch.Generator().manual_seed(164))
    w = weights(6, zero=[3])

    def step(s, a):
        return (ops.generator_loss(s, T, A, w, 0.9, 0.8, reduction="sum")
                + ops.auxiliary_loss(a, T, ids, w, 0.9, 0.8, reduction="sum"))

    compiled = torch.compile(step, fullgraph=True)
    out = {}
    for name, fn in (("eager", step), ("compiled", compiled)):
        s, a = S.clone().requires_grad_(), A.clone().requires_grad_()
        loss = fn(s, a)
        loss.backward()
        out[name] = (loss.detach(), s.grad, a.grad)
    for e, c in zip(out["eager"], out["compiled"]):
        torch.testing.assert_close(c, e, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- errors

def test_error_messages():
    S, T, A = (logits(3, 8, seed=s) for s in (171, 172, 173))
    w = torch.ones(3)
    with pytest.raises(RuntimeError, match=r"teacher: expected shape \[3, 8\]"):
        GEN(S, T[:, :7], A, w, 1.0, 1.0, 2.0)
    with pytest.raises(RuntimeError, match="aux: expected dtype Float"):
        GEN(S, T, A.double(), w, 1.0, 1.0, 2.0)
    with pytest.raises(RuntimeError, match=r"tau: expected a value in \[1e-30, 1e30\], got 0"):
        ops.generator_loss(S, T, A, tau=0.0)
    with pytest.raises(RuntimeError, match=r"top_p: expected a value in \(0, 1\] \(1 = off\), got 1.5"):
        ops.generator_loss(S, T, A, top_p=1.5)
    with pytest.raises(RuntimeError, match=r"top_p: expected a value in \(0, 1\] \(1 = off\), got 0"):
        ops.auxiliary_loss(A, T, S, top_p=0.0)
    with pytest.raises(RuntimeError, match="delta: expected a finite value >= 0"):
        ops.generator_loss(S, T, A, top_p=0.5, delta=-1.0)
    with pytest.raises(RuntimeError, match=r"weight: expected shape \[3\]"):
        GEN(S, T, A, torch.ones(4), 1.0, 1.0, 2.0)
    with pytest.raises(RuntimeError, match="weight: expected dtype Float"):
        GEN(S, T, A, torch.ones(3, dtype=torch.float64), 1.0, 1.0, 2.0)
    with pytest.raises(ValueError, match=r"weight: expected shape \(3,\)"):
        ops.generator_loss(S, T, A, torch.ones(2))
    with pytest.raises(RuntimeError, match="student: expected dtype in"):
        GEN(S.int(), T.int(), A.int(), w, 1.0, 1.0, 2.0)
    with pytest.raises(RuntimeError, match=r"student: expected a 2-D tensor \[N, V\]"):
        GEN(S[0], T[0], A[0], w, 1.0, 1.0, 2.0)
    with pytest.raises(RuntimeError, match=r"target_ids: token ids must lie in \[0, 8\)"):
        ops.auxiliary_loss(A, T, torch.tensor([0, 8, 1]))
    with pytest.raises(RuntimeError, match="expected exactly one of target_ids"):
        AUX(A, T, None, None, w, 1.0, 1.0, 2.0, True)
    with pytest.raises(ValueError, match="target: expected int64 ids of shape"):
        ops.auxiliary_loss(A, T, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="target: expected int64 ids or floating-point"):
        ops.auxiliary_loss(A, T, torch.tensor([0, 1, 2], dtype=torch.int32))
    with pytest.raises(ValueError, match="reduction: expected one of"):
        ops.generator_loss(S, T, A, reduction="avg")
    if CUDA:
        with pytest.raises(RuntimeError, match="teacher: expected device"):
            GEN(S.cuda(), T, A.cuda(), w.cuda(), 1.0, 1.0, 2.0)


def test_unchecked_out_of_range_id_gives_nan():
    A, T = logits(3, 8, seed=181), logits(3, 8, seed=182)
    loss = ops.auxiliary_loss(A, T, torch.tensor([0, 8, -1]), validate=False)
    assert torch.isfinite(loss[0]) and torch.isnan(loss[1:]).all()


# ---------------------------------------------------------------- CUDA vs CPU

@pytest.mark.simt_edge
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("V", [1, 5, 200, 4099, 50257])
@pytest.mark.parametrize("top_p", [1.0, 0.9])
def test_cuda_matches_cpu(kb, dtype, V, top_p):
    N = 9 if V < 50000 else 3
    S, T, A = (logits(N, V, dtype, seed=s) for s in (191, 192, 193))
    if 1 < V < 50000 and top_p < 1:  # CPU and CUDA exps differ by ~1e-7: no boundary class
        assert nucleus_margin(T, 0.9, top_p) > 1e-5
    w = weights(N, zero=[1])
    ids = torch.randint(0, V, (N,), generator=torch.Generator().manual_seed(194))
    gen, gen_bwd = kb.op("moment_generator_loss"), kb.op("moment_generator_loss_backward")
    aux, aux_bwd = kb.op("moment_auxiliary_loss"), kb.op("moment_auxiliary_loss_backward")
    lc, sc = GEN(S, T, A, w, 0.9, top_p, 2.0)
    lg, sg = gen(S, T, A, w, 0.9, top_p, 2.0)
    if V < 50000:  # same nucleus; at V = 50257 boundary classes are within rounding
        assert_loss_close(lg, lc, rtol=2e-5)
        assert torch.equal(sg[:, GEN_THR], sc[:, GEN_THR])
    else:
        assert_loss_close(lg, lc, rtol=1e-4)
        if top_p < 1:
            kb.call(assert_nucleus_valid, T, 0.9, top_p, 1e-5)
    g = torch.randn(N)
    dc = GEN_BWD(g, S, T, A, w, sc, 0.9, 2.0)
    dg = gen_bwd(g, S, T, A, w, sg, 0.9, 2.0)
    assert_grad_close(dg, dc, dtype, ulps=2)
    for target in (ids, S):
        hard = target.dtype == torch.int64
        args = (target if hard else None, None if hard else target, w)
        lc, sc = AUX(A, T, *args, 0.9, top_p, 2.0, True)
        lg, sg = aux(A, T, *args, 0.9, top_p, 2.0, True)
        assert_loss_close(lg, lc, rtol=2e-5 if V < 50000 else 1e-4)
        dc = AUX_BWD(g, A, T, *args, sc, 0.9, 2.0)
        dg = aux_bwd(g, A, T, *args, sg, 0.9, 2.0)
        assert_grad_close(dg, dc, dtype, ulps=2)


@pytest.mark.simt_edge
def test_cuda_strided_rows_and_special_values(kb):
    """Row strides read in place, -inf/NaN/+inf rows isolated, weight-0 rows, N = 0."""
    V = 37
    base = logits(12, 2 * V, seed=211)
    S, T, A = base[:, :V], base[:, V:], logits(12, V, seed=212)  # row stride 2V
    S = S.clone(); S[0] = -INF; S[1, 3] = NAN; S[2, 4] = INF
    w = weights(12, zero=[5])
    gen = kb.op("moment_generator_loss")
    for top_p in (1.0, 0.8):
        lc, sc = GEN(S, T, A, w, 1.0, top_p, 2.0)
        lg, sg = gen(S, T, A, w, 1.0, top_p, 2.0)
        assert_loss_close(lg, lc, rtol=2e-5)
    empty = logits(0, V, seed=1)
    lg, sg = gen(empty, empty, empty, weights(0), 1.0, 0.9, 2.0)
    assert lg.shape == (0,) and sg.shape[0] == 0


def test_cuda_autograd_through_wrappers(kb):
    S, T, A = (logits(4, 300, seed=s) for s in (221, 222, 223))
    g = torch.randn(4, generator=torch.Generator().manual_seed(224), dtype=torch.float64)

    def loss_and_grad(s, t, a, g):
        s = s.detach().clone().requires_grad_()
        loss = ops.generator_loss(s, t, a, None, 0.8, 0.9, 2.0)
        loss.backward(g.to(loss.dtype))
        return loss.detach(), s.grad

    loss, grad, ref, ref_grad = gen_case(S, T, A, None, 0.8, 0.9, 2.0, g)
    got_loss, got_grad = kb.call(loss_and_grad, S, T, A, g)
    assert_loss_close(got_loss, ref)
    assert_grad_close(got_grad, ref_grad, torch.float32)


@requires_cuda
def test_cuda_vocabulary_262144_and_compile():
    S, T, A = (logits(2, 262144, torch.bfloat16, seed=s, device="cuda") for s in (201, 202, 203))
    loss, grad, ref, ref_grad = gen_case(S, T, A, None, 1.0, 0.95, 2.0, torch.ones(2))
    assert_loss_close(loss, ref, rtol=1e-4)
    assert_grad_close(grad, ref_grad, torch.bfloat16)
    fn = torch.compile(lambda s: ops.generator_loss(s, T, A, top_p=0.95, reduction="sum"),
                       fullgraph=True)
    torch.testing.assert_close(fn(S), loss.sum())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("V", [200, 50257])
def test_cuda_nucleus_is_run_to_run_deterministic(kb, dtype, V):
    # integer atomics: the same threshold and loss bits every run (every fiber
    # order in the emulator) and for every order of the classes (float atomics
    # made them depend on the atomics' order)
    N = 16 if V < 50000 else 4
    S, T, A = (logits(N, V, dtype, scale=2.0, seed=s) for s in (201, 202, 203))
    w = torch.ones(N, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    perm = torch.randperm(V, generator=torch.Generator().manual_seed(204))
    first, *again = kb.reruns()
    gen0, aux0 = first.op("moment_generator_loss"), first.op("moment_auxiliary_loss")
    for top_p in [0.3, 0.9, 0.999]:
        l0, s0 = gen0(S, T, A, w, 1.0, top_p, 2.0)
        a0, t0 = aux0(A, T, None, S, w, 1.0, top_p, 2.0, False)
        for b in again:
            l1, s1 = b.op("moment_generator_loss")(S, T, A, w, 1.0, top_p, 2.0)
            a1, t1 = b.op("moment_auxiliary_loss")(A, T, None, S, w, 1.0, top_p, 2.0, False)
            assert torch.equal(l1, l0) and torch.equal(s1, s0)
            assert torch.equal(a1, a0) and torch.equal(t1, t0)
        _, sp = gen0(S[:, perm], T[:, perm], A[:, perm], w, 1.0, top_p, 2.0)
        assert torch.equal(sp[:, GEN_THR], s0[:, GEN_THR])
