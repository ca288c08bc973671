"""Soft top-p sampling (processes.soft_top_p_logits): the samplers draw from the
sharpened teacher the students are distilled towards
(reference.losses.sharpened_teacher_log_probs), and are bitwise plain sampling
when the option is off."""

import pytest
import torch
from scipy.stats import chisquare

from dmmd_ext.distill.sampler import sample_many, sample_masked_sparse
from dmmd_ext.processes import make_process, soft_top_p_logits
from dmmd_ext.reference.losses import sharpened_teacher_log_probs

pytestmark = pytest.mark.usefixtures("one_thread")

ROW = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0])  # no cumulative mass near 0.9


class _Const:
    """A model whose logits are ROW at every position (any process, any time)."""

    d_noise = 0

    def __init__(self, row=ROW):
        self.row = row

    def __call__(self, z, t, noise=None):
        return self.row.expand(*z.shape, -1).clone()

    def parameters(self):
        return iter([self.row])


class _Varying(_Const):
    """Logits that depend on the tokens and the time (so every step matters)."""

    def __call__(self, z, t, noise=None):
        base = self.row.expand(*z.shape, -1)
        return base + 0.3 * z.flip(1).float()[..., None].remainder(3) + t[:, None, None]


def _freqs(x, V):
    return torch.bincount(x.reshape(-1), minlength=V).double()


def _reference_probs(tau, top_p, delta):
    return sharpened_teacher_log_probs(ROW[None], tau, top_p, delta)[0].exp()


@pytest.mark.parametrize("tau", [1.0, 0.7])
def test_transform_matches_the_reference_targets(tau):
    got = torch.log_softmax(soft_top_p_logits(ROW[None], 0.9, 2.0, tau).double(), -1)[0]
    want = sharpened_teacher_log_probs(ROW[None], tau, 0.9, 2.0)[0]
    assert torch.allclose(got, want, atol=1e-5)
    # the penalty lands outside the nucleus only: it is a real sharpening
    assert not torch.allclose(got, torch.log_softmax(ROW.double() / tau, -1), atol=1e-2)


def test_ties_at_the_threshold_are_inside_like_the_reference():
    row = torch.tensor([[3.0, 1.0, 1.0, 1.0, 0.0, 0.0]])
    for p in (0.5, 0.7, 0.95):
        x = soft_top_p_logits(row, p, 3.0)
        inside = x == row  # unpenalized classes
        ref = sharpened_teacher_log_probs(row, 1.0, p, 3.0)
        assert torch.allclose(torch.log_softmax(x.double(), -1), ref, atol=1e-6)
        assert inside[0, 1] == inside[0, 2] == inside[0, 3]  # the tied classes go together
    assert soft_top_p_logits(row, 0.7, 3.0)[0, 1:4].eq(1.0).all()  # the threshold tie is inside


@pytest.mark.parametrize("kind,tau", [("masked", 1.0), ("masked", 0.7), ("uniform", 1.0)])
def test_process_sample_draws_the_sharpened_distribution(kind, tau):
    """One step from the prior to t = 0 reveals every position: 24000 iid draws.
    Chi-square goodness of fit, false-alarm rate 1e-3; the plain distribution is
    rejected (so the test sees the sharpening)."""
    proc = make_process(kind, 8)
    g = torch.Generator().manual_seed(0)
    x = proc.sample(_Const(), 1, 400, 60, temperature=tau, soft_top_p=0.9, delta=2.0, generator=g)
    f = _freqs(x, 8)
    assert chisquare(f, f.sum() * _reference_probs(tau, 0.9, 2.0)).pvalue > 1e-3
    plain = torch.softmax(ROW.double() / tau, -1)
    assert chisquare(f, f.sum() * plain).pvalue < 1e-6


def test_sparse_sampler_draws_the_sharpened_distribution():
    proc = make_process("masked", 8)
    g = torch.Generator().manual_seed(1)
    x = sample_masked_sparse(_Const(), proc, 3, 400, 60, generator=g, soft_top_p=0.8, delta=1.5)
    f = _freqs(x, 8)
    assert chisquare(f, f.sum() * _reference_probs(1.0, 0.8, 1.5)).pvalue > 1e-3
    assert chisquare(f, f.sum() * torch.softmax(ROW.double(), -1)).pvalue < 1e-6


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("off", [dict(soft_top_p=1.0, delta=2.0), dict(soft_top_p=0.9, delta=0.0)])
def test_off_is_bitwise_plain_sampling(sparse, off):
    proc = make_process("masked", 8)
    model = _Varying()
    plain = sample_many(model, proc, 4, 64, 12, batch_size=32, seed=3, sparse=sparse,
                        temperature=0.8)
    same = sample_many(model, proc, 4, 64, 12, batch_size=32, seed=3, sparse=sparse,
                       temperature=0.8, **off)
    assert torch.equal(plain, same)
    on = sample_many(model, proc, 4, 64, 12, batch_size=32, seed=3, sparse=sparse,
                     temperature=0.8, soft_top_p=0.5, delta=4.0)
    assert not torch.equal(plain, on)


def test_bad_arguments_name_the_option():
    proc = make_process("masked", 8)
    model = _Const()
    for kw, match in [(dict(soft_top_p=0.0), "soft_top_p"), (dict(soft_top_p=1.5), "soft_top_p"),
                      (dict(soft_top_p=0.9, delta=-1.0), "delta"),
                      (dict(soft_top_p=0.9, delta=float("nan")), "delta"),
                      (dict(soft_top_p=0.9, top_p=0.8), "top_p"),
                      (dict(soft_top_p=0.9, top_k=3), "top_k")]:
        with pytest.raises(ValueError, match=match):
            proc.sample(model, 2, 2, 4, **kw)
        with pytest.raises(ValueError, match=match):
            sample_masked_sparse(model, proc, 2, 2, 4, **kw)
    # a hard cut alone and soft top-p with delta 0 (off) beside it stay allowed
    proc.sample(model, 2, 2, 4, top_p=0.8, soft_top_p=0.9, delta=0.0)
