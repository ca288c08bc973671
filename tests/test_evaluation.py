"""Reference model (causality, training, save/load), gradient moment on a real
transformer, and the exact HMM quantities against enumeration."""

import math

import pytest
import torch

from dmmd_ext.evaluation.gradient_moment import gradient_moment
from dmmd_ext.evaluation.reference_model import (ARReference, HFReference, ReferenceConfig,
                                                 load_reference, save_reference, train_reference)


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
