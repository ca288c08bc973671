"""Log sinks (dmmd_ext/logging_sinks.py, --log-to): log.jsonl is the same whatever
the other sinks, tensorboard gets the same scalars, a missing package is a clear
error before the run starts, unknown sinks are refused."""

import json
import sys
from pathlib import Path

import pytest
import torch

from dmmd_ext import cli
from dmmd_ext import logging_sinks as ls
from dmmd_ext.data import load_dataset
from dmmd_ext.distill import DistillConfig, distill
from dmmd_ext.models import Transformer, preset_config
from dmmd_ext.processes import make_process
from dmmd_ext.training import TrainConfig, train_teacher

TIMING = {"elapsed_s", "cpu_s", "tokens_per_s", "peak_mem_mb"}  # differ between runs


def _setup():
    ds = load_dataset("hmm", preset="toy", n_train=64, n_val=16, entropy_samples=50)
    proc = make_process("masked", ds.vocab_size)
    mcfg = preset_config("tiny", proc.input_vocab_size, ds.vocab_size, ds.seq_len, d_model=16,
                         n_layers=1)
    torch.manual_seed(0)
    return ds, proc, Transformer(mcfg)


def _train(run, **kw):
    ds, proc, model = _setup()
    cfg = TrainConfig(steps=3, batch_size=4, warmup=1, eval_every=3, eval_batches=1,
                      save_every=0, log_every=1, progress=False, device="cpu", **kw)
    train_teacher(model, proc, ds, cfg, run, resume=False)
    return [json.loads(l) for l in (Path(run) / "log.jsonl").read_text().splitlines()]


def _strip(recs):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in recs]


def test_parse_and_unknown_sink():
    assert ls.parse_log_to("tensorboard, jsonl,tensorboard") == ("jsonl", "tensorboard")
    assert ls.parse_log_to(["wandb"]) == ("jsonl", "wandb")
    with pytest.raises(ValueError, match=r"--log-to.*'mlflow'"):
        TrainConfig(log_to="jsonl,mlflow")
    with pytest.raises(ValueError, match=r"--log-to.*'tb'"):
        DistillConfig(log_to="tb")


def test_scalars_flatten_nested_records():
    rec = {"step": 5, "loss": 1.5, "eval": {"nll": 2.0}, "peak_mem_mb": [3.0, 4.0],
           "kind": "gen", "ok": True, "bad": float("nan")}
    assert dict(ls._scalars(rec)) == {"loss": 1.5, "eval/nll": 2.0, "peak_mem_mb/0": 3.0,
                                      "peak_mem_mb/1": 4.0}


def test_jsonl_default_writes_nothing_else(tmp_path):
    recs = _train(tmp_path / "run")
    assert [r["step"] for r in recs if "loss_bpt" in r] == [1, 2, 3]
    assert any("val_nelbo_bpt" in r for r in recs)
    assert not (tmp_path / "run" / "tb").exists() and not (tmp_path / "run" / "wandb").exists()


def test_missing_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    monkeypatch.setitem(sys.modules, "wandb", None)
    for sink in ("tensorboard", "wandb"):
        with pytest.raises(ImportError, match=rf"--log-to {sink}: .*pip install"):
            _train(tmp_path / sink, log_to=sink)
        assert not (tmp_path / sink).exists()  # refused before the run started
    ds, proc, teacher = _setup()
    with pytest.raises(ImportError, match=r"--log-to tensorboard"):
        distill(teacher, proc, ds, DistillConfig(log_to="jsonl,tensorboard", device="cpu"),
                tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_cli_flag_reaches_the_config(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    run = tmp_path / "run"
    code = cli.main(["train-teacher", "--run-dir", str(run), "--data", "hmm", "--hmm-preset",
                     "toy", "--n-train", "32", "--steps", "1", "--d-model", "16",
                     "--n-layers", "1", "--no-progress", "--log-to", "tensorboard"])
    err = capsys.readouterr().err
    assert code == 2 and "--log-to tensorboard" in err and "Traceback" not in err


def _tb_scalars(tb_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def test_tensorboard_gets_the_jsonl_scalars(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard not installed "
                                              "(pip install 'dmmd_ext[logging]')")
    plain = _train(tmp_path / "plain")
    recs = _train(tmp_path / "tb", log_to="jsonl,tensorboard")
    assert _strip(recs) == _strip(plain)  # log.jsonl unchanged by the extra sink
    assert list((tmp_path / "tb" / "tb").glob("events.out.tfevents.*"))
    got = _tb_scalars(tmp_path / "tb" / "tb")
    want = {r["step"]: r["loss_bpt"] for r in recs if "loss_bpt" in r}
    assert got["loss_bpt"] == pytest.approx(want, rel=1e-6)
    assert set(got["val_nelbo_bpt"]) == {3} and "peak_mem_mb/0" in got
