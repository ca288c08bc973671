"""Your own model through the whole pipeline (no Hugging Face needed): a model whose
`.config` is not ours distills; a `module:factory` model's checkpoints rebuild in
every command and loader; the generic noise input; resume checks; Ctrl-C; the
CLI's value checks and error lines; torchrun over the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dmmd_ext import cli
from dmmd_ext.checkpoint import load_model
from dmmd_ext.data.hmm import hmm_dataset
from dmmd_ext.distill import DistillConfig, distill, load_student, sample_many
from dmmd_ext.models.noise import NoiseInput
from dmmd_ext.models.registry import build_model, model_spec, new_model
from dmmd_ext.processes import make_process
from dmmd_ext.training import TrainConfig, train_teacher
from conftest import NEUTRAL_CWD, child_env
import own_models

TINY = ["--data", "hmm", "--hmm-preset", "toy", "--n-train", "64", "--no-progress",
        "--device", "cpu", "--batch-size", "8", "--eval-every", "0", "--threads", "1"]


@pytest.fixture(scope="module")
def toy():
    ds = hmm_dataset("toy", n_train=64, n_val=16, entropy_samples=100)
    return ds, make_process("masked", ds.vocab_size)


def _train_cfg(steps=3):
    return TrainConfig(steps=steps, batch_size=8, eval_every=0, save_every=0, ema=0.0,
                       device="cpu", progress=False)


def test_teacher_with_a_foreign_config_distills(toy, tmp_path):
    """Blocker 1: `.config` that is not a TransformerConfig (a PreTrainedModel's, or a
    wrapper's self.config = hf.config) used to stop distill with 'outputs None logits'."""
    ds, proc = toy
    torch.manual_seed(0)
    teacher = own_models.ForeignConfigDenoiser(proc.input_vocab_size, ds.vocab_size)
    train_teacher(teacher, proc, ds, _train_cfg(), tmp_path / "t", resume=False)
    cfg = DistillConfig(k=2, steps=4, batch_size=8, d_noise=4, progress=False, device="cpu",
                        log_every=1)
    res = distill(teacher.eval(), proc, ds, cfg, tmp_path / "s")
    assert res["steps"] == 4
    # a model returning the wrong logits is named by shape, not by a config field
    bad = own_models.ForeignConfigDenoiser(proc.input_vocab_size, ds.vocab_size + 3)
    with pytest.raises(ValueError, match=r"returns \(1, 6, 7\).*needs logits \[1, 6, 4\]"):
        distill(bad, proc, ds, cfg, tmp_path / "bad")


def test_generic_noise_input_starts_equal_and_learns(toy):
    ds, proc = toy
    torch.manual_seed(0)
    base = own_models.ConvDenoiser(proc.input_vocab_size, ds.vocab_size)
    student = NoiseInput(base, 5)
    z = proc.prior(3, ds.seq_len)
    t = torch.rand(3)
    eps = torch.randn(3, ds.seq_len, 5)
    assert torch.equal(student(z, t, eps), base(z, t))  # zero-initialized projection
    with torch.no_grad():
        student.noise_proj.weight.normal_()
    assert not torch.allclose(student(z, t, eps), base(z, t))
    with pytest.raises(ValueError, match=r"noise: expected shape \(3, 6, 5\)"):
        student(z, t, eps[..., :2])
    assert student.d_noise == 5 and "noise_proj.weight" in student.state_dict()
    with pytest.raises(ValueError, match="has no nn.Embedding"):
        NoiseInput(torch.nn.Linear(2, 2), 3)


def test_factory_model_checkpoints_rebuild(toy, tmp_path):
    """Blocker 2: a model given as module:factory is recorded in the checkpoint and
    rebuilt by load_model / load_student (it used to raise 'unknown model arch')."""
    ds, proc = toy
    torch.manual_seed(0)
    model = new_model("own_models:conv_denoiser", proc.input_vocab_size, ds.vocab_size,
                      ds.seq_len, "masked", {"width": 12})
    spec = model_spec(model)
    assert spec == {"arch": "own_models:conv_denoiser",
                    "args": {"vocab_in": 5, "vocab_out": 4, "max_len": 6, "width": 12}}
    train_teacher(model, proc, ds, _train_cfg(), tmp_path / "t", resume=False)
    again, _, cfg = load_model(tmp_path / "t" / "checkpoint")
    assert cfg["model"] == spec and isinstance(again, own_models.ConvDenoiser)
    z, t = proc.prior(2, ds.seq_len), torch.full((2,), 0.5)
    assert torch.allclose(again(z, t), model.eval()(z, t))
    distill(again, proc, ds, DistillConfig(k=2, steps=2, batch_size=4, d_noise=3, progress=False,
                                           device="cpu"), tmp_path / "s")
    student, _, k, scfg = load_student(tmp_path / "s" / "checkpoint")
    assert isinstance(student, NoiseInput) and student.d_noise == 3 and k == 2
    assert scfg["model"] == {**spec, "d_noise": 3}
    x = sample_many(student, proc, 2, 5, ds.seq_len)
    assert x.shape == (5, 6)
    with pytest.raises(ImportError, match="cannot import module 'no_such_pkg'"):
        build_model({"arch": "no_such_pkg:make"})
    with pytest.raises(ValueError, match="expected 'ours'.*got 'bad arch'"):
        build_model({"arch": "bad arch"})


def test_factory_model_through_every_command(tmp_path, capsys):
    run, stu = tmp_path / "t", tmp_path / "s"
    assert cli.main(["train-teacher", "--run-dir", str(run), "--model", "own_models:conv_denoiser",
                     "--model-arg", "width=12", "--steps", "3", *TINY]) == 0
    assert json.loads((run / "checkpoint" / "config.json").read_text())["model"]["args"]["width"] == 12
    assert cli.main(["sample", "--run-dir", str(run), "--steps", "3", "--batch", "4",
                     "--device", "cpu", "--no-progress"]) == 0
    assert cli.main(["distill", "--teacher", str(run), "--run-dir", str(stu), "--k", "2",
                     "--steps", "2", "--batch-size", "4", "--d-noise", "3", "--no-progress",
                     "--device", "cpu"]) == 0
    assert cli.main(["sample", "--run-dir", str(stu), "--batch", "4", "--device", "cpu",
                     "--no-progress"]) == 0
    assert cli.main(["eval", str(run), str(stu), "--steps", "2", "--no-reference", "--no-plots",
                     "--n-samples", "8", "--half-batch", "2", "--device", "cpu", "--no-progress",
                     "--out", str(tmp_path / "ev")]) == 0
    rec = json.loads((tmp_path / "ev" / "eval.json").read_text())["records"]
    assert {r["label"] for r in rec} >= {"t", "s"}
    names = sorted(p.name for p in (run / "samples").glob("*.pt"))
    assert names == ["step3_n3_T1_p1_k0_seed0_b4.pt"]


def test_resume_refuses_changed_settings_and_reports_finished(tmp_path, capsys):
    run = str(tmp_path / "r")
    base = ["train-teacher", "--run-dir", run, "--steps", "2", "--d-model", "16", "--n-layers",
            "1", *TINY]
    assert cli.main(base) == 0
    capsys.readouterr()
    assert cli.main(base) == 0  # the same command again: finished, nothing is trained
    assert "is finished" in capsys.readouterr().err
    assert cli.main(base + ["--lr", "0.002"]) == 2
    err = capsys.readouterr().err
    assert "train.lr: 0.001 -> 0.002" in err and "--no-resume" in err and "--force-resume" in err
    assert cli.main(base + ["--process", "uniform"]) == 2
    assert "process.kind: 'masked' -> 'uniform'" in capsys.readouterr().err
    # more steps continue the run; --no-resume starts over with a clean log
    assert cli.main(base[:3] + ["--steps", "3"] + base[5:]) == 0
    steps = [r["step"] for r in map(json.loads, open(Path(run) / "log.jsonl"))]
    assert steps[-1] == 3
    assert cli.main(base + ["--lr", "0.002", "--no-resume"]) == 0
    steps = [r["step"] for r in map(json.loads, open(Path(run) / "log.jsonl"))]
    assert steps == [1, 2]
    assert cli.main(base + ["--lr", "0.003", "--steps", "4", "--force-resume"]) == 0


def test_ctrl_c_saves_a_checkpoint_and_resumes(toy, tmp_path):
    ds, proc = toy
    torch.manual_seed(0)
    model = own_models.InterruptAt(proc.input_vocab_size, ds.vocab_size, at=3)
    res = train_teacher(model, proc, ds, _train_cfg(steps=10), tmp_path / "t", resume=False)
    assert res["interrupted"] and res["steps"] == 3
    assert json.loads((tmp_path / "t" / "checkpoint" / "config.json").read_text())["step"] == 3
    model.at = -1
    res = train_teacher(model, proc, ds, _train_cfg(steps=10), tmp_path / "t")
    assert res["steps"] == 10 and "interrupted" not in res


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps: expected a value >0, got 0"),
    (["--lr", "-1"], "--lr: expected a value >0, got -1.0"),
    (["--ema", "1.5"], "--ema: expected a value [0,1), got 1.5"),
    (["--data-path", "x.bin"], "--data-path: only used with --data tokens (got --data hmm)"),
    (["--model", "nope"], "model: expected 'ours'"),
    (["--device", "gpu"], "--device: expected auto, cpu, cuda or cuda:N, got 'gpu'"),
    (["--model", "own_models:conv_denoiser", "--model-arg", "depth=3"],
     "got an unexpected keyword argument 'depth'; it takes ['vocab_in', 'vocab_out', 'max_len', 'width']"),
    (["--model-arg", "width"], "--model-arg: expected KEY=VALUE, got 'width'"),
    (["--model-arg", "widht=3"], "--model ours (--model-arg): got an unexpected keyword argument"),
])
def test_flags_are_checked_before_work(tmp_path, capsys, args, message):
    assert cli.main(["train-teacher", "--run-dir", str(tmp_path / "r"), *TINY, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "checkpoint").exists()


@pytest.mark.parametrize("toml, message", [
    ('steps = 2.5\n', "--steps: expected an integer, got 2.5"),
    ('steps = 0\n', "--steps: expected a value >0, got 0"),
    ('process = "gaussian"\n', "--process: expected one of ['masked', 'uniform'], got 'gaussian'"),
    ('top_p = 2.0\n', None),  # not a train-teacher option
    ('[a]\nsteps = 3\n[b]\nsteps = 4\n', "option 'steps' is set twice (a.steps and b.steps)"),
])
def test_toml_values_go_through_the_same_checks(tmp_path, capsys, toml, message):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'run_dir = "{tmp_path / "r"}"\n' + toml)
    assert cli.main(["train-teacher", "--config", str(cfg), *TINY]) == 2
    err = capsys.readouterr().err
    assert (message or "unknown options ['top_p']") in err


