"""Data parallelism (dmmd_ext/parallel.py, dist_checkpoint.py): FSDP2 and DDP at
world size 2 (gloo, CPU) against one process, gradient accumulation, sharded
checkpoints resumed at another world size, the exported student on one process."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from safetensors.torch import load_file

from dmmd_ext import dist_checkpoint as dck
from dmmd_ext import parallel as par
from dmmd_ext.data.hmm import hmm_dataset
from dmmd_ext.distill import DistillConfig, distill, load_student, sample_many
from dmmd_ext.models.transformer import Transformer, TransformerConfig
from dmmd_ext.processes import make_process
from dmmd_ext.training import TrainConfig, train_teacher
from conftest import NEUTRAL_CWD, PKG_ROOT, child_env

STEPS, B = 4, 4  # iterations; micro-batch size. Global batch: 4 micro-batches.


def setup_models(seed=0):
    torch.manual_seed(seed)
    ds = hmm_dataset("toy", n_train=200, n_val=16, entropy_samples=200)
    proc = make_process("masked", ds.vocab_size)
    mc = TransformerConfig(vocab_in=proc.input_vocab_size, vocab_out=ds.vocab_size,
                           max_len=ds.seq_len, d_model=16, n_layers=2, n_heads=2)
    return ds, proc, Transformer(mc), {"arch": "transformer", **mc.to_dict()}


def dcfg(**kw):
    # lr high enough that a wrong gradient shows; grad_clip on (global norm under FSDP)
    base = dict(k=2, steps=STEPS, batch_size=B, lr=3e-3, log_every=1, save_every=0,
                progress=False, device="cpu", rng="global", ema=0.9, grad_clip=0.5)
    return DistillConfig(**{**base, **kw})


def tcfg(**kw):
    base = dict(steps=3, batch_size=B, lr=3e-3, warmup=1, eval_every=3, eval_batches=1,
                save_every=0, log_every=1, progress=False, device="cpu", rng="global")
    return TrainConfig(**{**base, **kw})


# The world-2 half, run by torchrun: each run is named, the test compares them.
_SCRIPT = r"""
import sys, torch
sys.path[:0] = [sys.argv[2], sys.argv[3]]
torch.set_num_threads(1)
from test_parallel import setup_models, dcfg, tcfg, STEPS
from dmmd_ext.distill import distill
from dmmd_ext.training import train_teacher
root = sys.argv[1]
for name, kw in (("ddp", dict(parallel="ddp")), ("fsdp", {}), ("r12", {}),  # r12: resumes 1 -> 2
                 ("r21", dict(steps=STEPS // 2))):
    ds, proc, t, mc = setup_models()  # FSDP shards the teacher in place: a fresh one each run
    distill(t, proc, ds, dcfg(**{"parallel": "fsdp", "grad_accum": 2, **kw}), root + "/" + name)
ds, proc, m, mc = setup_models(seed=int(__import__("os").environ["RANK"]))  # ranks start apart
train_teacher(m, proc, ds, tcfg(parallel="fsdp", grad_accum=2), root + "/teacher_fsdp",
              model_config=mc)
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _world2(root: Path):
    script = root / "world2.py"
    script.write_text(_SCRIPT)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_port", str(_free_port()), str(script), str(root), PKG_ROOT,
                        str(Path(__file__).parent)],
                       env=child_env(OMP_NUM_THREADS="1"), cwd=NEUTRAL_CWD, capture_output=True,
                       text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-4000:]


@pytest.fixture
def one_process_group():
    """World-1 FSDP runs initialize a local process group: destroy it after the test."""
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def _weights(run):
    return load_file(str(Path(run) / "checkpoint" / "model.safetensors"))


def _close(a, b, tol=2e-5):
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < tol, worst


def _log(run):
    return [json.loads(line) for line in open(Path(run) / "log.jsonl")]


def test_fsdp_and_ddp_at_world_two_equal_one_process(tmp_path, one_process_group):
    """One process with 4 micro-batches per step = 2 ranks x 2 micro-batches, under
    DDP (no_sync on the inner one) and FSDP (set_requires_gradient_sync(False)):
    same losses and weights (up to reduction order); sharded checkpoints resume
    1 -> 2 and 2 -> 1 ranks to the same weights; the teacher trainer likewise."""
    ds, proc, t, mc = setup_models()
    distill(t, proc, ds, dcfg(grad_accum=4), tmp_path / "ref")
    ds, proc, t, mc = setup_models()
    distill(t, proc, ds, dcfg(parallel="fsdp", grad_accum=4, steps=STEPS // 2), tmp_path / "r12")
    assert dck.is_sharded(tmp_path / "r12" / "checkpoint")
    ds, proc, m, tmc = setup_models()
    train_teacher(m, proc, ds, tcfg(grad_accum=4), tmp_path / "teacher_ref", model_config=tmc)
    dist.destroy_process_group()

    _world2(tmp_path)

    ds, proc, t, mc = setup_models()  # 2 -> 1: the second half at world size 1
    distill(t, proc, ds, dcfg(parallel="fsdp", grad_accum=4), tmp_path / "r21")
    ref = _weights(tmp_path / "ref")
    for name in ("ddp", "fsdp", "r12", "r21"):
        _close(_weights(tmp_path / name), ref)
    # identical logged losses (the global batch mean) for the uninterrupted runs
    want = [r["gen_loss"] if "gen_loss" in r and r["gen_n"] else r["aux_loss"]
            for r in _log(tmp_path / "ref")]
    for name in ("ddp", "fsdp"):
        got = [r["gen_loss"] if "gen_loss" in r and r["gen_n"] else r["aux_loss"]
               for r in _log(tmp_path / name)]
        assert got == pytest.approx(want, rel=1e-5, abs=1e-7)
    rec = _log(tmp_path / "fsdp")[-1]
    assert len(rec["peak_mem_mb"]) == 2 and rec["tokens_per_s"] > 0
    cfg = json.loads((tmp_path / "r12" / "checkpoint" / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["step"] == STEPS
    _close(_weights(tmp_path / "teacher_fsdp"), _weights(tmp_path / "teacher_ref"))
    vals = [r for r in _log(tmp_path / "teacher_fsdp") if "val_nelbo_bpt" in r]
    assert vals and math.isfinite(vals[-1]["val_nelbo_bpt"])

    # the FSDP export is a usual student checkpoint: loads and samples on one process
    student, p2, k, scfg = load_student(tmp_path / "fsdp" / "checkpoint")
    assert k == 2 and scfg["distill"]["parallel"] == "fsdp"
    x = sample_many(student, p2, k, 8, ds.seq_len, seed=0)
    assert x.shape == (8, ds.seq_len) and int(x.max()) < ds.vocab_size


def test_accumulation_equals_large_batch_gradient():
    """N micro-batches with loss / N (parallel.grad_sync off on the inner ones)
    give the gradient of the whole batch."""
    _, _, m, _ = setup_models()
    z, t = torch.randint(0, 5, (8, 6)), torch.rand(8)
    m(z, t).square().mean().backward()
    full = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    for i in range(4):
        with par.grad_sync([m], i == 3):
            (m(z[2 * i:2 * i + 2], t[2 * i:2 * i + 2]).square().mean() / 4).backward()
    for a, p in zip(full, m.parameters()):
        torch.testing.assert_close(p.grad, a, rtol=1e-5, atol=1e-7)


def test_accumulation_is_not_a_no_op(tmp_path):
    """grad_accum changes the update (a test that could not fail otherwise)."""
    ds, proc, t, _ = setup_models()
    distill(t, proc, ds, dcfg(grad_accum=1, ema=0.0), tmp_path / "a1")
    distill(t, proc, ds, dcfg(grad_accum=2, ema=0.0), tmp_path / "a2")
    a, b = _weights(tmp_path / "a1"), _weights(tmp_path / "a2")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) > 1e-4


def test_option_errors(tmp_path, one_process_group):
    with pytest.raises(ValueError, match="parallel: expected one of"):
        dcfg(parallel="zero3")
    with pytest.raises(ValueError, match="grad_accum"):
        dcfg(grad_accum=0)
    with pytest.raises(ValueError, match=r"rng \(--rng\)"):
        dcfg(rng="node")
    with pytest.raises(ValueError, match="needs parallel='fsdp'"):
        dcfg(fsdp_bf16=True)
    with pytest.raises(ValueError, match="CPU offload needs a CUDA device"):
        par.shard(setup_models()[2], torch.device("cpu"), offload=True)
    with pytest.raises(ValueError, match="--fsdp: model Sequential has no block list"):
        par.shard(nn.Sequential(nn.Linear(2, 2)), torch.device("cpu"))
    # a DDP / single-process checkpoint is not resumed under --fsdp, and back
    def run(name, **kw):  # FSDP shards the teacher in place: a fresh one each run
        ds, proc, t, _ = setup_models()
        distill(t, proc, ds, dcfg(**kw), tmp_path / name)

    run("plain", steps=1)
    with pytest.raises(ValueError, match="not a sharded"):
        run("plain", steps=2, parallel="fsdp")
    run("sharded", steps=1, parallel="fsdp", rng="rank")
    with pytest.raises(ValueError, match="sharded checkpoint of an FSDP run"):
        run("sharded", steps=2, rng="rank")
    with pytest.raises(ValueError, match="trained with rng='rank'"):
        run("sharded", steps=2, parallel="fsdp")


def test_cli_fsdp_distill_then_sample(tmp_path, one_process_group):
    """`dmmd train-teacher --fsdp` and `dmmd distill --fsdp --grad-accum 2` (one
    process), then `dmmd sample` on the exported student."""
    from dmmd_ext.cli import main

    data = ["--data", "hmm", "--hmm-preset", "toy", "--n-train", "64"]
    common = ["--device", "cpu", "--no-progress", "--fsdp", "--grad-accum", "2", "--rng", "global",
              "--batch-size", "4", "--log-every", "1"]
    assert main(["train-teacher", "--run-dir", str(tmp_path / "t"), *data, *common, "--steps", "2",
                 "--d-model", "16", "--n-layers", "1", "--eval-every", "0"]) == 0
    assert dck.is_sharded(tmp_path / "t" / "checkpoint")
    assert main(["distill", "--teacher", str(tmp_path / "t"), "--run-dir", str(tmp_path / "s"),
                 *data, *common, "--k", "2", "--steps", "2"]) == 0
    cfg = json.loads((tmp_path / "s" / "checkpoint" / "config.json").read_text())
    assert cfg["distill"]["grad_accum"] == 2 and cfg["distill"]["parallel"] == "fsdp"
    dist.destroy_process_group()
    out = tmp_path / "x.pt"
    assert main(["sample", "--run-dir", str(tmp_path / "s"), "--batch", "4", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert torch.load(out).shape[0] == 4
