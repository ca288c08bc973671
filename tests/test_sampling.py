"""sample_categorical: kernel vs reference (same Philox words), statistics
that do not use the reference, edge cases, errors, registration, parity."""

import math
import subprocess
import sys

import pytest
import torch
from scipy import stats

import dmmd_ext  # noqa: F401
from dmmd_ext import ops, reference
from conftest import NEUTRAL_CWD, child_env

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
INF, NAN = float("inf"), float("nan")


def _logits(n, V, dtype, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, V, generator=g) * scale).to(dtype)


def _agree(got, want, margin, min_rate=0.999, tie=1e-4):
    """Exact where the two best float64 scores are >= tie apart; >= min_rate overall."""
    clear = margin > tie
    assert torch.equal(got[clear], want[clear])
    assert (got == want).double().mean().item() >= min_rate


# ---- agreement with the reference ------------------------------------------------------

KNOBS = [  # temperature, top_k, top_p, exclude
    (1.0, 0, 1.0, -1), (0.7, 0, 1.0, 3), (1.3, 5, 1.0, -1), (1.0, 0, 0.9, -1),
    (0.5, 7, 0.8, 0), (2.0, 1, 1.0, -1), (1.0, 0, 0.05, -1), (1.0, 1000, 0.999, 2),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("knobs", KNOBS)
@pytest.mark.parametrize("V", [1, 2, 37, 300])
def test_matches_reference(dtype, knobs, V):
    T, k, p, ex = knobs
    ex = ex if ex < V else -1
    l = _logits(400, V, dtype, seed=V)
    got = ops.sample_categorical(l, T, k, p, exclude=ex, seed=11, offset=12)
    want, margin = reference.sample_categorical(l, T, k, p, exclude=ex, seed=11, offset=12,
                                                return_margin=True)
    assert got.dtype == torch.int64 and got.shape == (400,)
    _agree(got, want, margin)


@pytest.mark.parametrize("knobs", [(1.0, 0, 1.0), (0.9, 50, 1.0), (1.0, 0, 0.9), (1.0, 40, 0.95)])
def test_matches_reference_large_vocab(knobs):
    T, k, p = knobs
    l = _logits(6, 50257, torch.float32, seed=1, scale=4.0)
    got = ops.sample_categorical(l, T, k, p, seed=3)
    want, margin = reference.sample_categorical(l, T, k, p, seed=3, return_margin=True)
    assert got.shape == (6,) and bool(((got >= 0) & (got < 50257)).all())
    _agree(got, want, margin, min_rate=1.0)


def test_leading_dims_and_offset_streams():
    l = _logits(24, 17, torch.float32).reshape(2, 3, 4, 17)
    a = ops.sample_categorical(l, seed=5, offset=0)
    assert a.shape == (2, 3, 4)
    want, margin = reference.sample_categorical(l, seed=5, offset=0, return_margin=True)
    _agree(a.reshape(-1), want.reshape(-1), margin.reshape(-1), min_rate=1.0)
    # another offset block or seed gives other draws; the same ones repeat
    assert torch.equal(a, ops.sample_categorical(l, seed=5, offset=0))
    flat = torch.zeros(2000, 17)
    assert not torch.equal(ops.sample_categorical(flat, seed=5, offset=0),
                           ops.sample_categorical(flat, seed=5, offset=4))


# ---- mask, layout, empty ---------------------------------------------------------------

def test_mask_rows_return_minus_one_and_leave_others():
    l = _logits(50, 30, torch.float32)
    m = torch.rand(50, generator=torch.Generator().manual_seed(2)) < 0.5
    full = ops.sample_categorical(l, seed=9)
    part = ops.sample_categorical(l, mask=m, seed=9)
    assert bool((part[~m] == -1).all())
    assert torch.equal(part[m], full[m])
    # masked-out rows are not read: NaN there changes nothing
    l2 = l.clone()
    l2[~m] = NAN
    assert torch.equal(ops.sample_categorical(l2, mask=m, seed=9), part)


@pytest.mark.parametrize("layout", ["transposed", "strided_v", "expanded", "sliced_rows"])
def test_non_contiguous(layout):
    base = _logits(64, 41, torch.float32, seed=4)
    if layout == "transposed":
        l = base.t().contiguous().t()
    elif layout == "strided_v":
        l = torch.repeat_interleave(base, 2, dim=1)[:, ::2]
    elif layout == "expanded":
        l = base[:1].expand(64, 41)
    else:
        l = torch.cat([base, base], dim=0)[::2]
    assert not l.is_contiguous()
    for k, p in [(0, 1.0), (5, 0.9)]:
        got = ops.sample_categorical(l, 0.9, k, p, seed=21)
        assert torch.equal(got, ops.sample_categorical(l.contiguous(), 0.9, k, p, seed=21))


def test_empty_inputs():
    assert ops.sample_categorical(torch.empty(0, 5), seed=0).shape == (0,)
    assert ops.sample_categorical(torch.empty(3, 0, 7), seed=0).shape == (3, 0)
    assert ops.sample_categorical(torch.empty(0, 0), seed=0).shape == (0,)
    one = ops.sample_categorical(torch.randn(6), seed=0)
    assert one.dim() == 0 and 0 <= one.item() < 6


# ---- edge values -------------------------------------------------------------------------

def test_nan_and_empty_support_rows():
    l = torch.randn(6, 8)
    l[0, 3] = NAN                      # NaN row -> -1
    l[1] = -INF                        # no finite logit -> -1
    l[2] = -INF
    l[2, 4] = 0.0                      # only class 4 remains -> exclude it -> -1
    l[3, 4] = NAN                      # NaN only in the excluded class: row is fine
    l[4] = -INF
    l[4, 6] = 1.0                      # single finite class -> always 6
    for k, p in [(0, 1.0), (3, 0.5)]:
        out = ops.sample_categorical(l, top_k=k, top_p=p, exclude=4, seed=1)
        assert out[0] == -1 and out[1] == -1 and out[2] == -1
        assert 0 <= out[3] < 8 and out[3] != 4
        assert out[4] == 6
        assert torch.equal(out, reference.sample_categorical(l, 1.0, k, p, exclude=4, seed=1))


@pytest.mark.parametrize("k,p", [(0, 1.0), (1, 1.0), (2, 0.3)])
def test_plus_inf_classes_win_uniformly(k, p):
    # two +inf classes among finite ones: the draw is uniform over {2, 5}.
    n = 20000
    row = torch.tensor([3.0, 1e4, INF, -1.0, 0.0, INF, 50.0])
    out = ops.sample_categorical(row.expand(n, 7), top_k=k, top_p=p, seed=8)
    assert set(out.unique().tolist()) == {2, 5}
    frac = (out == 2).double().mean().item()
    assert abs(frac - 0.5) < 6 * math.sqrt(0.25 / n)  # 6 sigma: false alarm ~2e-9
    assert torch.equal(out, reference.sample_categorical(row.expand(n, 7), 1.0, k, p, seed=8))


def test_extreme_finite_logits():
    l = torch.tensor([[1e4, 1e4 - 30.0, -1e4], [-1e4, -1e4, -1e4]])
    out = ops.sample_categorical(l.expand(2, 3).repeat(500, 1), seed=3).reshape(500, 2)
    assert bool((out[:, 0] == 0).all())          # 30 logits ahead: e^-30 never shows in 500
    assert set(out[:, 1].tolist()) == {0, 1, 2}  # equal logits at -1e4: all three drawn


def test_ties_kept_at_top_k_and_top_p_thresholds():
    n = 30000
    row = torch.tensor([5.0, 1.0, 5.0, 0.0, 5.0, 2.0])
    for kw in [dict(top_k=1), dict(top_k=2), dict(top_p=0.01), dict(top_k=3, top_p=0.5)]:
        out = ops.sample_categorical(row.expand(n, 6), seed=13, **kw)
        assert set(out.unique().tolist()) == {0, 2, 4}, kw
        counts = torch.bincount(out, minlength=6)[[0, 2, 4]].double()
        # chi-square, df = 2: P(chi2 > 18.4) = 1e-4
        chi2 = ((counts - n / 3) ** 2 / (n / 3)).sum().item()
        assert chi2 < 18.4, (kw, counts)


# ---- statistics without the reference ----------------------------------------------------

def _chi2_pvalue(out, probs):
    n = out.numel()
    counts = torch.bincount(out, minlength=probs.numel()).double()
    support = probs > 0
    assert counts[~support].sum() == 0, "drew a class outside the support"
    return stats.chisquare(counts[support].numpy(), (probs[support] * n).numpy()).pvalue


def _nucleus(probs, top_p):
    srt, idx = probs.sort(descending=True)
    cum = srt.cumsum(0)
    j = int((cum < top_p * cum[-1]).sum())
    keep = probs >= srt[j]
    return keep


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("knobs", [(1.0, 0, 1.0, -1), (0.6, 0, 1.0, 2), (1.5, 4, 1.0, -1),
                                   (1.0, 0, 0.7, -1), (0.8, 6, 0.9, 0)])
def test_frequencies_match_softmax(dtype, knobs):
    # 100k draws of one row; chi-square p-value > 1e-3 (false-alarm rate 0.1% per case,
    # fixed seeds make the outcome reproducible).
    T, k, p, ex = knobs
    n, V = 100_000, 12
    row = (torch.linspace(-2.0, 2.5, V) + torch.tensor([0.3, -0.2] * 6)).to(dtype)
    out = ops.sample_categorical(row.expand(n, V), T, k, p, exclude=ex, seed=17)
    x = row.double() / T
    allowed = torch.ones(V, dtype=torch.bool)
    if ex >= 0:
        allowed[ex] = False
    x = torch.where(allowed, x, -INF)
    if k:
        allowed &= x >= x.topk(k).values[-1]
    probs = torch.where(allowed, torch.softmax(torch.where(allowed, x, -INF), 0), 0.0)
    if p < 1:
        allowed &= _nucleus(probs, p)
        probs = torch.where(allowed, probs, 0.0)
        probs = probs / probs.sum()
    assert _chi2_pvalue(out, probs) > 1e-3
    if ex >= 0:
        assert not bool((out == ex).any())


def test_excluded_and_filtered_classes_never_drawn():
    l = _logits(3000, 64, torch.float32, seed=6)
    out = ops.sample_categorical(l, 1.0, 5, 0.8, exclude=7, seed=2)
    x = l.clone()
    x[:, 7] = -INF
    kth = x.topk(5, dim=1).values[:, -1:]
    assert not bool((out == 7).any())
    assert bool((l.gather(1, out[:, None]) >= kth).all())


def test_moderate_gap_rate():
    # two-class race, class 1 is 8 logits behind: p = 1 / (1 + e^8) = 3.35e-4.
    # 2M draws, expected 671; 6-sigma band (false alarm ~2e-9). The tail proper
    # (gaps of 17 to 45) is covered by the crafted-bits tests in test_noise.py.
    n = 2_000_000
    row = torch.tensor([8.0, 0.0])
    out = ops.sample_categorical(row.expand(n, 2), seed=99)
    p = 1.0 / (1.0 + math.exp(8.0))
    hits = (out == 1).sum().item()
    assert abs(hits - n * p) < 6 * math.sqrt(n * p * (1 - p)), hits


def test_generator_reproducible_and_advances():
    l = _logits(200, 20, torch.float32)
    g1 = torch.Generator().manual_seed(42)
    g2 = torch.Generator().manual_seed(42)
    a = ops.sample_categorical(l, generator=g1)
    assert torch.equal(a, ops.sample_categorical(l, generator=g2))
    assert not torch.equal(a, ops.sample_categorical(l, generator=g1))


ISA_CASES = [(2, 1.0, 0, 1.0), (37, 1.0, 0, 1.0), (300, 0.8, 0, 1.0), (2053, 1.0, 0, 1.0),
             (300, 1.0, 9, 1.0), (2053, 1.2, 0, 0.9)]  # V, temperature, top_k, top_p


def isa_samples(path=None):
    """Samples for ISA_CASES (Gumbel pairs batched in many lengths), checked
    against the reference; saved to path when given (for the parent process)."""
    outs = []
    for V, T, k, p in ISA_CASES:
        l = _logits(64, V, torch.float32, seed=V, scale=1.0)
        got = ops.sample_categorical(l, T, k, p, seed=5, offset=8)
        want, margin = reference.sample_categorical(l, T, k, p, seed=5, offset=8,
                                                    return_margin=True)
        _agree(got, want, margin)
        outs.append(got)
    if path is not None:
        torch.save(outs, path)
    return outs


@pytest.mark.parametrize("isa", ["avx2", "scalar"])
def test_narrower_simd_paths_match_widest_bitwise(isa, tmp_path):
    # DMMD_EXT_CPU_ISA caps the Philox path (cpu/philox_simd.h) once per
    # process, so the narrower ones run in a child; every draw must be equal.
    path = tmp_path / f"{isa}.pt"
    code = f"import test_sampling as t; t.isa_samples({str(path)!r})"
    r = subprocess.run([sys.executable, "-c", code], cwd=NEUTRAL_CWD, capture_output=True,
                       text=True, timeout=300, env=child_env(DMMD_EXT_CPU_ISA=isa))
    assert r.returncode == 0, r.stderr[-3000:]
    for got, want in zip(torch.load(path), isa_samples()):
        assert torch.equal(got, want)


# ---- errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("kw,match", [
    (dict(temperature=0.0), r"temperature: expected a finite value >= 1e-300 .*got 0"),
    (dict(temperature=1e-301), "temperature: expected a finite value >= 1e-300"),
    (dict(temperature=-1.0), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature=float("inf")), "temperature"),
    # (temperature 1e-50 is accepted now: the row maximum is removed before dividing)
    (dict(top_p=0.0), r"top_p: expected a value in \(0, 1\] \(1 = off\), got 0"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_k=-1), "top_k: expected >= 0"),
    (dict(exclude=5), r"exclude: expected -1 \(none\) or a class id in \[0, 5\), got 5"),
    (dict(exclude=-2), "exclude"),
    (dict(mask=torch.ones(4, dtype=torch.bool)), r"mask: expected shape \[3\]"),
    (dict(mask=torch.ones(3)), "mask: expected dtype bool"),
])
def test_errors(kw, match):
    with pytest.raises(RuntimeError, match=match):
        ops.sample_categorical(torch.randn(3, 5), seed=0, **kw)