def test_toml_strings_are_converted_or_refused_by_argparse(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'run_dir = "{tmp_path / "r"}"\nsteps = "ten"\n')
    with pytest.raises(SystemExit) as e:
        cli.main(["train-teacher", "--config", str(cfg), *TINY])
    assert e.value.code == 2 and "--steps: invalid int value: 'ten'" in capsys.readouterr().err


def test_every_command_takes_threads_and_debug():
    parser, cmds = cli.build_parser()
    for name in cmds:
        sp = parser._subparsers._group_actions[0].choices[name]
        assert "--threads" in sp._option_string_actions, name
        assert "--debug" in sp._option_string_actions, name


def test_torchrun_cli_train_and_distill(tmp_path):
    """`torchrun --nproc_per_node 2 -m dmmd_ext.cli ...` (gloo on CPU, world size 2)."""
    env = child_env(OMP_NUM_THREADS="1")
    run, stu = tmp_path / "t", tmp_path / "s"
    base = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--master_port", "29533", "-m", "dmmd_ext.cli"]
    r = subprocess.run(base + ["train-teacher", "--run-dir", str(run), "--steps", "2",
                               "--d-model", "16", "--n-layers", "1", *TINY],
                       env=env, cwd=NEUTRAL_CWD, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((run / "checkpoint" / "config.json").read_text())["world_size"] == 2
    r = subprocess.run(base + ["distill", "--teacher", str(run), "--run-dir", str(stu), "--k", "2",
                               "--steps", "2", "--batch-size", "4", "--no-progress",
                               "--device", "cpu"],
                       env=env, cwd=NEUTRAL_CWD, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = json.loads((stu / "checkpoint" / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["step"] == 2


def test_relative_data_paths_are_recorded_absolute(tmp_path, monkeypatch, capsys):
    """Train in one directory with a relative --data-path, distill from another; a
    distillation rerun with another k is refused with the difference."""
    import numpy as np

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    np.save(work / "toks.npy", np.random.default_rng(0).integers(0, 6, size=(40, 8)).astype(np.uint8))
    monkeypatch.chdir(work)
    small = ["--no-progress", "--device", "cpu", "--threads", "1", "--batch-size", "4"]
    assert cli.main(["train-teacher", "--run-dir", "t", "--data", "tokens", "--data-path",
                     "toks.npy", "--steps", "2", "--d-model", "16", "--n-layers", "1",
                     "--eval-every", "0", *small]) == 0
    rec = json.loads((work / "t" / "checkpoint" / "config.json").read_text())["data_args"]
    assert rec["data_path"] == str(work / "toks.npy")
    monkeypatch.chdir(elsewhere)
    args = ["distill", "--teacher", str(work / "t"), "--run-dir", "s", "--steps", "2", *small]
    assert cli.main(args + ["--k", "2"]) == 0
    capsys.readouterr()
    assert cli.main(args + ["--k", "3"]) == 2
    assert "distill.k: 2 -> 3" in capsys.readouterr().err


def test_ctrl_c_during_distillation_saves_and_resumes(toy, tmp_path):
    ds, proc = toy
    torch.manual_seed(0)
    teacher = own_models.InterruptAt(proc.input_vocab_size, ds.vocab_size, at=3).eval()
    cfg = DistillConfig(k=2, steps=8, batch_size=4, d_noise=0, progress=False, device="cpu",
                        save_every=0)
    res = distill(teacher, proc, ds, cfg, tmp_path / "s")
    assert res["interrupted"] and res["steps"] == 3
    assert json.loads((tmp_path / "s" / "checkpoint" / "config.json").read_text())["step"] == 3
    teacher.at = -1
    res = distill(teacher, proc, ds, cfg, tmp_path / "s")
    assert res["steps"] == 8 and "interrupted" not in res
