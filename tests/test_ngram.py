"""evaluation.ngram: exact n-gram statistics of the HMM, reverse cross-entropy and
n-gram TV, and their data floors. The point of these metrics: a sharper, narrower
sampler (lower exact NLL than the data, which excess NLL rewards) scores worse
than a data sample of the same size."""

import math

import pytest
import torch
from scipy.stats import chisquare

from dmmd_ext.data.hmm import HMM, make_hmm
from dmmd_ext.evaluation import (exact_ngram_probs, ngram_counts, ngram_floor, ngram_metrics,
                                 smoothed_log_conditional, true_nll)

pytestmark = pytest.mark.usefixtures("one_thread")
KEYS = ("reverse_ce_2", "ngram_tv_2", "reverse_ce_3", "ngram_tv_3")


@pytest.fixture(scope="module")
def cycle():
    return make_hmm("cycle", seq_len=32)


def _non_stationary():
    """A small random HMM started in state 0, so the window marginal moves with i."""
    h = make_hmm("random", n_states=3, vocab_size=4, seq_len=6, seed=2)
    return HMM(torch.tensor([0.0, -30.0, -30.0]), h.trans_logits, h.emit_logits, 6)


def _sharpened(h, factor=1.6):
    """The same HMM with log-transitions and log-emissions scaled up: likelier
    sequences, fewer distinct n-grams (a collapsing sampler)."""
    return HMM(h.init_logits, h.trans_logits * factor, h.emit_logits * factor, h.seq_len)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_exact_probs_sum_to_one_and_are_nonnegative(cycle, n):
    for h in (cycle, _non_stationary()):
        p = exact_ngram_probs(h, n)
        assert p.shape == (h.vocab_size,) * n and p.dtype == torch.float64
        assert (p >= 0).all() and abs(float(p.sum()) - 1.0) < 1e-12


@pytest.mark.parametrize("n", [2, 3])
def test_exact_probs_match_monte_carlo(n):
    """One window per sampled row at a uniform position: iid draws from the
    window-averaged distribution, so a chi-square test applies (false alarm 1e-3).
    The position-0 distribution (no averaging) must be rejected."""
    h = _non_stationary()
    g = torch.Generator().manual_seed(n)
    x = h.sample(40000, g)
    i = torch.randint(0, h.seq_len - n + 1, (x.shape[0],), generator=g)
    code = torch.zeros(x.shape[0], dtype=torch.long)
    for j in range(n):
        code = code * h.vocab_size + x[torch.arange(x.shape[0]), i + j]
    f = torch.bincount(code, minlength=h.vocab_size ** n).double()
    p = exact_ngram_probs(h, n).reshape(-1)
    keep = p * f.sum() > 5  # chi-square needs expected counts >= 5
    expected = p[keep] * f[keep].sum() / p[keep].sum()
    assert chisquare(f[keep], expected).pvalue > 1e-3
    first = HMM(h.init_logits, h.trans_logits, h.emit_logits, n)  # windows at i = 0 only
    q = exact_ngram_probs(first, n).reshape(-1)[keep]
    assert chisquare(f[keep], q * f[keep].sum() / q.sum()).pvalue < 1e-6


def test_hand_computed_tiny_case():
    """K = 2, iid fair tokens (one state): P(g) = 1/4 for every bigram. Samples
    0101: bigram counts (0,1): 2, (1,0): 1; with beta = 1, q_1 = [0.375, 0.625],
    q(.|0) = ([0, 2] + q_1) / 3, q(.|1) = ([1, 0] + q_1) / 2."""
    iid = HMM(torch.zeros(1), torch.zeros(1, 1), torch.zeros(1, 2), 4)
    x = torch.tensor([[0, 1, 0, 1]])
    assert torch.equal(ngram_counts(x, 2, 2), torch.tensor([[0.0, 2.0], [1.0, 0.0]],
                                                           dtype=torch.float64))
    q = smoothed_log_conditional(ngram_counts(x, 2, 2), 1.0).exp()
    assert torch.allclose(q, torch.tensor([[0.125, 0.875], [0.6875, 0.3125]], dtype=torch.float64))
    m = ngram_metrics(x, iid, 2, n_boot=0)
    want = -0.25 * sum(math.log2(v) for v in (0.125, 0.875, 0.6875, 0.3125))
    assert m["reverse_ce_2"]["mean"] == pytest.approx(want, abs=1e-12)
    tv = 0.5 * (0.25 + (2 / 3 - 0.25) + (1 / 3 - 0.25) + 0.25)
    assert m["ngram_tv_2"]["mean"] == pytest.approx(tv)
    assert math.isnan(m["reverse_ce_2"]["stderr"]) and m["reverse_ce_2"]["n_boot"] == 0
    # the same against a data reference: the held-out sample 0011 has bigrams 00, 01, 11
    held = ngram_metrics(x, torch.tensor([[0, 0, 1, 1]]), 2, vocab_size=2, n_boot=0)
    want = -sum(math.log2(v) for v in (0.125, 0.875, 0.3125)) / 3
    assert held["reverse_ce_2"]["mean"] == pytest.approx(want, abs=1e-12)


def _worse(bad, good, key, z=4.0):
    se = math.hypot(bad[key]["stderr"], good[key]["stderr"])
    return bad[key]["mean"] > good[key]["mean"] + z * se


