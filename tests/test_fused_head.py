"""Fused LM head + moment losses (dmmd_ext.ops.fused_head) against the unfused ops
applied to materialized logits `F.linear(h, W, b)`: loss, gradients of h, W and b,
every reduction, bf16/fp16, odd V, N not a multiple of the chunk, weight-0 rows,
top_p < 1, teacher / auxiliary widths that differ from the student's, soft targets
given as logits or as a head, the chunking itself, autocast, torch.compile and the
argument errors.

Tolerances are those of tests/test_losses.py (kernel vs kernel on the same logit
values): loss 2e-5 * (1 + |ref|); d loss / d logits per dtype (float32 rtol 1e-4,
bfloat16 2 * 2^-8, float16 2 * 2^-10; atol 1e-5 float32, 1e-6 otherwise),
propagated through the head's matmuls: dh = dlogits @ W, dW = dlogits.T @ h,
db = dlogits.sum(0) may differ by rtol times the same product of absolute values
(|dlogits| @ |W|, ...) plus atol times it for a dlogits of ones, plus rtol |ref|
for their own rounding. Why the propagation: for sum/mean the fused op computes
dlogits for a unit incoming gradient and scales dh, dW afterwards, the unfused op
scales dlogits first, so in bf16 the two round dlogits differently, and entries of
dh that cancel can differ by more than a bf16 unit of their own magnitude. The
logits of a chunk are F.linear of its rows (the rows of the full F.linear on CPU);
dW sums the chunks in float32 and is rounded once.
"""

import json

import pytest
import torch
import torch.nn.functional as F

import dmmd_ext  # noqa: F401  (loads the kernels)
from dmmd_ext import ops
from dmmd_ext.ops import fused_head as FH
from conftest import devices

from test_losses import DTYPES, GRAD_RTOL, assert_loss_close, weights

REDUCTIONS = ["none", "sum", "mean"]


def mats(seed, *shapes, dtype=torch.float32, device="cpu", scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(*s, generator=g, dtype=torch.float64) * scale).to(dtype).to(device)
            for s in shapes]


def problem(N, V, d=(8, 12, 20), dtype=torch.float32, device="cpu", seed=0, bias=True):
    """Student, teacher and auxiliary (h, W, b) with widths d; logits of scale ~3."""
    heads = []
    for i, di in enumerate(d):
        h, w, b = mats(seed + 10 * i, (N, di), (V, di), (V,), dtype=torch.float64)
        w = w * (3.0 / di ** 0.5)
        heads.append(tuple(None if x is None else x.to(dtype).to(device)
                           for x in (h, w, b if bias else None)))
    return heads