def test_errors_dtype_and_shape():
    with pytest.raises(RuntimeError, match="logits: expected dtype in"):
        ops.sample_categorical(torch.randn(3, 5).double(), seed=0)
    with pytest.raises(RuntimeError, match="logits: expected V"):
        ops.sample_categorical(torch.empty(3, 0), seed=0)
    with pytest.raises(RuntimeError, match="logits: expected a tensor"):
        ops.sample_categorical(torch.tensor(1.0), seed=0)
    with pytest.raises(ValueError, match="offset"):
        ops.sample_categorical(torch.randn(3, 5), seed=0, offset=-4)
    with pytest.raises(RuntimeError, match="offset"):  # the op's own check
        torch.ops.dmmd_ext.sample_categorical(torch.randn(3, 5), seed=0, offset=-4)


# ---- registration -----------------------------------------------------------------------

def test_opcheck():
    l = _logits(8, 33, torch.float32)
    m = torch.rand(8) < 0.7
    for args in [(l, 1.0, 0, 1.0, None, -1, None, 3, 0), (l, 0.8, 4, 0.9, m, 2, None, 3, 8)]:
        torch.library.opcheck(torch.ops.dmmd_ext.sample_categorical.default, args)


def test_compile_matches_eager():
    l = _logits(16, 50, torch.float32)

    def f(t):
        return ops.sample_categorical(t * 1.5, 0.9, 10, 0.95, seed=77, offset=4) + 1

    torch._dynamo.reset()
    got = torch.compile(f, fullgraph=True)(l)
    assert torch.equal(got, f(l))


