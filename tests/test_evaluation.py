"""Reference model (causality, training, save/load), gradient moment on a real
transformer, and the exact HMM quantities against enumeration."""

import math

import pytest
import torch

from dmmd_ext.evaluation.gradient_moment import gradient_moment
from dmmd_ext.evaluation.reference_model import (ARReference, HFReference, ReferenceConfig,
                                                 load_reference, save_reference, train_reference)


pytestmark = pytest.mark.usefixtures("one_thread")


class Toy:
    """A dataset whose rows count up mod K from a random start: after the first
    token everything is determined, so a working AR model reaches an NLL near
    log(K) / L per token."""

    def __init__(self, k=8, length=12, n=512, seed=0):
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, k, (n + 128, 1), generator=g)
        rows = (start + torch.arange(length)) % k
        self.train, self.val, self.vocab_size, self.name = rows[:n], rows[n:], k, "toy"


def test_reference_is_causal_and_scores_every_position():
    torch.manual_seed(0)
    model = ARReference.build(vocab_size=7, seq_len=10, preset="tiny").eval()
    x = torch.randint(0, 7, (3, 10))
    base = model.token_nll(x)
    assert base.shape == (3, 10) and torch.isfinite(base).all()
    y = x.clone()
    y[:, 6] = (y[:, 6] + 1) % 7
    moved = model.token_nll(y)
    assert torch.allclose(base[:, :6], moved[:, :6], atol=1e-6)  # the past does not see x_6
    assert not torch.allclose(base[:, 6:], moved[:, 6:])
    with pytest.raises(ValueError, match="max_len"):
        model.token_nll(torch.zeros(1, 11, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 7\)"):
        model.token_nll(torch.full((1, 4), 7))


def test_train_reference_learns_and_round_trips(tmp_path):
    data = Toy()
    model, record = train_reference(data, ReferenceConfig(steps=150, batch_size=32, lr=3e-3, warmup=10))
    floor = math.log(data.vocab_size) / data.train.shape[1]  # only the first token is random
    assert record["val_nll"] < 1.5 * floor  # it learned the counting rule
    assert record["val_nll"] > 0.9 * floor  # it cannot beat the true entropy (up to val noise)
    assert record["val_nll"] < record["train_losses"][0]
    samples = model.sample(64, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (64, data.train.shape[1])
    follows = (samples[:, 1:] - samples[:, :-1]) % data.vocab_size == 1
    assert follows.double().mean() > 0.9  # ancestral samples obey the learned rule
    path = save_reference(model, tmp_path / "ref.safetensors", record)
    again = load_reference(path)
    x = data.val[:5]
    assert torch.equal(model.token_nll(x), again.token_nll(x))
    with pytest.raises(ValueError, match="ar_reference"):
        from safetensors.torch import save_file
        save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
        load_reference(tmp_path / "other.safetensors")


def test_gradient_moment_with_transformer_reference_sees_shuffled_tokens():
    data = Toy(n=1024)
    torch.manual_seed(1)
    model = ARReference.build(data.vocab_size, data.train.shape[1], preset="tiny").eval()
    marker = torch.ones_like(model.net.head.weight)
    model.net.head.weight.grad = marker.clone()
    params = list(model.parameters())
    g = torch.Generator().manual_seed(2)
    real_a, real_b = data.train[:512], data.train[512:]
    shuffled = real_b[:, torch.randperm(real_b.shape[1], generator=g)]
    same = gradient_moment(model.mean_nll, params, real_b, real_a, half_batch=32)
    diff = gradient_moment(model.mean_nll, params, shuffled, real_a, half_batch=32)
    assert abs(same.mean) < 4 * same.stderr
    assert diff.mean > 4 * diff.stderr and diff.mean > 10 * abs(same.mean)
    assert torch.equal(model.net.head.weight.grad, marker)
    assert all(p.grad is None for p in params if p is not model.net.head.weight)


def test_hf_reference_never_downloads(tmp_path):
    try:
        import transformers  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="transformers"):
            HFReference(tmp_path)
    else:
        with pytest.raises(FileNotFoundError, match="never"):
            HFReference(tmp_path / "missing")


# --- exact quantities on the HMM language ------------------------------------------

def toy_hmms():
    from dmmd_ext.data.hmm import PRESETS, make_hmm

    p = make_hmm(**PRESETS["toy"])  # 3 states, 4 tokens, length 6: 4096 sequences
    q = make_hmm(kind="random", n_states=3, vocab_size=4, seq_len=6, seed=1)
    return p, q


def enumerated_gm(p, q):
    """||E_q[grad L] - E_p[grad L]||^2 by summing over all 4^6 sequences."""
    xs = torch.cartesian_prod(*[torch.arange(4)] * 6)
    p.requires_grad_(True)
    try:
        lp = p.log_prob(xs)
        wq, wp = q.log_prob(xs).exp().detach(), lp.exp().detach()
        gq = torch.autograd.grad(-(wq * lp).sum() / 6, p.parameters(), retain_graph=True)
        gp = torch.autograd.grad(-(wp * lp).sum() / 6, p.parameters())
    finally:
        p.requires_grad_(False)
    return float(sum(((a - b) ** 2).sum() for a, b in zip(gq, gp))), float(sum((b ** 2).sum() for b in gp))


def test_true_gradient_moment_matches_enumeration():
    from dmmd_ext.evaluation.exact import true_gradient_moment

    p, q = toy_hmms()
    exact, data_term = enumerated_gm(p, q)
    assert data_term < 1e-20  # the expected score under the true model vanishes
    g = torch.Generator().manual_seed(0)
    samples, data = q.sample(64 * 60, g), p.sample(64 * 60, g)
    without = true_gradient_moment(p, samples, None, half_batch=32)
    with_data = true_gradient_moment(p, samples, data, half_batch=32)
    same = true_gradient_moment(p, p.sample(64 * 60, g), data, half_batch=32)
    for est in (without, with_data):
        assert abs(est.mean - exact) < 4 * est.stderr and est.stderr < 0.05 * exact
    assert abs(same.mean) < 4 * same.stderr
    assert all(not t.requires_grad for t in p.parameters())


def test_exact_report_true_samples_reach_the_entropy():
    from dmmd_ext.evaluation.exact import exact_report

    p, q = toy_hmms()
    g = torch.Generator().manual_seed(1)
    rep = exact_report(p, p.sample(3000, g), data=p.sample(3000, g))
    assert rep["entropy_method"] == "exact"
    for side in ("samples", "data"):
        nll = rep[side].nll
        assert abs(nll.mean - rep["entropy_rate_nats"]) < 4 * nll.stderr
    other = exact_report(p, q.sample(3000, g), entropy_rate={"nats": rep["entropy_rate_nats"]})
    assert other["samples"].nll.mean > rep["entropy_rate_nats"] + 10 * other["samples"].nll.stderr
    with pytest.raises(ValueError, match="length"):
        exact_report(p, torch.zeros(2, 5, dtype=torch.long))


def test_suite_scores_what_the_reference_reads_through_encode():
    from dmmd_ext.evaluation.perplexity import per_sample_nll
    from dmmd_ext.evaluation.suite import EvalSuite

    data = Toy(n=256)
    torch.manual_seed(3)
    ref = ARReference.build(data.vocab_size, data.train.shape[1] - 2, preset="tiny").eval()
    crop = lambda rows: rows[:, 2:]  # noqa: E731  (stands in for decode + re-tokenize)
    suite = EvalSuite(data.train, data.val, reference=ref, half_batch=8, encode=crop)
    samples = data.train[:64]
    m = suite.measure(samples)
    expected = per_sample_nll(ref.token_nll, crop(samples)).mean().item()
    assert m["nll"]["mean"] == pytest.approx(expected, rel=1e-9)
    assert m["gen_ppl"] == pytest.approx(math.exp(expected), rel=1e-9)
    assert m["gradient_moment"]["n"] == 4  # 64 samples, 64 data rows, pairs of 16
    with pytest.raises(ValueError, match="length"):
        suite.measure(samples[:, :5])


def test_suite_halves_partition_the_validation_rows_at_random():
    from dmmd_ext.evaluation.suite import EvalSuite

    val = torch.arange(101).view(101, 1)  # row i holds i: a drifting, ordered split
    suite = EvalSuite(val, val)
    a, b = suite.heldout[:, 0], suite.gm_data[:, 0]
    assert a.numel() == 50 and b.numel() == 51
    assert torch.equal(torch.cat([a, b]).sort().values, torch.arange(101))
    assert 35 < float(a.double().mean()) < 65  # both halves span the whole split
    assert torch.equal(EvalSuite(val, val).heldout, suite.heldout)  # seeded