def test_collapsed_samplers_score_worse_than_data(cycle):
    g = torch.Generator().manual_seed(0)
    data = cycle.sample(1024, g)
    sharp = _sharpened(cycle).sample(1024, g)
    dup = data[:32].repeat(32, 1)  # 32 real rows, each 32 times
    # the trap: the sharpened sampler is *likelier* than the data under the true model
    assert float(true_nll(cycle, sharp).mean()) < float(true_nll(cycle, data).mean()) - 0.1
    held = cycle.sample(1024, g)
    for ref, kw in ((cycle, {}), (held, {"vocab_size": cycle.vocab_size})):
        m_data = ngram_metrics(data, ref, **kw)
        for bad in (sharp, dup):
            m_bad = ngram_metrics(bad, ref, **kw)
            for key in KEYS:
                assert _worse(m_bad, m_data, key), (key, m_bad[key], m_data[key])


def test_data_sits_at_its_floor(cycle):
    g = torch.Generator().manual_seed(5)
    data = cycle.sample(1024, g)
    floor = ngram_floor(cycle, 1024, seed=11)
    m = ngram_metrics(data, cycle)
    for key in KEYS:
        assert floor[key]["stderr"] > 0 and floor[key]["n"] == 1024
        assert abs(m[key]["mean"] - floor[key]["mean"]) < 4 * math.hypot(
            m[key]["stderr"], floor[key]["stderr"]), key
    # held-out version: reference, floor and data are three disjoint data samples
    held, second = cycle.sample(1024, g), cycle.sample(1024, g)
    hm = ngram_metrics(data, held, vocab_size=16)
    hf = ngram_floor(held, 1024, floor_tokens=second, vocab_size=16)
    for key in KEYS:
        assert abs(hm[key]["mean"] - hf[key]["mean"]) < 4 * math.hypot(
            hm[key]["stderr"], hf[key]["stderr"]), key
    # a finite data sample is not at TV 0: the floor is what to compare with
    assert floor["ngram_tv_3"]["mean"] > 10 * floor["ngram_tv_3"]["stderr"]


def test_bad_arguments_give_clear_errors(cycle):
    x = cycle.sample(8, torch.Generator().manual_seed(0))
    for n in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n: expected"):
            ngram_metrics(x, cycle, n)
    with pytest.raises(ValueError, match="exceeds the sequence length"):
        ngram_metrics(x, cycle, 33)
    with pytest.raises(ValueError, match="samples: empty"):
        ngram_metrics(x[:0], cycle, 2)
    with pytest.raises(ValueError, match=r"samples: tokens must lie in \[0, 16\)"):
        ngram_metrics(torch.where(x == 3, -1, x), cycle, 2)
    with pytest.raises(ValueError, match=r"must lie in \[0, 16\), got values in \[0, 16\]"):
        ngram_metrics(torch.cat([x, torch.full((1, 32), 16)]), cycle, 2)
    with pytest.raises(ValueError, match="samples: expected integer"):
        ngram_metrics(x.float(), cycle, 2)
    with pytest.raises(ValueError, match="max_entries"):
        exact_ngram_probs(cycle, 4, max_entries=10000)
    with pytest.raises(ValueError, match="vocab_size: required"):
        ngram_metrics(x, x, 2)
    with pytest.raises(ValueError, match="smoothing"):
        ngram_metrics(x, cycle, 2, smoothing=0.0)
    with pytest.raises(ValueError, match="n_boot"):
        ngram_metrics(x, cycle, 2, n_boot=-1)
    with pytest.raises(ValueError, match="floor_tokens: required"):
        ngram_floor(x, 8, vocab_size=16)
    with pytest.raises(ValueError, match="floor_tokens: 8 rows"):
        ngram_floor(x, 9, floor_tokens=x, vocab_size=16)


def test_suite_uses_exact_statistics_or_held_out_data(cycle):
    from dmmd_ext.evaluation import EvalSuite

    g = torch.Generator().manual_seed(9)
    train, val = cycle.sample(512, g), cycle.sample(1024, g)
    dup = val[:16].repeat(32, 1)
    held = EvalSuite(train, val, vocab_size=16, half_batch=16)
    exact = EvalSuite(train, val, true_model=cycle, half_batch=16)
    assert held.ngram_reference == "held-out" and exact.ngram_reference == "exact"
    for suite in (held, exact):
        base, bad = suite.baseline(), suite.measure(dup)
        for key in KEYS:
            assert _worse(bad, base, key), (suite.ngram_reference, key)
    # the held-out reference is half B, never the rows of the baseline (half A)
    direct = ngram_metrics(held.heldout, held.gm_data, vocab_size=16)
    assert held.baseline()["ngram_tv_3"]["mean"] == pytest.approx(direct["ngram_tv_3"]["mean"])
    assert "reverse_ce_2" not in EvalSuite(train, val).measure(dup)  # no K, no true model: off
    class LikelihoodOnly:  # a true model without HMM parameters: no exact n-grams
        vocab_size, seq_len = 16, 32

    assert EvalSuite(train, val, true_model=LikelihoodOnly(), vocab_size=16).ngram_reference \
        == "held-out"
    big = EvalSuite(train, val, vocab_size=3000, ngram_orders=(1, 2, 3))
    assert big.ngram_orders_used() == (1, 2)  # 3000^3 entries would not fit
