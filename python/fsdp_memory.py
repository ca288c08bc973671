"""Per-rank peak memory of a D-MMD run under DDP or FSDP (docs/scaling.md).

    OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 python/fsdp_memory.py ddp  RUN_DIR
    OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 python/fsdp_memory.py fsdp RUN_DIR

A reference Transformer (d_model 512, 8 layers; --d-model/--n-layers) as teacher,
student and auxiliary, on CPU with gloo; prints the per-rank peak memory (max RSS
on CPU, max_memory_allocated on CUDA) of the last log line and the RSS before any
model was built (torch itself)."""

import argparse
import json
import os
from pathlib import Path

import torch

from dmmd_ext.data.hmm import hmm_dataset
from dmmd_ext.distill import DistillConfig, distill
from dmmd_ext.models.transformer import Transformer, TransformerConfig
from dmmd_ext.parallel import peak_memory_mb
from dmmd_ext.processes import make_process

ap = argparse.ArgumentParser()
ap.add_argument("parallel", choices=["ddp", "fsdp"])
ap.add_argument("run_dir")
ap.add_argument("--d-model", type=int, default=512)
ap.add_argument("--n-layers", type=int, default=8)
ap.add_argument("--steps", type=int, default=4)
a = ap.parse_args()
torch.set_num_threads(1)
base = peak_memory_mb(torch.device("cpu"))
ds = hmm_dataset("cycle", n_train=256, n_val=16, seq_len=32, entropy_samples=100)
proc = make_process("masked", ds.vocab_size)
torch.manual_seed(0)
teacher = Transformer(TransformerConfig(vocab_in=proc.input_vocab_size, vocab_out=ds.vocab_size,
                                        max_len=ds.seq_len, d_model=a.d_model,
                                        n_layers=a.n_layers, n_heads=8))
n = teacher.num_parameters()
distill(teacher, proc, ds, DistillConfig(k=4, steps=a.steps, batch_size=4, log_every=1,
                                         save_every=0, progress=False, device="cpu",
                                         parallel=a.parallel), a.run_dir, resume=False)
last = [json.loads(line) for line in open(Path(a.run_dir) / "log.jsonl")][-1]
if int(os.environ.get("RANK", "0")) == 0:
    print(json.dumps({"parallel": a.parallel, "params_per_network": n,
                      "rss_before_models_mb": round(base, 1), "peak_mem_mb": last["peak_mem_mb"],
                      "tokens_per_s": last["tokens_per_s"]}))
