"""The dmmd command: help, TOML configuration, a tiny train + sample end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dmmd_ext import cli
from conftest import NEUTRAL_CWD, child_env



def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "train-teacher" in out and "sample" in out


@pytest.mark.parametrize("cmd", ["train-teacher", "sample"])
def test_subcommand_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([cmd, "--help"])
    assert e.value.code == 0
    assert "--run-dir" in capsys.readouterr().out


def test_console_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "dmmd_ext.cli", "sample", "--help"],
                       cwd=NEUTRAL_CWD, capture_output=True, text=True, timeout=60,
                       env=child_env())
    assert r.returncode == 0, r.stderr
    assert "--top-p" in r.stdout


def test_extension_registry(monkeypatch, capsys):
    called = {}
    extra = cli.Command("hello", "say hello", lambda p: p.add_argument("--name", default="x"),
                        lambda a: called.update(name=a.name))
    monkeypatch.setattr(cli, "COMMANDS", cli.COMMANDS + [extra])
    assert cli.main(["hello", "--name", "dmmd"]) == 0
    assert called == {"name": "dmmd"}


def test_unknown_toml_key_is_an_error(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('run_dir = "x"\nlearning_rate = 3\n')
    assert cli.main(["train-teacher", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown options ['learning_rate']" in err and "Traceback" not in err
    with pytest.raises(cli.UsageError, match="unknown options"):  # --debug: the exception itself
        cli.main(["train-teacher", "--config", str(cfg), "--debug"])


def test_train_then_sample_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = tmp_path / "run.toml"
    # options from TOML (grouped in tables), one overridden by a flag
    cfg.write_text(f'run_dir = "{run}"\n[data]\ndata = "hmm"\nhmm_preset = "toy"\nn_train = 200\n'
                   '[train]\nsteps = 50\nbatch_size = 8\neval_every = 4\nsave_every = 4\n'
                   'eval_batches = 1\nd_model = 32\nn_layers = 1\n')
    assert cli.main(["train-teacher", "--config", str(cfg), "--steps", "4", "--no-progress"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["steps"] == 4 and (run / "checkpoint" / "model.safetensors").is_file()
    saved = json.loads((run / "checkpoint" / "config.json").read_text())
    assert saved["train"]["steps"] == 4 and saved["model"]["d_model"] == 32
    assert cli.main(["sample", "--run-dir", str(run), "--steps", "3", "--batch", "5",
                     "--top-p", "0.9"]) == 0
    out = json.loads(capsys.readouterr().out)
    x = torch.load(out["samples"])
    assert x.shape == (5, 6) and int(x.max()) < 4 and int(x.min()) >= 0
    assert Path(out["samples"]).parent == run / "samples"
    assert out["exact_nll_bpt"] > 0 and out["entropy_rate_bits"] > 0
    # the soft top-p of the distillation targets (like-with-like teacher samples)
    assert cli.main(["sample", "--run-dir", str(run), "--steps", "3", "--batch", "5",
                     "--soft-top-p", "0.8", "--delta", "3"]) == 0
    soft = json.loads(capsys.readouterr().out)
    assert soft["soft_top_p"] == 0.8 and soft["delta"] == 3.0
    assert "_soft0.8d3_" in Path(soft["samples"]).name and soft["samples"] != out["samples"]
    with pytest.raises(cli.UsageError, match="cannot be combined"):
        cli.main(["sample", "--run-dir", str(run), "--soft-top-p", "0.8", "--top-p", "0.9",
                  "--debug"])
