"""Medians (ms) of a fixed set of CPU op calls, for A/B comparisons of two builds:
run it once per build, alternating, with each tree first on PYTHONPATH.

    OMP_NUM_THREADS=1 PYTHONPATH=/path/to/tree python python/bench_ab.py --threads 1

Calls: generator loss forward + backward (float32 logits randn * 2, fresh outputs),
sample_categorical plain / T = 0.8 top-p 0.9 / top-k 50 (logits randn * 3), at
16384 x 256 and 256 x 50257; corrupt masked / uniform at 256 x 4096 (K = 50257).
Prints one JSON object: call -> median of --repeats calls after one warm-up."""

from __future__ import annotations

import argparse
import json
import time

import torch

from dmmd_ext import ops


def median_ms(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2] * 1e3


def calls(g: torch.Generator) -> dict:
    out = {}
    for N, V in ((16384, 256), (256, 50257)):
        S, T, A = (torch.randn(N, V, generator=g) * 2 for _ in range(3))
        w = torch.rand(N, generator=g)

        def loss(S=S, T=T, A=A, w=w):
            x = S.detach().requires_grad_()
            ops.generator_loss(x, T, A, w, 1.0, 1.0, 2.0).sum().backward()
        out[f"gen_loss fwd+bwd N={N} V={V}"] = loss
        lg = torch.randn(N, V, generator=g) * 3
        out[f"sample plain N={N} V={V}"] = lambda lg=lg: ops.sample_categorical(lg, 1.0, seed=1)
        out[f"sample T=0.8 top_p=0.9 N={N} V={V}"] = (
            lambda lg=lg: ops.sample_categorical(lg, 0.8, 0, 0.9, seed=1))
        out[f"sample top_k=50 N={N} V={V}"] = (
            lambda lg=lg: ops.sample_categorical(lg, 1.0, 50, seed=1))
    x = torch.randint(0, 50257, (256, 4096), generator=g)
    a = torch.rand(256, generator=g)
    for pr in ("masked", "uniform"):
        out[f"corrupt {pr} 256x4096"] = (
            lambda pr=pr: ops.corrupt(x, a, pr, 50257, seed=3, validate=False))
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--repeats", type=int, default=15)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    res = {k: median_ms(f, a.repeats) for k, f in calls(torch.Generator().manual_seed(0)).items()}
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
