"""The compact transformer: shapes, causality, conditioning, noise input, config."""

import json

import pytest
import torch

from dmmd_ext.models import PRESETS, Transformer, TransformerConfig, preset_config, with_noise_input


def _model(**kw):
    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_in=9, vocab_out=8, max_len=16, d_model=32,
                                         n_layers=2, n_heads=4, **kw))


@pytest.mark.parametrize("pos", ["rotary", "learned"])
@pytest.mark.parametrize("time_cond", ["adaln", "add", "none"])
def test_shapes_and_grad(pos, time_cond):
    m = _model(pos=pos, time_cond=time_cond)
    z = torch.randint(0, 9, (3, 11))
    out = m(z, torch.rand(3))
    assert out.shape == (3, 11, 8) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None for n, p in m.named_parameters() if "adaln" not in n)


def test_causal_flag_blocks_future_tokens():
    m = _model(causal=True, time_cond="none")
    z = torch.randint(0, 9, (2, 10))
    z2 = z.clone()
    z2[:, 6:] = (z2[:, 6:] + 1) % 9
    a, b = m(z), m(z2)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])
    bi = _model(causal=False, time_cond="none")
    assert not torch.allclose(bi(z)[:, :6], bi(z2)[:, :6])


def test_time_conditioning_reaches_output():
    m = _model(time_cond="adaln")
    for p in m.parameters():  # adaLN starts at zero: perturb it so t matters
        p.data.add_(0.05 * torch.randn_like(p))
    z = torch.randint(0, 9, (2, 5))
    assert not torch.allclose(m(z, torch.tensor([0.1, 0.1])), m(z, torch.tensor([0.9, 0.9])))
    with pytest.raises(ValueError, match="t: this model is time-conditioned"):
        m(z)


def test_noise_input_starts_at_zero_and_then_matters():
    teacher = _model()
    student = with_noise_input(teacher, 6)
    assert student.d_noise == 6 and teacher.d_noise == 0
    z, t = torch.randint(0, 9, (2, 7)), torch.rand(2)
    eps = torch.randn(2, 7, 6)
    torch.testing.assert_close(student(z, t, eps), teacher(z, t))
    student.noise_proj.weight.data.normal_()
    assert not torch.allclose(student(z, t, eps), teacher(z, t))
    assert teacher.noise_proj is None  # the teacher is untouched
    with pytest.raises(ValueError, match="noise: expected shape"):
        student(z, t, torch.randn(2, 7, 5))


def test_config_json_roundtrip_and_errors():
    cfg = preset_config("tiny", 17, 16, 64, d_noise=4)
    again = TransformerConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg
    m1, m2 = Transformer(cfg), Transformer(again)
    assert m1.num_parameters() == m2.num_parameters()
    with pytest.raises(ValueError, match="d_model: expected a multiple of n_heads"):
        TransformerConfig(vocab_in=3, vocab_out=3, max_len=4, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="unknown fields"):
        TransformerConfig.from_dict({**cfg.to_dict(), "depth": 3})
    with pytest.raises(ValueError, match="preset: expected one of"):
        preset_config("huge", 3, 3, 4)
    with pytest.raises(ValueError, match="exceeds max_len"):
        Transformer(cfg)(torch.zeros(1, 65, dtype=torch.long), torch.rand(1))


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_build(name):
    with torch.device("meta"):  # no memory, no init cost
        m = Transformer(preset_config(name, 50258, 50257, 1024))
    n = m.num_parameters()
    assert n > 0
    if name == "gpt2-small":  # GPT-2 small body + untied head + adaLN: ~ 85M + 2 x 38.6M + adaLN
        assert 150e6 < n < 250e6
