"""Datasets: HMM exact likelihood vs brute force, sampling law, entropy, gradients;
the common interface and its errors; text hash; digits; user tokens."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from dmmd_ext.data import TokenDataset, load_dataset
from dmmd_ext.data import text as text_mod
from dmmd_ext.data.hmm import PRESETS, HMM, make_hmm


def _brute_force_prob(hmm: HMM, x) -> float:
    """Sum over all hidden state paths (tiny cases only)."""
    log_pi, log_a, log_b = (p.exp() for p in hmm.log_probs())
    total = 0.0
    for path in itertools.product(range(hmm.n_states), repeat=len(x)):
        p = log_pi[path[0]] * log_b[path[0], x[0]]
        for i in range(1, len(x)):
            p = p * log_a[path[i - 1], path[i]] * log_b[path[i], x[i]]
        total += float(p)
    return total


def test_hmm_log_prob_matches_brute_force():
    hmm = make_hmm("random", n_states=3, vocab_size=4, seq_len=4, seed=1)
    xs = torch.tensor(list(itertools.product(range(4), repeat=4)))
    lp = hmm.log_prob(xs)
    for x, l in zip(xs[::17].tolist(), lp[::17].tolist()):
        assert math.exp(l) == pytest.approx(_brute_force_prob(hmm, x), rel=1e-10)
    assert float(lp.exp().sum()) == pytest.approx(1.0, abs=1e-12)


def test_hmm_samples_follow_the_exact_law():
    hmm = make_hmm("random", n_states=3, vocab_size=3, seq_len=2, seed=2)
    x = hmm.sample(20000, torch.Generator().manual_seed(0))
    codes = x[:, 0] * 3 + x[:, 1]
    counts = torch.bincount(codes, minlength=9).numpy()
    grid = torch.tensor(list(itertools.product(range(3), repeat=2)))
    probs = hmm.log_prob(grid).exp().numpy()
    assert stats.chisquare(counts, probs * counts.sum()).pvalue > 1e-4


def test_entropy_exact_and_monte_carlo_agree():
    hmm = make_hmm(**PRESETS["toy"])
    exact = hmm.entropy_rate()
    assert exact["method"] == "exact"
    mc = hmm.entropy_rate(n_samples=20000, max_enumerate=1)
    assert mc["method"].startswith("monte carlo")
    assert abs(mc["bits"] - exact["bits"]) < 5 * mc["se_bits"] + 1e-3


def test_cycle_preset_is_strongly_correlated():
    hmm = make_hmm("cycle")
    h = hmm.entropy_rate(n_samples=2000)["bits"]
    # every position alone is uniform over 16 tokens (4 bits); the sequence is far below
    assert h < 3.0 and h > 2.0


def test_hmm_nll_gradient_matches_finite_difference():
    hmm = make_hmm(**PRESETS["toy"]).requires_grad_()
    x = hmm.sample(50, torch.Generator().manual_seed(0))
    nll = -hmm.log_prob(x).mean()
    grads = torch.autograd.grad(nll, hmm.parameters())
    eps = 1e-6
    with torch.no_grad():
        hmm.emit_logits[1, 2] += eps
        up = -hmm.log_prob(x).mean()
        hmm.emit_logits[1, 2] -= 2 * eps
        down = -hmm.log_prob(x).mean()
        hmm.emit_logits[1, 2] += eps
    assert float(grads[2][1, 2]) == pytest.approx(float((up - down) / (2 * eps)), rel=1e-5)


def test_hmm_dataset_interface():
    ds = load_dataset("hmm", preset="toy", n_train=64, n_val=16, entropy_samples=100)
    assert (ds.vocab_size, ds.seq_len) == (4, 6)
    assert ds.info["entropy_method"] == "exact"
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    b1, b2 = next(ds.batches(8, g1)), next(ds.batches(8, g2))
    assert torch.equal(b1, b2) and b1.shape == (8, 6)
    assert sum(b.shape[0] for b in ds.eval_batches(5)) == 16


def test_dataset_errors_are_clear():
    good = torch.zeros(3, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="empty data"):
        TokenDataset("x", torch.zeros(0, 4, dtype=torch.long), good, 5)
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, vocab_size=5\), got values in \[7, 7\]"):
        TokenDataset("x", torch.full((2, 4), 7), good, 5)
    with pytest.raises(ValueError, match="expected integer tokens"):
        TokenDataset("x", torch.zeros(2, 4), good, 5)
    with pytest.raises(ValueError, match="sequence lengths differ"):
        TokenDataset("x", good, torch.zeros(2, 5, dtype=torch.long), 5)
    ds = TokenDataset("x", good, good, 5)
    with pytest.raises(ValueError, match="vocabulary mismatch.*vocab_size=6.*vocab_size=5"):
        ds.check_vocab(6)
    with pytest.raises(ValueError, match="split"):
        next(ds.batches(2, split="test"))
    with pytest.raises(ValueError, match="dataset: expected one of"):
        load_dataset("imagenet")


def test_text_corpus_hash_and_vocabulary():
    ds = load_dataset("text", seq_len=64)
    assert ds.vocab_size == 96 and ds.seq_len == 64
    assert ds.train.shape[0] > 1000 and ds.val.shape[0] > 100
    sample = ds.decode(ds.train[0])
    assert len(sample) == 64 and all(c == "\n" or 32 <= ord(c) < 127 for c in sample)
    assert "the" in text_mod.corpus_text()[:5000]
    version = text_mod.python_version()
    if version not in text_mod.RECORDED_SHA256:
        pytest.skip(f"no hash recorded for Python {version}: the stdlib docstrings (and so the "
                    "corpus) change between Python releases; record corpus_sha256() there")
    assert text_mod.corpus_sha256() == text_mod.RECORDED_SHA256[version], (
        "the corpus differs from the one recorded for this Python version: a changed stdlib "
        "(patched docstrings) or a changed extraction in dmmd_ext/data/text.py")


def test_digits():
    pytest.importorskip("sklearn", reason="digits needs the optional scikit-learn")
    ds = load_dataset("digits")
    assert (ds.vocab_size, ds.seq_len) == (17, 64)
    assert ds.train.shape[0] + ds.val.shape[0] == 1797
    assert int(ds.train.max()) == 16


def test_user_tokens(tmp_path):
    x = np.random.default_rng(0).integers(0, 9, size=(40, 12))
    np.save(tmp_path / "a.npy", x)
    ds = load_dataset("tokens", path=str(tmp_path / "a.npy"))
    assert (ds.vocab_size, ds.seq_len, ds.train.shape[0] + ds.val.shape[0]) == (9, 12, 40)
    torch.save(torch.arange(100) % 7, tmp_path / "s.pt")
    ds = load_dataset("tokens", path=str(tmp_path / "s.pt"), seq_len=10)
    assert (ds.vocab_size, ds.seq_len) == (7, 10)
    (tmp_path / "t.txt").write_text("hello world, " * 40)
    ds = load_dataset("tokens", path=str(tmp_path / "t.txt"), seq_len=16)
    assert ds.decode(ds.train[0]) == ("hello world, " * 2)[:16]
    with pytest.raises(ValueError, match="tokens must lie in"):
        load_dataset("tokens", path=str(tmp_path / "a.npy"), vocab_size=5)
    with pytest.raises(ValueError, match="needs seq_len"):
        load_dataset("tokens", path=str(tmp_path / "s.pt"))
    (tmp_path / "e.txt").write_text("")
    with pytest.raises(ValueError, match="empty text file"):
        load_dataset("tokens", path=str(tmp_path / "e.txt"))
    np.save(tmp_path / "f.npy", np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="expected integer tokens"):
        load_dataset("tokens", path=str(tmp_path / "f.npy"))


def test_nanogpt_bin_is_memory_mapped_in_its_dtype(tmp_path):
    """Blocker 3: a raw uint16 train.bin (nanoGPT's format) used to be read as UTF-8
    text; it is memory-mapped, kept as uint16 and widened per batch."""
    from dmmd_ext.data.base import TokenRows

    stream = (np.arange(5000, dtype=np.int64) * 7919 % 50257).astype(np.uint16)  # ids > 32767
    stream.tofile(tmp_path / "train.bin")
    ds = load_dataset("tokens", path=str(tmp_path / "train.bin"), seq_len=50, vocab_size=50257,
                      val_sequences=10, split_seed=1)
    assert isinstance(ds.train, TokenRows) and isinstance(ds.train.array, np.memmap)
    assert ds.train.stored_dtype == np.uint16 and ds.info["dtype"] == "uint16"
    assert (ds.vocab_size, ds.seq_len, len(ds.train), len(ds.val)) == (50257, 50, 90, 10)
    rows = stream.astype(np.int64).reshape(100, 50)
    # the split is random (not the tail), disjoint, and covers every row
    val = {tuple(r.tolist()) for r in ds.val[:]}
    train = {tuple(r.tolist()) for r in ds.train[:]}
    assert not val & train and len(val | train) == 100
    assert val != {tuple(r) for r in rows[-10:].tolist()}
    b = next(ds.batches(4, generator=torch.Generator().manual_seed(0)))
    assert b.dtype == torch.int64 and b.shape == (4, 50) and int(b.max()) > 32767
    assert all(tuple(r.tolist()) in train for r in b)
    # the same seed gives the same split; another seed another one
    again = load_dataset("tokens", path=str(tmp_path / "train.bin"), seq_len=50, val_sequences=10,
                         split_seed=1)
    assert torch.equal(again.val[:], ds.val[:]) and again.vocab_size == int(stream.max()) + 1
    other = load_dataset("tokens", path=str(tmp_path / "train.bin"), seq_len=50, val_sequences=10,
                         split_seed=2)
    assert not torch.equal(other.val[:], ds.val[:])
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, vocab_size=1000\)"):
        load_dataset("tokens", path=str(tmp_path / "train.bin"), seq_len=50, vocab_size=1000)
    (tmp_path / "odd.bin").write_bytes(b"\x00" * 7)
    with pytest.raises(ValueError, match="not a whole number of uint16 tokens"):
        load_dataset("tokens", path=str(tmp_path / "odd.bin"), seq_len=2)
    stream.astype(np.uint32).tofile(tmp_path / "u32.bin")
    ds32 = load_dataset("tokens", path=str(tmp_path / "u32.bin"), seq_len=50, dtype="uint32")
    assert ds32.train.stored_dtype == np.uint32 and len(ds32.train) + len(ds32.val) == 100


def test_npy_is_memory_mapped_and_tail_split(tmp_path):
    x = np.random.default_rng(0).integers(0, 300, size=(40, 8)).astype(np.uint16)
    np.save(tmp_path / "a.npy", x)
    ds = load_dataset("tokens", path=str(tmp_path / "a.npy"), split="tail", val_fraction=0.25)
    assert isinstance(ds.train.array, np.memmap) and ds.train.stored_dtype == np.uint16
    assert torch.equal(ds.val[:], torch.from_numpy(x[-10:].astype(np.int64)))
    assert torch.equal(ds.train[torch.tensor([0, 29])],
                       torch.from_numpy(x[[0, 29]].astype(np.int64)))
    assert sum(b.shape[0] for b in ds.eval_batches(3)) == 10


def test_text_with_a_tokenizer(tmp_path):
    pytest.importorskip("tokenizers", reason="the tokenizer option needs the optional `tokenizers`")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    text = "the cat sat on the mat. the dog sat on the log. " * 30
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([text], trainers.BpeTrainer(vocab_size=60, special_tokens=["[UNK]"]))
    tok.save(str(tmp_path / "tok.json"))
    (tmp_path / "c.txt").write_text(text)
    ds = load_dataset("tokens", path=str(tmp_path / "c.txt"), seq_len=8,
                      tokenizer=str(tmp_path / "tok.json"))
    assert ds.vocab_size == tok.get_vocab_size() and ds.info["tokenizer"] == str(tmp_path / "tok.json")
    assert "sat on the" in ds.decode(ds.train[0]) or "the" in ds.decode(ds.train[0])
