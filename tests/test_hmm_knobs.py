"""HMM language knobs (make_hmm / hmm_dataset / the --hmm-* flags) and the data
spec a checkpoint records (registry.rebuild_dataset / rebuild_hmm)."""

from __future__ import annotations

import argparse
import hashlib
import json
import re

import pytest
import torch

from dmmd_ext import cli
from dmmd_ext.data import load_dataset
from dmmd_ext.data.hmm import PRESETS, hmm_dataset, make_hmm
from dmmd_ext.data.registry import rebuild_dataset, rebuild_hmm

# sha256 of the float64 parameters of each preset, recorded before the knobs existed
PRESET_SHA256 = {
    "cycle": "77f3f8ea3dad8a06c45712a7d6863ed004b7768612008f6901f23834775471b7",
    "random": "470933ad252e7dd60c2a5376a9d05ac2df14522364d036f6bb6feb4ae27e19b2",
    "toy": "d943cfd44445607a8efb6b084a205f4e4b9055756b6e0591c731fb82d9be3d8b",
}


def _sha(hmm) -> str:
    m = hashlib.sha256()
    for p in hmm.parameters():
        m.update(p.detach().numpy().tobytes())
    return m.hexdigest()


def _same(p, q) -> bool:
    return all(torch.equal(a, b) for a, b in zip(p.parameters(), q.parameters()))


@pytest.mark.parametrize("name", sorted(PRESET_SHA256))
def test_presets_are_bit_identical(name):
    assert _sha(make_hmm(**PRESETS[name])) == PRESET_SHA256[name]
    assert _sha(make_hmm(**PRESETS[name], stickiness=0.0, peakiness=0.0)) == PRESET_SHA256[name]


@pytest.mark.parametrize("kind", ["random", "cycle"])
def test_stickiness_and_peakiness_mix_as_documented(kind):
    base = make_hmm(kind, n_states=4, vocab_size=8, seq_len=5, seed=3)
    sticky = make_hmm(kind, n_states=4, vocab_size=8, seq_len=5, seed=3, stickiness=0.6)
    peaky = make_hmm(kind, n_states=4, vocab_size=8, seq_len=5, seed=3, peakiness=0.7)
    a0, a1 = base.trans_logits.exp(), sticky.trans_logits.exp()
    assert torch.allclose(a1, 0.4 * a0 + 0.6 * torch.eye(4, dtype=torch.float64))
    assert torch.equal(peaky.trans_logits, base.trans_logits)
    b0, b1 = base.emit_logits.exp(), peaky.emit_logits.exp()
    top = b0.argmax(1)
    assert torch.equal(b1.argmax(1), top)
    assert torch.allclose(b1.max(1).values, 0.3 * b0.max(1).values + 0.7)
    assert torch.allclose(b1.sum(1), torch.ones(4, dtype=torch.float64))
    # peakier emissions: less entropy per token (exact: 8^5 sequences)
    assert peaky.entropy_rate()["bits"] < base.entropy_rate()["bits"]


def test_stickiness_shows_as_repeated_tokens():
    """With peaky emissions a token tracks its state, so sticky states repeat tokens."""
    def repeats(s):
        hmm = make_hmm("random", n_states=6, vocab_size=12, seq_len=32, seed=1, stickiness=s,
                       peakiness=0.9)
        x = hmm.sample(400, torch.Generator().manual_seed(0))
        return float((x[:, 1:] == x[:, :-1]).float().mean())
    assert repeats(0.8) > repeats(0.0) + 0.2


def test_seed_and_sizes_change_the_language():
    a = make_hmm("random", n_states=5, vocab_size=7, seq_len=9, seed=1)
    b = make_hmm("random", n_states=5, vocab_size=7, seq_len=9, seed=2)
    assert not torch.equal(a.emit_logits, b.emit_logits)
    assert (a.n_states, a.vocab_size, a.seq_len) == (5, 7, 9)


