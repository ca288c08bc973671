"""Edge cases of the CPU row sampler's selection path (csrc/cpu/sample_row.h:
order keys, block-maxima bound for top-k, batched Philox) against the
reference: k at and around V and the block size, ties at the threshold,
-inf entries, rows with fewer finite classes than k, NaN in and out of the
excluded class, +inf, signed zeros, sorted rows, bf16/fp16, strided rows.

Agreement is exact wherever the two best float64 reference scores are more
than 1e-4 apart (the kernel scores in float32), as in test_sampling.py; every
draw must also lie in the reference's kept set."""

import pytest
import torch

import dmmd_ext  # noqa: F401
from dmmd_ext import ops, reference
from dmmd_ext.reference.sampling import keep_set

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
INF, NAN = float("inf"), float("nan")


def _logits(n, V, dtype=torch.float32, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, V, generator=g) * scale).to(dtype)


def _check(l, T=1.0, k=0, p=1.0, exclude=-1, seed=7, offset=0, min_rate=0.999):
    """Kernel vs reference on logits l [N, V]; returns the kernel's draws."""
    got = ops.sample_categorical(l, T, k, p, exclude=exclude, seed=seed, offset=offset)
    want, margin = reference.sample_categorical(l, T, k, p, exclude=exclude, seed=seed,
                                                offset=offset, return_margin=True)
    clear = margin > 1e-4
    assert torch.equal(got[clear], want[clear]), (T, k, p, exclude)
    assert (got == want).double().mean().item() >= min_rate
    # every valid draw is a kept class (ties at the thresholds kept)
    x = l.float() / torch.tensor(T, dtype=torch.float32)
    if exclude >= 0:
        x[:, exclude] = -INF
    x = torch.where(torch.isnan(x), torch.full_like(x, -INF), x)
    has_inf = (x == INF).any(1, keepdim=True)
    keep = torch.where(has_inf, x == INF, keep_set(x, k, p))
    ok = got >= 0
    assert bool(keep[ok.nonzero().squeeze(1), got[ok]].all())
    return got


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("V", [63, 64, 65, 257, 4099])
def test_top_k_around_v_and_block_size(dtype, V):
    l = _logits(48 if V < 1000 else 12, V, dtype, seed=V)
    for k in sorted({1, 2, 63, 64, 65, V // 4, V - 1, V, V + 5}):
        for T in (1.0, 0.7):
            _check(l, T, k, exclude=(k * 7) % V if k % 2 else -1)
    _check(l, 0.9, 50, 0.8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_vocab_dtypes_and_strides(dtype):
    V = 50257
    l = _logits(4, V, dtype, seed=3, scale=4.0)
    strided = torch.repeat_interleave(l, 2, dim=1)[:, ::2]
    assert not strided.is_contiguous()
    for k, p in [(1, 1.0), (50, 1.0), (4000, 1.0), (V - 1, 1.0), (V, 1.0), (0, 0.9), (40, 0.95)]:
        got = _check(l, 1.0, k, p, min_rate=1.0)
        assert torch.equal(got, ops.sample_categorical(strided, 1.0, k, p, seed=7))


def test_ties_at_the_top_k_threshold():
    # integer logits: long runs of equal values across blocks; the k-th value is
    # tied with many classes, all of them kept
    g = torch.Generator().manual_seed(5)
    l = torch.randint(-4, 5, (64, 1000), generator=g).float()
    for k in [1, 10, 50, 333, 999]:
        got = _check(l, 1.0, k)
        kth = l.topk(k, 1).values[:, -1]
        assert bool((l.gather(1, got[:, None]).squeeze(1) >= kth).all())
    # all classes equal: top-k keeps everything, so all classes are drawn
    flat = torch.zeros(3000, 70)
    out = _check(flat, 1.0, 3)
    assert out.unique().numel() == 70


def test_neg_inf_and_fewer_finite_classes_than_k():
    V, k = 300, 5
    l = _logits(90, V, seed=8)
    for i in range(90):
        m = i % 9  # finite classes in the row: 0 .. 8 (k - 1, k, k + 1 included)
        keep = torch.randperm(V, generator=torch.Generator().manual_seed(i))[:m]
        row = torch.full((V,), -INF)
        row[keep] = l[i, keep]
        l[i] = row
    got = _check(l, 1.0, k, min_rate=1.0)
    n_fin = torch.isfinite(l).sum(1)
    assert bool((got[n_fin == 0] == -1).all()) and bool((got[n_fin > 0] >= 0).all())
    assert bool(torch.isfinite(l[n_fin > 0].gather(1, got[n_fin > 0, None])).all())
    _check(l, 1.0, k, 0.7, min_rate=1.0)


@pytest.mark.parametrize("V", [70, 50257])
def test_nan_in_and_out_of_the_excluded_class(V):
    l = _logits(4, V, seed=2)
    l[0, 5] = NAN   # excluded class only: the row is valid
    l[1, 6] = NAN   # another class: -1
    l[2, V - 1] = NAN  # last class (tail of the last block): -1
    for k, p in [(0, 1.0), (3, 1.0), (0, 0.5), (10, 0.9)]:
        got = _check(l, 1.0, k, p, exclude=5, min_rate=1.0)
        assert got[0] >= 0 and got[0] != 5 and got[1] == -1 and got[2] == -1 and got[3] >= 0


def test_only_excluded_class_finite_and_plus_inf_rows():
    V = 200
    l = torch.full((3, V), -INF)
    l[0, 17] = 1.0  # only finite class is excluded -> -1
    l[1] = _logits(1, V, seed=4)[0]
    l[1, [3, 150]] = INF  # +inf classes: uniform among them, top-k moot
    l[2] = _logits(1, V, seed=5)[0]
    l[2, 17] = INF  # +inf only in the excluded class: ordinary top-k row
    for k in [0, 1, 2, 50]:
        got = _check(l, 1.0, k, exclude=17, min_rate=1.0)
        assert got[0] == -1 and got[1] in (3, 150) and got[2] not in (-1, 17)


def test_huge_logits():
    big = torch.tensor([[3e38, -3e38, 3e38, 0.0, -1e30] * 13]).repeat(200, 1)
    _check(big, 1.0, 2)
    _check(big, 1.0, 30, 0.5)


def test_signed_zero_tie_at_the_threshold():
    # -0.0 and +0.0 are equal floats: a +0.0 threshold keeps both (keys fold -0.0)
    l = torch.zeros(400, 40)
    l[:, ::2] = -0.0
    _check(l, 1.0, 7)


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_sorted_rows(order):
    # sorted rows put the top k in few blocks (ascending: the last ones)
    l = _logits(4, 50257, seed=6).sort(1, descending=order == "descending").values
    for k, p in [(1, 1.0), (50, 1.0), (2000, 1.0), (50, 0.9)]:
        _check(l, 1.0, k, p, min_rate=1.0)


@pytest.mark.parametrize("V", [1, 63, 64, 65, 129, 1000])
def test_plain_path_batches(V):
    # no selection: Philox words are drawn 32 pairs at a time
    l = _logits(200, V, seed=V)
    l[0, 0] = INF
    l[1, :] = -INF
    ex = V // 2 if V > 1 else -1
    got = _check(l, 0.8, exclude=ex)
    assert got[0] == 0 or ex == 0
    assert got[1] == -1


@pytest.mark.simt_edge
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("V", [65, 4099, 50257])
def test_cuda_matches_cpu_bitwise_edges(kb, dtype, V):
    l = _logits(16, V, dtype, seed=1)
    l[0, : V // 2] = -INF
    l[1] = l[1].round()
    l[2, 3] = NAN
    for k, p, ex in [(1, 1.0, -1), (50, 1.0, 3), (V - 1, 1.0, -1), (V, 1.0, 0), (40, 0.9, -1)]:
        cpu = ops.sample_categorical(l, 1.0, k, p, exclude=ex, seed=4, offset=8)
        dev = kb.call(ops.sample_categorical, l, 1.0, k, p, exclude=ex, seed=4, offset=8)
        assert torch.equal(cpu, dev), (k, p, ex)


@pytest.mark.parametrize("V", [300, 50257])
def test_cuda_top_p_sees_only_the_top_k(kb, V):
    # Regression: select_top_k returned its shared prefix after its last barrier
    # while select_top_p's thread 0 reset it, so slower warps could weigh classes
    # outside the top k. Here those hold nearly all the mass: any leak moves the
    # nucleus below the top-k threshold and draws from outside {0, 1}.
    l = torch.full((256 if V < 1000 else 32, V), 4.8)
    l[:, 0], l[:, 1] = 5.0, 4.9
    for k, p in [(2, 0.5), (2, 0.999999), (1, 0.9)]:
        dev = kb.call(ops.sample_categorical, l, 1.0, k, p, seed=5)
        assert bool((dev >= 0).all() & (dev < k).all()), (k, p)
        assert torch.equal(dev, ops.sample_categorical(l, 1.0, k, p, seed=5))
