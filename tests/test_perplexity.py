"""Generative perplexity and per-sample unigram entropy against closed forms."""

import math

import pytest
import torch
from scipy.stats import entropy as scipy_entropy

from dmmd_ext.evaluation.perplexity import (generative_perplexity, per_sample_nll,
                                            perplexity_report, unigram_entropy)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_unigram_entropy_closed_forms_and_scipy():
    rows = torch.tensor([[3, 3, 3, 3], [0, 1, 2, 3], [5, 5, 0, 0]])
    h = unigram_entropy(rows)
    assert h.dtype == torch.float64
    assert h.tolist() == pytest.approx([0.0, math.log(4), math.log(2)], abs=1e-12)
    g = torch.Generator().manual_seed(0)
    rand = torch.randint(0, 7, (5, 33), generator=g)
    for row, value in zip(rand, unigram_entropy(rand)):
        counts = torch.bincount(row, minlength=7).numpy()
        assert float(value) == pytest.approx(scipy_entropy(counts), rel=1e-12)
    # shuffling within a row keeps the histogram, hence the entropy
    perm = rand[:, torch.randperm(33, generator=g)]
    assert torch.allclose(unigram_entropy(perm), unigram_entropy(rand))


def factorized_reference(q):
    logq = torch.log(q)
    return lambda x: -logq[x]  # per-token NLL of an i.i.d. categorical reference


def test_uniform_reference_gives_vocabulary_size():
    v = 11
    nll = lambda x: torch.full(x.shape, math.log(v))  # noqa: E731
    samples = torch.randint(0, v, (10, 6), generator=torch.Generator().manual_seed(1))
    res = generative_perplexity(nll, samples, batch_size=3)
    assert res.perplexity == pytest.approx(v, rel=1e-6)  # log v held in float32
    assert res.nll.n == 10 and res.entropy.n == 10


def test_perplexity_of_true_samples_is_exp_entropy_and_collapse_fools_it():
    q = torch.tensor([0.5, 0.2, 0.2, 0.1])
    ref = factorized_reference(q)
    g = torch.Generator().manual_seed(2)
    data = torch.multinomial(q, 400 * 32, replacement=True, generator=g).view(400, 32)
    samples = torch.multinomial(q, 400 * 32, replacement=True, generator=g).view(400, 32)
    h = float(-(q * q.log()).sum())
    rep = perplexity_report(ref, samples, data, batch_size=64)
    assert abs(rep["samples"].nll.mean - h) < 4 * rep["samples"].nll.stderr
    # collapse onto the most likely token: lower perplexity than real data, entropy 0
    collapsed = torch.zeros(400, 32, dtype=torch.long)
    bad = generative_perplexity(ref, collapsed)
    assert bad.perplexity == pytest.approx(2.0, rel=1e-6)
    assert bad.perplexity < rep["data"].perplexity
    assert bad.entropy.mean == 0.0 < rep["data"].entropy.mean


def test_per_sample_nll_checks_shape_and_input():
    x = torch.zeros(4, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="shape"):
        per_sample_nll(lambda b: b.float().mean(1), x)
    with pytest.raises(ValueError, match="integer"):
        per_sample_nll(lambda b: b, x.float())
    with pytest.raises(ValueError, match="length"):
        perplexity_report(lambda b: b.float(), x, torch.zeros(4, 6, dtype=torch.long))