# ---- CUDA -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("V", [1, 7, 256, 1000, 50257])
@pytest.mark.parametrize("knobs", KNOBS)
def test_cuda_matches_cpu_bitwise(kb, dtype, V, knobs):
    T, k, p, ex = knobs
    ex = ex if ex < V else -1
    n = 8 if V > 10000 else 300
    l = _logits(n, V, dtype, seed=V)
    l[0, 0] = NAN
    if V > 2:
        l[1, :2] = INF
        l[2] = -INF
    m = torch.rand(n, generator=torch.Generator().manual_seed(1)) < 0.9
    cpu = ops.sample_categorical(l, T, k, p, mask=m, exclude=ex, seed=123, offset=8)
    dev = kb.call(ops.sample_categorical, l, T, k, p, mask=m, exclude=ex, seed=123, offset=8)
    assert torch.equal(dev, cpu)


@pytest.mark.simt_edge
@pytest.mark.parametrize("V", [1, 2, 3, 129, 2049])
def test_cuda_edge_rows(kb, V):
    """Odd V, V = 1, strided rows, empty batches, +-inf/NaN rows, selection at the edges."""
    l = _logits(12, V, torch.float32, seed=V + 5)
    l[0] = -INF
    l[1, 0] = NAN
    l[2, -1] = INF
    l[3] = 0.0  # all tied
    strided = _logits(V, 12, torch.float16, seed=3).t()  # column stride 12
    for logits in (l, strided, l[::2], l[:0]):
        for k, p in [(0, 1.0), (1, 1.0), (V, 1.0), (max(V - 1, 1), 0.5), (0, 1e-6), (2, 0.999999)]:
            cpu = ops.sample_categorical(logits, 1.0, k, p, seed=8, offset=4)
            dev = kb.call(ops.sample_categorical, logits, 1.0, k, p, seed=8, offset=4)
            assert torch.equal(dev, cpu), (tuple(logits.shape), k, p)