@pytest.mark.parametrize("kw, match", [
    (dict(stickiness=1.0), r"stickiness: expected a number in \[0, 1\), got 1.0"),
    (dict(peakiness=-0.1), r"peakiness: expected a number in \[0, 1\)"),
    (dict(n_states=0), r"n_states: expected an integer >= 1, got 0"),
    (dict(vocab_size=2.5), r"vocab_size: expected an integer >= 1"),
    (dict(seq_len=0), r"seq_len: expected an integer >= 1"),
    (dict(seed=-1), r"seed: expected an integer >= 0, got -1"),
    (dict(kind="grid"), r"kind: expected 'cycle' or 'random'"),
])
def test_make_hmm_rejects_bad_knobs(kw, match):
    args = {"kind": "random", "n_states": 3, "vocab_size": 4, "seq_len": 5, **kw}
    with pytest.raises(ValueError, match=match):
        make_hmm(**args)


def test_hmm_dataset_hmm_seed():
    a = hmm_dataset("random", n_train=8, n_val=4, entropy_samples=64, hmm_seed=5)
    assert a.info["hmm"]["seed"] == 5 and a.info["spec"]["hmm_seed"] == 5
    assert not torch.equal(a.hmm.emit_logits, make_hmm(**PRESETS["random"]).emit_logits)
    with pytest.raises(ValueError, match="hmm_seed: preset 'cycle' is not random"):
        hmm_dataset("cycle", n_train=8, n_val=4, entropy_samples=64, hmm_seed=1)


def _ns(**kw):
    return argparse.Namespace(**{**{k: None for k in cli.DATA_KEYS}, **kw})


def test_cli_flags_build_the_language():
    ds = cli._load_data(_ns(data="hmm", hmm_preset="random", n_train=16, hmm_seed=4,
                            hmm_states=3, hmm_tokens=5, hmm_length=7, hmm_stickiness=0.5,
                            hmm_peakiness=0.25))
    ref = make_hmm("random", n_states=3, vocab_size=5, seq_len=7, seed=4, stickiness=0.5,
                   peakiness=0.25)
    assert _same(ds.hmm, ref) and ds.train.shape == (16, 7)
    # --seq-len still overrides the preset's length for hmm
    assert cli._load_data(_ns(data="hmm", hmm_preset="toy", n_train=4, seq_len=3)).seq_len == 3


@pytest.mark.parametrize("flags, match", [
    (["--hmm-stickiness", "1.5"], r"--hmm-stickiness: expected a value \[0,1\), got 1.5"),
    (["--hmm-peakiness", "-1"], r"--hmm-peakiness: expected a value \[0,1\)"),
    (["--hmm-states", "0"], r"--hmm-states: expected a value >0"),
    (["--hmm-seed", "-2"], r"--hmm-seed: expected a value >=0"),
    (["--hmm-seed", "3"], r"--hmm-seed: preset 'cycle' has no seed"),
    (["--hmm-preset", "random", "--hmm-length", "8", "--seq-len", "9"],
     r"--hmm-length 8 and --seq-len 9 disagree"),
    (["--data", "text", "--hmm-tokens", "9"], r"--hmm-tokens: only used with --data hmm"),
    (["--hmm-preset", "cycle", "--hmm-states", "3"], r"vocab_size: 'cycle' needs a multiple"),
])
def test_cli_rejects_bad_hmm_flags(tmp_path, capsys, flags, match):
    code = cli.main(["train-teacher", "--run-dir", str(tmp_path / "r"), "--steps", "1", *flags])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(match, err), err


