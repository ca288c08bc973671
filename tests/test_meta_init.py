"""Meta-device initialization under --fsdp (parallel.load_full_state, the distill
CLI's load_teacher, distill's teacher_weights): at world size 2 (gloo, CPU) the
meta-built, sharded teacher gives the logits of the normally loaded one, no rank
broadcasts, each keeps a shard only, and a distillation from it ends with the
weights of one from the normally loaded teacher."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from dmmd_ext import checkpoint as ckpt
from dmmd_ext import parallel as par
from dmmd_ext.distill import distill
from dmmd_ext.distill.cli import load_teacher
from conftest import NEUTRAL_CWD, PKG_ROOT, child_env
from test_parallel import _close, _free_port, _weights, dcfg, setup_models

_SCRIPT = r"""
import sys, torch
from pathlib import Path
sys.path[:0] = [sys.argv[2], sys.argv[3]]
torch.set_num_threads(1)
import torch.distributed as dist
from test_parallel import setup_models, dcfg
from dmmd_ext import parallel as par
from dmmd_ext.checkpoint import load_model
from dmmd_ext.distill import distill
from dmmd_ext.distill.cli import load_teacher

root = sys.argv[1]
ck, dev = Path(root) / "teacher", torch.device("cpu")
dist.init_process_group("gloo")
rank = dist.get_rank()
ds, proc, _, _ = setup_models()
g = torch.Generator().manual_seed(1)
z = torch.randint(0, proc.input_vocab_size, (3, ds.seq_len), generator=g)
t = torch.rand(3, generator=g)
normal = load_model(ck)[0]
par.shard(normal, dev, frozen=True)

real = dist.broadcast
def no_broadcast(*a, **k):
    raise AssertionError("the meta path broadcast a tensor")
dist.broadcast = no_broadcast
meta, _, _, w = load_teacher(ck, dcfg(parallel="fsdp"))
assert par.is_meta(meta) and w is not None
par.shard(meta, dev, frozen=True)
par.load_full_state(meta, dev, w)
dist.broadcast = real
with torch.no_grad():
    out = {"normal": normal(z, t), "meta": meta(z, t)}
out["local"] = sum(p.to_local().numel() for p in meta.parameters())
out["full"] = sum(p.numel() for p in meta.parameters())
torch.save(out, f"{root}/logits{rank}.pt")

distill(load_model(ck)[0], proc, ds, dcfg(parallel="fsdp"), root + "/d_normal")
meta, _, _, w = load_teacher(ck, dcfg(parallel="fsdp"))
distill(meta, proc, ds, dcfg(parallel="fsdp"), root + "/d_meta", teacher_weights=w)
"""


def _teacher_checkpoint(path: Path) -> tuple:
    """A teacher whose every weight matters (the zero-initialized adaLN too)."""
    ds, proc, model, mc = setup_models()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ckpt.save_checkpoint(path, model.state_dict(), {"model": mc, "process": proc.to_dict()}, 0)
    return ds, proc, model


def test_meta_init_at_world_two_equals_normal_loading(tmp_path):
    ds, proc, model = _teacher_checkpoint(tmp_path / "teacher")
    script = tmp_path / "meta2.py"
    script.write_text(_SCRIPT)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_port", str(_free_port()), str(script), str(tmp_path), PKG_ROOT,
                        str(Path(__file__).parent)],
                       env=child_env(OMP_NUM_THREADS="1"), cwd=NEUTRAL_CWD, capture_output=True,
                       text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-4000:]
    g = torch.Generator().manual_seed(1)
    z = torch.randint(0, proc.input_vocab_size, (3, ds.seq_len), generator=g)
    t = torch.rand(3, generator=g)
    with torch.no_grad():
        want = model.eval()(z, t)
    for rank in (0, 1):
        out = torch.load(tmp_path / f"logits{rank}.pt")
        assert float((out["meta"] - out["normal"]).abs().max()) < 1e-6
        assert float((out["meta"] - want).abs().max()) < 1e-6
        assert out["local"] < 0.6 * out["full"]  # a shard, not the whole teacher
    _close(_weights(tmp_path / "d_meta"), _weights(tmp_path / "d_normal"), tol=1e-6)


def test_transformer_has_no_unsaved_buffers_and_others_are_refused():
    assert par.unsaved_buffers(setup_models()[2]) == []

    class WithCache(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(2, 2)])
            self.blocks[0].register_buffer("cache", torch.ones(2), persistent=False)

    with torch.device("meta"):
        m = WithCache()
    assert par.unsaved_buffers(m) == ["blocks.0.cache"]
    with pytest.raises(ValueError, match=r"buffers that are not in its state dict \(blocks.0.cache"):
        par.load_full_state(m, torch.device("cpu"), {})


def test_meta_teacher_needs_fsdp_and_weights(tmp_path):
    ds, proc, _ = _teacher_checkpoint(tmp_path / "teacher")
    meta, _, _, w = load_teacher(tmp_path / "teacher", dcfg(parallel="fsdp"))
    with pytest.raises(ValueError, match=r"meta device: needs parallel='fsdp' \(--fsdp\)"):
        distill(meta, proc, ds, dcfg(), tmp_path / "a", teacher_weights=w)
    with pytest.raises(ValueError, match="meta device: needs teacher_weights"):
        distill(meta, proc, ds, dcfg(parallel="fsdp"), tmp_path / "b")
    with pytest.raises(ValueError, match=r"teacher_weights: do not match.*'head.bias'"):
        distill(meta, proc, ds, dcfg(parallel="fsdp"), tmp_path / "c",
                teacher_weights={k: v for k, v in w.items() if k != "head.bias"})
    plain, _, _, none = load_teacher(tmp_path / "teacher", dcfg())  # not --fsdp: on the CPU
    assert none is None and not par.is_meta(plain)