@pytest.mark.parametrize("V", [300, 3000])
def test_cuda_top_k_then_top_p(kb, V):
    """Regression: select_top_k returned sh.prefix after its last barrier while
    select_top_p's thread 0 reset it, so slow warps built the nucleus from
    classes outside the top k (found by the emulator in every fiber order)."""
    l = _logits(64, V, torch.float32, seed=11)
    for k, p in [(20, 0.9), (5, 0.5), (200, 0.99)]:
        cpu = ops.sample_categorical(l, 1.0, k, p, seed=3)
        assert torch.equal(kb.call(ops.sample_categorical, l, 1.0, k, p, seed=3), cpu), (k, p)


def test_cuda_non_contiguous_and_generator(kb):
    base = _logits(64, 300, torch.float16, seed=2)
    l = base.t().contiguous().t()
    assert torch.equal(kb.call(ops.sample_categorical, l, 1.0, 9, 0.9, seed=4),
                       kb.call(ops.sample_categorical, base, 1.0, 9, 0.9, seed=4))
    g = kb.generator(3)
    a = kb.call(ops.sample_categorical, base, generator=g)
    b = kb.call(ops.sample_categorical, base, generator=g)
    assert not torch.equal(a, b)


def test_cuda_frequencies_match_softmax(kb):
    n, V = (100_000 if not kb.emulated else 30_000), 12
    row = torch.linspace(-2.0, 2.5, V)
    out = kb.call(ops.sample_categorical, row.expand(n, V), 0.8, seed=17)
    assert _chi2_pvalue(out, torch.softmax(row.double() / 0.8, 0)) > 1e-3
