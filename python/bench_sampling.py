"""Benchmark sample_categorical, posterior_step and corrupt against eager PyTorch.

Baselines, measured in the same run on the same inputs:
  multinomial : torch.multinomial(softmax(l / T)) (+ sort-based top-p when on)
  gumbel      : argmax(l / T - log(-log(torch.rand))) (float32, 24-bit noise)
  eager step  : multinomial x, then the posterior move with torch.rand / torch.where
  eager corrupt: torch.rand < 1 - a_t, then torch.where with MASK / torch.randint
Each number is the median of --repeats timed calls after --warmup calls (CPU:
time.perf_counter; CUDA: CUDA events). Prints a markdown table with the
machine and writes --json if given.

    PYTHONPATH=. python python/bench_sampling.py [--device cpu|cuda|all] [--json out.json]
        [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

import dmmd_ext
from dmmd_ext import ops


# ---- eager baselines ---------------------------------------------------------------------

def top_p_filter(l, top_p):
    srt, idx = l.sort(-1, descending=True)
    probs = srt.softmax(-1)
    drop = probs.cumsum(-1) - probs >= top_p
    srt = srt.masked_fill(drop, float("-inf"))
    return torch.full_like(l, float("-inf")).scatter(-1, idx, srt)


def eager_multinomial(l, T, top_p):
    x = l.float() / T
    if top_p < 1.0:
        x = top_p_filter(x, top_p)
    p = x.softmax(-1)
    return torch.multinomial(p.reshape(-1, p.shape[-1]), 1).reshape(p.shape[:-1])


def eager_topk(l, T, k):
    v, i = l.topk(k, -1)
    j = eager_multinomial(v, T, 1.0)
    return i.gather(-1, j[..., None]).squeeze(-1)


def eager_gumbel(l, T, top_p):
    x = l.float() / T
    if top_p < 1.0:
        x = top_p_filter(x, top_p)
    u = torch.rand_like(x)
    return (x - torch.log(-torch.log(u))).argmax(-1)


def eager_posterior(z, logits, a_t, a_s, process, mask_id):
    K = logits.shape[-1]
    x = eager_multinomial(logits, 1.0, 1.0).to(z.dtype)
    u = torch.rand(z.shape, device=z.device, dtype=torch.float64)
    if process == "masked":
        masked = z == mask_id
        reveal = u < (a_s - a_t) / (1 - a_t)
        return torch.where(masked & reveal, x, z), torch.where(masked, x, z)
    A, B = a_t / a_s, a_s
    wz = A * (1 - B) / K + torch.where(z == x, A * B, 0.0)
    wx = torch.full_like(wz, (1 - A) * B / K)
    wu = (1 - A) * (1 - B) / K
    U = u * (wz + wx + wu)
    tok = torch.randint(0, K, z.shape, device=z.device, dtype=z.dtype)
    return torch.where(U < wz, z, torch.where(U < wz + wx, x, tok)), x


# ---- timing ------------------------------------------------------------------------------

def timeit(fn, device, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    if device == "cuda":
        torch.cuda.synchronize()
        for _ in range(repeats):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            torch.cuda.synchronize()
            times.append(s.elapsed_time(e))
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def sampling_cases(device):
    g = torch.Generator(device=device).manual_seed(0)
    small = torch.randn(64 * 1024, 256, device=device, generator=g) * 3
    large = torch.randn(256 if device == "cpu" else 4096, 50257, device=device, generator=g) * 3
    for name, l in [(f"{l_.shape[0]} x V={l_.shape[1]}", l_) for l_ in (small, large)]:
        for T, k, p in [(1.0, 0, 1.0), (0.8, 0, 0.9), (1.0, 50, 1.0)]:
            knobs = f"T={T}" + (f", top_k={k}" if k else "") + (f", top_p={p}" if p < 1 else "")
            ours = lambda l=l, T=T, k=k, p=p: ops.sample_categorical(l, T, k, p, seed=1)  # noqa: E731
            if k:
                base = lambda l=l, T=T, k=k: eager_topk(l, T, k)  # noqa: E731
                yield f"sample {name}, {knobs}", ours, {"topk+multinomial": base}
            else:
                yield (f"sample {name}, {knobs}", ours,
                       {"multinomial": lambda l=l, T=T, p=p: eager_multinomial(l, T, p),
                        "gumbel(rand)": lambda l=l, T=T, p=p: eager_gumbel(l, T, p)})


def posterior_cases(device):
    g = torch.Generator(device=device).manual_seed(1)
    B, L, K = 64, 1024, 256
    logits = torch.randn(B, L, K, device=device, generator=g) * 3
    for process in ["masked", "uniform"]:
        z = torch.randint(0, K, (B, L), device=device, generator=g)
        if process == "masked":
            z[torch.rand(B, L, device=device, generator=g) < 0.5] = K
        ours = lambda z=z, pr=process: ops.posterior_step(z, logits, 0.3, 0.6, pr, seed=2,  # noqa: E731
                                                          validate=False)
        base = lambda z=z, pr=process: eager_posterior(z, logits, 0.3, 0.6, pr, K)  # noqa: E731
        yield f"posterior {process} {B}x{L}, K={K}", ours, {"eager step": base}


def eager_corrupt(x0, a, process, K):
    hit = torch.rand(x0.shape, device=x0.device) < (1 - a)[:, None]
    repl = (torch.full_like(x0, K) if process == "masked"
            else torch.randint(0, K, x0.shape, device=x0.device, dtype=x0.dtype))
    return torch.where(hit, repl, x0)


def corrupt_cases(device):
    g = torch.Generator(device=device).manual_seed(2)
    B, L, K = 256, 4096, 50257
    x0 = torch.randint(0, K, (B, L), device=device, generator=g)
    a = torch.rand(B, device=device, generator=g)
    for process in ["masked", "uniform"]:
        ours = lambda pr=process: ops.corrupt(x0, a, pr, K, seed=3, validate=False)  # noqa: E731
        base = lambda pr=process: eager_corrupt(x0, a, pr, K)  # noqa: E731
        yield f"corrupt {process} {B}x{L}, K={K}", ours, {"eager corrupt": base}


def machine(device):
    if device == "cuda":
        return torch.cuda.get_device_name()
    model = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", default=None, help="write results here")
    ap.add_argument("--only", default="", help="run only the cases whose name contains this")
    args = ap.parse_args()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    results = []
    for dev in devices:
        print(f"\n### {dev}: {machine(dev)} (torch {torch.__version__}, dmmd_ext "
              f"{dmmd_ext.__version__})\n")
        print("| case | dmmd_ext ms | baseline | baseline ms | speedup |")
        print("|---|---|---|---|---|")
        cases = list(sampling_cases(dev)) + list(posterior_cases(dev)) + list(corrupt_cases(dev))
        for case, ours, bases in cases:
            if args.only not in case:
                continue
            t_ours = timeit(ours, dev, args.warmup, args.repeats)
            for bname, base in bases.items():
                t_base = timeit(base, dev, args.warmup, args.repeats)
                print(f"| {case} | {t_ours:.2f} | {bname} | {t_base:.2f} | "
                      f"{t_base / t_ours:.2f}x |", flush=True)
                results.append(dict(device=dev, machine=machine(dev), case=case, ours_ms=t_ours,
                                    baseline=bname, baseline_ms=t_base,
                                    speedup=t_base / t_ours))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