def test_teacher_records_its_random_hmm_and_rebuilds_it(tmp_path, capsys):
    run = tmp_path / "teacher"
    flags = ["--data", "hmm", "--hmm-preset", "random", "--hmm-seed", "7", "--hmm-states", "4",
             "--hmm-tokens", "6", "--hmm-length", "8", "--hmm-stickiness", "0.5",
             "--hmm-peakiness", "0.3", "--n-train", "64", "--data-seed", "2"]
    assert cli.main(["train-teacher", "--run-dir", str(run), *flags, "--steps", "2",
                     "--batch-size", "4", "--eval-batches", "1", "--d-model", "16",
                     "--n-layers", "1", "--n-heads", "2", "--no-progress", "--threads", "1"]) == 0
    capsys.readouterr()
    original = make_hmm("random", n_states=4, vocab_size=6, seq_len=8, seed=7, stickiness=0.5,
                        peakiness=0.3)
    cfg = json.loads((run / "checkpoint" / "config.json").read_text())
    assert cfg["data"]["hmm"]["stickiness"] == 0.5 and cfg["data"]["spec"]["hmm_seed"] == 7
    assert cfg["data_args"]["hmm_peakiness"] == 0.3
    assert _same(rebuild_hmm(run), original)
    assert not _same(rebuild_hmm(run), make_hmm(**PRESETS["random"]))
    ds = rebuild_dataset(run / "checkpoint")
    again = load_dataset("hmm", preset="random", n_train=64, seed=2, hmm_seed=7, n_states=4,
                         vocab_size=6, seq_len=8, stickiness=0.5, peakiness=0.3)
    assert torch.equal(ds.train, again.train) and torch.equal(ds.val, again.val)
    # the recorded CLI flags (what distill and eval use) rebuild the same data
    assert torch.equal(cli._load_data(argparse.Namespace(**cfg["data_args"])).train, again.train)


def test_data_args_from_spec_round_trip():
    ds = hmm_dataset("random", n_train=12, n_val=4, seed=3, entropy_samples=64, hmm_seed=9,
                     n_states=4, stickiness=0.2)
    args = cli.data_args_from_spec(ds.info["spec"])
    assert args["hmm_seed"] == 9 and args["hmm_states"] == 4 and args["data_seed"] == 3
    again = cli._load_data(argparse.Namespace(**args))
    assert _same(again.hmm, ds.hmm) and torch.equal(again.train, ds.train)
    # the sampling seed is --data-seed, never the HMM's seed
    for preset in ("cycle", "random"):
        plain = hmm_dataset(preset, n_train=6, n_val=2, seed=3, entropy_samples=64, seq_len=3)
        args = cli.data_args_from_spec(plain.info["spec"])
        assert args["hmm_seed"] is None and args["data_seed"] == 3
        cli._check_data_flags(argparse.Namespace(**args))
        assert torch.equal(cli._load_data(argparse.Namespace(**args)).train, plain.train)
    odd = hmm_dataset("cycle", n_train=4, n_val=2, entropy_samples=64, p_next=0.5)
    with pytest.raises(ValueError, match=r"\['p_next'\] have no data flag"):
        cli.data_args_from_spec(odd.info["spec"])


def test_rebuild_without_a_spec_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="records no data spec"):
        rebuild_dataset({"data": {"name": "hmm-cycle"}})
    with pytest.raises(ValueError, match="not an HMM language"):
        rebuild_hmm({"data": {"name": "text"}})
    with pytest.raises(FileNotFoundError, match="no config.json"):
        rebuild_dataset(tmp_path)


def test_demo_teacher_records_the_language_it_trained_on(tmp_path):
    """The demo builds its data in Python; its checkpoint must still name that data."""
    from dmmd_ext.demo import DemoConfig, _teacher
    from dmmd_ext.processes import make_process

    ds = hmm_dataset("random", n_train=32, n_val=8, seed=1, entropy_samples=64, hmm_seed=6,
                     n_states=3, vocab_size=5, seq_len=6, peakiness=0.4)
    cfg = DemoConfig(run_dir=str(tmp_path), teacher_steps=2, teacher_batch=4, progress=False)
    _teacher(cfg, ds, make_process("masked", ds.vocab_size, "linear"), tmp_path)
    saved = json.loads((tmp_path / "teacher" / "checkpoint" / "config.json").read_text())
    assert saved["data_args"]["hmm_preset"] == "random" and saved["data_args"]["hmm_seed"] == 6
    rebuilt = cli._load_data(argparse.Namespace(**saved["data_args"]))
    assert _same(rebuilt.hmm, ds.hmm) and torch.equal(rebuilt.train, ds.train)
    assert _same(rebuild_hmm(tmp_path / "teacher"), ds.hmm)