def grad_out(reduction, N, seed=5):
    if reduction == "none":
        return torch.randn(N, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.tensor(1.7, dtype=torch.float64)


def leaves(*xs):
    return [None if x is None else x.detach().clone().requires_grad_() for x in xs]


def grads(*xs):
    return [None if x is None else x.grad for x in xs]


def propagate(a, h, w, b):
    """[N, V] a >= 0 through the head's gradient matmuls (absolute values): the
    scales of the dh, dW, db bounds."""
    h, w = h.detach().double().abs().cpu(), w.detach().double().abs().cpu()
    return [a @ w, a.t() @ h, None if b is None else a.sum(0)]


def term_scales(dx, h, w, b):
    """(rtol scales, atol scales) of dh, dW, db: |dlogits| and ones propagated."""
    a = dx.detach().double().abs().cpu()
    return list(zip(propagate(a, h, w, b), propagate(torch.ones_like(a), h, w, b)))


def unfused_gen(S, T, A, w, tau, top_p, red, g):
    hs, ws, bs = leaves(*S)
    x = F.linear(hs, ws, bs)
    x.retain_grad()
    loss = ops.generator_loss(x, F.linear(*T), F.linear(*A), w, tau, top_p, 2.0, red)
    (loss * g.to(loss)).sum().backward()
    return loss.detach(), grads(hs, ws, bs), term_scales(x.grad, hs, ws, bs)


def fused_gen(S, T, A, w, tau, top_p, red, g, **kw):
    hs, ws, bs = leaves(*S)
    loss = ops.linear_generator_loss(hs, ws, T[0], T[1], A[0], A[1], w, tau, top_p, 2.0, red,
                                     b_student=bs, b_teacher=T[2], b_aux=A[2], **kw)
    (loss * g.to(loss)).sum().backward()
    return loss.detach(), grads(hs, ws, bs)


def unfused_aux(A, T, target, w, tau, top_p, red, g):
    ha, wa, ba = leaves(*A)
    if isinstance(target, tuple):
        target = F.linear(*target)
    x = F.linear(ha, wa, ba)
    x.retain_grad()
    loss = ops.auxiliary_loss(x, F.linear(*T), target, w, tau, top_p, 2.0, red)
    (loss * g.to(loss)).sum().backward()
    return loss.detach(), grads(ha, wa, ba), term_scales(x.grad, ha, wa, ba)


def fused_aux(A, T, target, w, tau, top_p, red, g, **kw):
    ha, wa, ba = leaves(*A)
    loss = ops.linear_auxiliary_loss(ha, wa, T[0], T[1], target, w, tau, top_p, 2.0, red,
                                     b_aux=ba, b_teacher=T[2], **kw)
    (loss * g.to(loss)).sum().backward()
    return loss.detach(), grads(ha, wa, ba)


def assert_head_grad_close(got, want, scale, dtype):
    """Module docstring: rtol of the dtype on |ref| and on the propagated scale."""
    got, want = got.double().cpu(), want.double().cpu()
    assert got.shape == want.shape
    rtol = GRAD_RTOL[dtype] * (2 if dtype in (torch.bfloat16, torch.float16) else 1)
    atol = 1e-12 if dtype == torch.float64 else 1e-5 if dtype == torch.float32 else 1e-6
    rel, ones = scale
    bound = rtol * (want.abs() + rel) + atol * ones
    err = (got - want).abs()
    assert (err <= bound).all(), f"max err / bound {(err / bound).max().item():.3g}"


def assert_same(got, want, dtype, grad_dtype=None):
    (lg, gg), (lw, gw, scales) = got, want
    assert lg.dtype == lw.dtype and lg.shape == lw.shape
    assert_loss_close(lg.reshape(-1), lw.reshape(-1))
    for a, b, sc in zip(gg, gw, scales):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype == b.dtype == (grad_dtype or dtype)
            assert_head_grad_close(a, b, sc, dtype)


# ---------------------------------------------------------------- forward + backward

@pytest.mark.parametrize("device", devices(), indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("V,tau,top_p", [(37, 1.0, 1.0), (301, 0.8, 0.9)])
def test_generator_matches_unfused(device, dtype, reduction, V, tau, top_p):
    N = 13  # chunks of 5: 5 + 5 + 3
    S, T, A = problem(N, V, dtype=dtype, device=device)
    w = weights(N, zero=[2, 5, 6, 7, 8, 9], device=device)  # one whole chunk at weight 0
    g = grad_out(reduction, N)
    want = unfused_gen(S, T, A, w, tau, top_p, reduction, g)
    got = fused_gen(S, T, A, w, tau, top_p, reduction, g, chunk_size=5)
    assert_same(got, want, dtype)
    if reduction == "none":
        assert (got[0][[2, 5, 6, 7, 8, 9]] == 0).all()
        assert (got[1][0][[5, 6, 7, 8, 9]] == 0).all()  # dh of weight-0 rows


@pytest.mark.parametrize("device", devices(), indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target", ["ids", "logits", "head"])
def test_auxiliary_matches_unfused(device, dtype, reduction, target):
    N, V = 11, 53
    A, T, S = problem(N, V, dtype=dtype, device=device, seed=3)
    w = weights(N, zero=[0, 7], device=device)
    g = grad_out(reduction, N)
    ids = torch.randint(0, V, (N,), generator=torch.Generator().manual_seed(8)).to(device)
    want_t = {"ids": ids, "logits": F.linear(*S), "head": S}[target]
    got_t = {"ids": ids, "logits": F.linear(*S), "head": S}[target]
    want = unfused_aux(A, T, want_t, w, 0.8, 0.85, reduction, g)
    got = fused_aux(A, T, got_t, w, 0.8, 0.85, reduction, g, chunk_size=4)
    assert_same(got, want, dtype)


@pytest.mark.parametrize("chunk_size", [1, 3, 16, 1000, None])
def test_every_chunk_size_gives_the_same_result(chunk_size):
    N, V = 16, 257
    S, T, A = problem(N, V, seed=20)
    w = weights(N, zero=[4])
    g = grad_out("sum", N)
    want = unfused_gen(S, T, A, w, 1.0, 0.7, "sum", g)
    assert_same(fused_gen(S, T, A, w, 1.0, 0.7, "sum", g, chunk_size=chunk_size), want,
                torch.float32)


def test_leading_dims_weight_forms_and_no_bias():
    B, L, V = 2, 5, 29
    (hs, ws, _), (ht, wt, _), (ha, wa, _) = problem(B * L, V, seed=30, bias=False)
    hs, ht, ha = (x.reshape(B, L, -1) for x in (hs, ht, ha))
    for weight in (None, 0.5, weights(B * L).reshape(B, L)):
        want = ops.generator_loss(F.linear(hs, ws), F.linear(ht, wt), F.linear(ha, wa), weight)
        got = ops.linear_generator_loss(hs, ws, ht, wt, ha, wa, weight, chunk_size=3)
        assert got.shape == (B, L)
        assert_loss_close(got.reshape(-1), want.reshape(-1))


def test_float64_gradcheck():
    """The per-row backward (reduction 'none', which reruns the chunks) against
    finite differences, float64 kernels. gradcheck runs several backwards through
    one graph, which sum/mean refuse (test below); their backward is checked
    against the unfused op's above."""
    N, V = 5, 7
    S, T, A = problem(N, V, d=(3, 4, 2), dtype=torch.float64, seed=40)
    w = weights(N, zero=[1], dtype=torch.float64)
    ids = torch.tensor([0, 6, 3, 3, 1])
    for red in ("none",):
        assert torch.autograd.gradcheck(
            lambda h, W, b: ops.linear_generator_loss(h, W, T[0], T[1], A[0], A[1], w, 0.8, 0.6,
                                                      2.0, red, b_student=b, chunk_size=2),
            leaves(*S))
        assert torch.autograd.gradcheck(
            lambda h, W, b: ops.linear_auxiliary_loss(h, W, T[0], T[1], ids, w, 0.8, 0.6, 2.0,
                                                      red, b_aux=b, chunk_size=2),
            leaves(*A))


def test_only_the_trained_model_gets_gradients():
    S, T, A = (leaves(*x) for x in problem(6, 19, seed=50))
    ops.linear_generator_loss(S[0], S[1], T[0], T[1], A[0], A[1], b_student=S[2],
                              b_teacher=T[2], b_aux=A[2], reduction="sum").backward()
    assert all(x.grad is not None for x in S) and all(x.grad is None for x in T + A)
    S, T, A = (leaves(*x) for x in problem(6, 19, seed=51))
    ops.linear_auxiliary_loss(A[0], A[1], T[0], T[1], tuple(S), b_aux=A[2],
                              reduction="sum").backward()
    assert all(x.grad is not None for x in A) and all(x.grad is None for x in T + S)


def test_no_grad_gives_the_loss_only():
    S, T, A = problem(9, 23, seed=60)
    want = ops.linear_generator_loss(S[0], S[1], T[0], T[1], A[0], A[1], reduction="sum")
    hs = S[0].clone().requires_grad_()
    with torch.no_grad():
        got = ops.linear_generator_loss(hs, S[1], T[0], T[1], A[0], A[1], reduction="sum")
    assert not got.requires_grad and torch.equal(got, want)


def test_cpu_autocast_matches_the_unfused_path_under_autocast():
    """Under autocast the heads run in bf16, as nn.Linear does; float32 params get
    float32 gradients."""
    S, T, A = problem(10, 41, seed=70)
    w = weights(10, zero=[3])
    g = grad_out("sum", 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = unfused_gen(S, T, A, w, 1.0, 1.0, "sum", g)
        got = fused_gen(S, T, A, w, 1.0, 1.0, "sum", g, chunk_size=4)
    assert got[0].dtype == torch.float32
    # the unfused dW is a bf16 matmul cast to float32; the fused one sums in float32
    assert_same(got, want, torch.bfloat16, grad_dtype=torch.float32)


# ---------------------------------------------------------------- chunking

class _Spy:
    """Stands in for the kernel namespace and records the rows of every call."""

    def __init__(self, inner):
        self.inner, self.rows = inner, []

    def __getattr__(self, name):
        op = getattr(self.inner, name)

        def call(*a, **k):
            if not name.endswith("backward"):
                self.rows.append(a[0].shape[0])
            return op(*a, **k)
        return call


def test_chunk_size_override_and_budget(monkeypatch):
    spy = _Spy(torch.ops.dmmd_ext)
    monkeypatch.setattr(FH, "kernels", lambda: spy)
    S, T, A = problem(13, 40, seed=80)
    args = (S[0], S[1], T[0], T[1], A[0], A[1])
    ops.linear_generator_loss(*args, chunk_size=5)
    assert spy.rows == [5, 5, 3]
    spy.rows.clear()
    # 4 float32 blocks of V = 40 per row: 640 B a row, a budget of 3 rows -> 3 (< 8: not rounded)
    ops.linear_generator_loss(*args, memory_budget=3 * 640 + 1)
    assert spy.rows == [3, 3, 3, 3, 1]
    spy.rows.clear()
    ops.linear_generator_loss(*args)  # the default budget holds all 13 rows
    assert spy.rows == [13]


def test_chunk_rows():
    MiB = 1 << 20
    # V = 50257 float32, 4 blocks: 804 KB a row; CPU's 32 MiB holds 41 rows, below the
    # default floor of DEFAULT_MIN_ROWS["cpu"] = 128 rows, which wins; an explicit
    # budget of 32 MiB is a hard limit: 41 -> 40 (a multiple of 8)
    assert FH.chunk_rows(16384, 50257, torch.float32, 4) == FH.DEFAULT_MIN_ROWS["cpu"] == 128
    assert FH.chunk_rows(16384, 50257, torch.float32, 4, memory_budget=32 * MiB) == 40
    # V = 256: the budget's 8192 rows, above the floor
    assert FH.chunk_rows(16384, 256, torch.float32, 4) == 8192
    # CUDA's 512 MiB, bf16 at V = 128256 (float32 products without copies): 1 MB a row
    if FH._MM_OUT_DTYPE:
        assert FH.chunk_rows(8192, 128256, torch.bfloat16, 4, device="cuda") == 520
    assert FH.chunk_rows(30, 50257, torch.float32, 4) == 30  # at most n
    assert FH.chunk_rows(10, 50257, torch.float32, 4, memory_budget=MiB) == 1
    # bf16 on CPU adds a float32 copy of dlogits: 4 * 2 + 4 = 12 B per class and row
    assert FH.chunk_rows(10**6, 1000, torch.bfloat16, 4, memory_budget=12000 * 64) == 64
    with pytest.raises(ValueError, match="memory_budget: expected a number of bytes > 0"):
        FH.chunk_rows(10, 10, torch.float32, 4, memory_budget=0)


def test_empty_batch():
    S, T, A = problem(0, 9, seed=90)
    hs, ws, bs = leaves(*S)
    loss = ops.linear_generator_loss(hs, ws, T[0], T[1], A[0], A[1], b_student=bs,
                                     reduction="sum")
    loss.backward()
    assert loss.item() == 0 and hs.grad.shape == (0, 8) and (ws.grad == 0).all()


# ---------------------------------------------------------------- torch.compile

@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_torch_compile_matches_eager(backend):
    S, T, A = problem(10, 33, seed=100)
    ids = torch.randint(0, 33, (10,), generator=torch.Generator().manual_seed(101))
    w = weights(10, zero=[3])

    def step(hs, ws, ha, wa):
        return (ops.linear_generator_loss(hs, ws, T[0], T[1], ha.detach(), wa.detach(), w, 0.9,
                                          0.8, reduction="sum", chunk_size=4)
                + ops.linear_auxiliary_loss(ha, wa, T[0], T[1], ids, w, 0.9, 0.8,
                                            reduction="mean", chunk_size=3))

    torch._dynamo.reset()
    compiled = torch.compile(step, backend=backend, fullgraph=True)
    out = {}
    for name, fn in (("eager", step), ("compiled", compiled)):
        xs = leaves(S[0], S[1], A[0], A[1])
        loss = fn(*xs)
        loss.backward()
        out[name] = [loss.detach()] + grads(*xs)
    for e, c in zip(out["eager"], out["compiled"]):
        torch.testing.assert_close(c, e, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- errors

def test_argument_errors():
    S, T, A = problem(4, 10, seed=110)
    hs, ws, _ = S
    ht, wt, _ = T
    ha, wa, _ = A
    gen = ops.linear_generator_loss
    with pytest.raises(ValueError, match="w_teacher: vocabulary size 9 differs from w_student's 10"):
        gen(hs, ws, ht, wt[:9], ha, wa)
    with pytest.raises(ValueError, match="w_student: vocabulary size 11 differs from w_aux.s 10"):
        ops.linear_auxiliary_loss(ha, wa, ht, wt, (hs, torch.cat([ws, ws[:1]])))
    with pytest.raises(ValueError, match=r"w_aux: expected shape \[V, 20\]"):
        gen(hs, ws, ht, wt, ha, wa[:, :19])
    with pytest.raises(ValueError, match=r"b_student: expected shape \[10\]"):
        gen(hs, ws, ht, wt, ha, wa, b_student=torch.zeros(9))
    with pytest.raises(ValueError, match=r"h_teacher: expected leading dims \(4,\)"):
        gen(hs, ws, ht[:3], wt, ha, wa)
    with pytest.raises(ValueError, match="w_student: expected dtype torch.float32"):
        gen(hs, ws.double(), ht, wt, ha, wa)
    with pytest.raises(ValueError, match="h_aux: expected dtype torch.float32"):
        gen(hs, ws, ht, wt, ha.bfloat16(), wa.bfloat16())
    with pytest.raises(ValueError, match="h_student: expected a floating-point dtype"):
        gen(hs.long(), ws, ht, wt, ha, wa)
    with pytest.raises(ValueError, match="h_student: expected hidden states of shape"):
        gen(hs[0, 0], ws[:, :1], ht, wt, ha, wa)
    with pytest.raises(ValueError, match=r"weight: expected shape \(4,\)"):
        gen(hs, ws, ht, wt, ha, wa, torch.ones(5))
    with pytest.raises(ValueError, match="reduction: expected one of"):
        gen(hs, ws, ht, wt, ha, wa, reduction="avg")
    with pytest.raises(ValueError, match="chunk_size: expected an int >= 1"):
        gen(hs, ws, ht, wt, ha, wa, chunk_size=0)
    aux = ops.linear_auxiliary_loss
    with pytest.raises(ValueError, match=r"target: expected int64 ids of shape \(4,\)"):
        aux(ha, wa, ht, wt, torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"target: expected logits of shape \(4, 10\)"):
        aux(ha, wa, ht, wt, torch.zeros(4, 9))
    with pytest.raises(ValueError, match="target: expected logits of dtype torch.float32"):
        aux(ha, wa, ht, wt, torch.zeros(4, 10, dtype=torch.float64))
    with pytest.raises(ValueError, match="target: a student head is"):
        aux(ha, wa, ht, wt, (hs,))
    with pytest.raises(RuntimeError, match=r"target_ids: token ids must lie in \[0, 10\)"):
        aux(ha, wa, ht, wt, torch.tensor([0, 1, 10, 2]))


# ---------------------------------------------------------------- model interface

def test_head_params_and_has_fused_head():
    from dmmd_ext.models.transformer import Transformer, TransformerConfig

    m = Transformer(TransformerConfig(vocab_in=6, vocab_out=5, max_len=4, d_model=8,
                                      n_layers=1, n_heads=2))
    assert FH.has_fused_head(m)
    w, b = FH.head_params(m)
    assert w is m.head.weight and b is m.head.bias

    class Pair(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(5, 8))
            self.head = (self.w, None)

        def hidden(self, z, t, noise=None):
            return torch.zeros(*z.shape, 8)

    assert FH.has_fused_head(Pair()) and FH.head_params(Pair())[1] is None
    assert not FH.has_fused_head(torch.nn.Linear(2, 2))  # no hidden()
    with pytest.raises(ValueError, match="needs model.head as an nn.Linear"):
        FH.head_params(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------- the trainer

def _distill(run_dir, fused_head, target, monkeypatch, student_factory=None):
    """A few distillation iterations on a tiny masked teacher; returns the logged
    losses, the student's weights and how often each fused op was called."""
    from dmmd_ext.data.hmm import hmm_dataset
    from dmmd_ext.distill import DistillConfig, distill
    from dmmd_ext.models.transformer import Transformer, TransformerConfig
    from dmmd_ext.processes import make_process
    from safetensors.torch import load_file

    calls = {"linear_generator_loss": 0, "linear_auxiliary_loss": 0}
    for name in calls:
        def counted(*a, _name=name, _op=getattr(ops, name), **k):
            calls[_name] += 1
            return _op(*a, **k)
        monkeypatch.setattr(ops, name, counted)
    ds = hmm_dataset("toy", n_train=200, n_val=20, entropy_samples=200)
    proc = make_process("masked", ds.vocab_size)
    torch.manual_seed(0)
    teacher = Transformer(TransformerConfig(vocab_in=proc.input_vocab_size,
                                            vocab_out=ds.vocab_size, max_len=ds.seq_len,
                                            d_model=16, n_layers=1, n_heads=2, time_cond="add"))
    with torch.no_grad():  # logits of scale ~1, so that the losses are not ~0
        teacher.head.weight.normal_(0, 0.5)
    cfg = DistillConfig(k=2, steps=6, batch_size=8, lr=1e-3, top_p=0.8, target=target, ema=0.0,
                        log_every=1, save_every=0, progress=False, device="cpu",
                        fused_head=fused_head)
    distill(teacher, proc, ds, cfg, run_dir, student_factory=student_factory)
    logs = [json.loads(line) for line in open(run_dir / "log.jsonl")]
    weights = load_file(str(run_dir / "checkpoint" / "model.safetensors"))
    return logs, weights, calls


@pytest.mark.parametrize("target", ["hard", "soft"])
def test_distill_fused_head_matches_plain(tmp_path, monkeypatch, target, one_thread):
    monkeypatch.setitem(FH.DEFAULT_MEMORY_BUDGET, "cpu", 1000)  # chunks of a few rows
    fused = _distill(tmp_path / "fused", True, target, monkeypatch)
    monkeypatch.undo()
    plain = _distill(tmp_path / "plain", False, target, monkeypatch)
    assert all(n > 0 for n in fused[2].values()) and not any(plain[2].values())
    keys = ("gen_loss", "aux_loss", "gen_grad_norm", "aux_grad_norm")
    for f, p in zip(fused[0], plain[0], strict=True):
        for k in keys:
            if k in p:
                assert f[k] == pytest.approx(p[k], rel=1e-4, abs=1e-6), (f["step"], k)
    assert abs(plain[0][0]["gen_loss"]) > 1e-3  # the comparison is not of zeros
    for k, v in plain[1].items():
        torch.testing.assert_close(fused[1][k], v, rtol=1e-4, atol=1e-5, msg=k)


def test_distill_fused_head_errors_and_auto_fallback(tmp_path, monkeypatch):
    import copy

    from dmmd_ext.distill import DistillConfig

    class NoHidden(torch.nn.Module):  # a student without the fused-head interface
        def __init__(self, m):
            super().__init__()
            self.m, self.d_noise = m, 0

        def forward(self, z, t, noise=None):
            return self.m(z, t, noise)

    factory = lambda teacher, d_noise: NoHidden(copy.deepcopy(teacher))  # noqa: E731
    with pytest.raises(ValueError, match="fused_head=True: the student network"):
        _distill(tmp_path / "a", True, "hard", monkeypatch, student_factory=factory)
    _, _, calls = _distill(tmp_path / "b", "auto", "hard", monkeypatch, student_factory=factory)
    assert not any(calls.values())
    with pytest.raises(ValueError, match="fused_head: expected 'auto', True or False"):
        DistillConfig(fused_head="on")


def test_second_backward_through_the_graph_is_refused():
    """sum/mean scale their saved gradients in place: a retain_graph rerun must fail
    loudly, not scale twice."""
    S, T, A = problem(6, 11, seed=120)
    hs, ws, bs = leaves(*S)
    loss = ops.linear_generator_loss(hs, ws, T[0], T[1], A[0], A[1], reduction="sum")
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_fused_head_is_off_under_fsdp():
    # the heads' weights stay sharded outside forward under FSDP: 'auto' falls
    # back to the plain losses, True is refused with the reason
    from dmmd_ext.distill.trainer import _use_fused_head
    from dmmd_ext.models.transformer import Transformer, TransformerConfig

    def tiny():
        return Transformer(TransformerConfig(vocab_in=6, vocab_out=5, max_len=4, d_model=8,
                                             n_layers=1, n_heads=2))
    nets = {"teacher": tiny(), "student": tiny(), "aux": tiny()}
    assert _use_fused_head("auto", nets) is True
    assert _use_fused_head("auto", nets, fsdp=True) is False
    with pytest.raises(ValueError, match="fused_head=True: not supported with parallel='fsdp'"):
        _use_fused_head(True, nets, fsdp=True)
