"""Benchmark of the fused logit-moment losses (dmmd_ext.ops.generator_loss,
auxiliary_loss) against the eager PyTorch composition (softmax / log_softmax in
float32, sort-based nucleus) and torch.compile of that same composition.

Reports, per case, forward+backward time (median of --repeats after --warmup)
and peak extra memory during one forward+backward (CUDA: the caching allocator's
peak above the inputs; CPU: peak resident memory above the inputs, sampled every
0.2 ms by a thread reading /proc/self/statm), with ratios against the eager
baseline measured in the same run. On CUDA also the bandwidth of the fused op:
bytes that must move (forward reads S, T, A; backward reads them again and
writes dS: 7 N V elements) per second, as a fraction of a measured device copy.

    python python/bench_losses.py                      # CPU presets (+ CUDA if present)
    python python/bench_losses.py --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time

import torch

import dmmd_ext
from dmmd_ext import ops

CPU_CASES = [  # (loss, N, V, dtype, top_p)
    ("gen", 16384, 256, "bfloat16", 1.0),
    ("gen", 1024, 32768, "bfloat16", 1.0),
    ("gen", 1024, 50257, "bfloat16", 1.0),
    ("gen", 1024, 50257, "bfloat16", 0.9),
    ("aux", 1024, 50257, "bfloat16", 1.0),
]
CUDA_CASES = [
    ("gen", 16384, 50257, "bfloat16", 1.0),
    ("gen", 16384, 50257, "bfloat16", 0.9),
    ("gen", 65536, 256, "bfloat16", 1.0),
    ("gen", 4096, 262144, "bfloat16", 1.0),
    ("aux", 16384, 50257, "bfloat16", 1.0),
]


# ---- the eager composition (float32 math, as a user would write it)

def eager_sharpened_log_probs(t, tau, top_p, delta):
    x = t.float() / tau
    if top_p < 1.0 and delta > 0.0:
        probs = torch.softmax(x, -1)
        sp, order = probs.sort(-1, descending=True)
        k = (sp.cumsum(-1) < top_p).sum(-1, keepdim=True).clamp(max=x.shape[-1] - 1)
        thr = x.gather(-1, order.gather(-1, k))
        x = x - delta * (x < thr).float()
    return torch.log_softmax(x, -1)


def eager_generator_loss(s, t, a, w, tau, top_p, delta):
    p = torch.softmax(s.float(), -1)
    d = torch.log_softmax(a.float(), -1) - eager_sharpened_log_probs(t, tau, top_p, delta)
    return w * (p * d).sum(-1)


def eager_auxiliary_loss(a, t, s, w, tau, top_p, delta):
    c = torch.softmax(s.float(), -1) + eager_sharpened_log_probs(t, tau, top_p, delta).exp()
    return -w * (c * torch.log_softmax(a.float(), -1)).sum(-1)


def fused_generator_loss(s, t, a, w, tau, top_p, delta):
    return ops.generator_loss(s, t, a, w, tau, top_p, delta)


def fused_auxiliary_loss(a, t, s, w, tau, top_p, delta):
    return ops.auxiliary_loss(a, t, s, w, tau, top_p, delta)


# ---- measurement

class RssPeak:
    """Peak resident memory above the level at start, sampled by a thread."""

    def __init__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")

    def rss(self):
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def __enter__(self):
        self.base = self.peak = self.rss()
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self.stop:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.0002)

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()
        self.peak = max(self.peak, self.rss())
        self.extra = self.peak - self.base


def make_inputs(N, V, dtype, device, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    xs = [(torch.randn(N, V, generator=g) * 2).to(dtype).to(device) for _ in range(3)]
    w = torch.rand(N, generator=g).to(device)
    return xs, w


def step(fn, diff, others, w, tau, top_p, delta):
    x = diff.detach().requires_grad_()
    loss = fn(x, *others, w, tau, top_p, delta)
    loss.sum().backward()
    return x.grad


def time_fn(fn, diff, others, w, args, device, warmup, repeats):
    for _ in range(warmup):
        step(fn, diff, others, w, *args)
    times = []
    for _ in range(repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step(fn, diff, others, w, *args)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            step(fn, diff, others, w, *args)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_extra(fn, diff, others, w, args, device):
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(fn, diff, others, w, *args)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with RssPeak() as m:
        step(fn, diff, others, w, *args)
    return m.extra


def copy_bandwidth(device, nbytes=1 << 30, repeats=10):
    x = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device)
    y = torch.empty_like(x)
    y.copy_(x)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        y.copy_(x)
    end.record()
    torch.cuda.synchronize()
    return 2 * nbytes * repeats / (start.elapsed_time(end) / 1e3)


def run_case(case, device, warmup, repeats, compile_baseline, tau=1.0, delta=2.0):
    loss, N, V, dtype_name, top_p = case
    dtype = getattr(torch, dtype_name)
    (s, t, a), w = make_inputs(N, V, dtype, device)
    if loss == "gen":  # differentiate w.r.t. the student
        diff, others = s, (t, a)
        fns = {"fused": fused_generator_loss, "eager": eager_generator_loss}
    else:  # differentiate w.r.t. the auxiliary; soft targets = student logits
        diff, others = a, (t, s)
        fns = {"fused": fused_auxiliary_loss, "eager": eager_auxiliary_loss}
    if compile_baseline:
        fns["compiled"] = torch.compile(fns["eager"], dynamic=False)
    args = (tau, top_p, delta)
    row = {"loss": loss, "N": N, "V": V, "dtype": dtype_name, "top_p": top_p, "device": device}
    for name, fn in fns.items():
        row[f"{name}_s"] = time_fn(fn, diff, others, w, args, device, warmup, repeats)
        row[f"{name}_peak_extra_bytes"] = peak_extra(fn, diff, others, w, args, device)
    for name in fns:
        if name != "eager":
            row[f"speedup_{name}_vs_eager"] = row["eager_s"] / row[f"{name}_s"]
    row["speedup_fused_vs_compiled"] = (row["compiled_s"] / row["fused_s"]
                                        if "compiled_s" in row else None)
    moved = 7 * N * V * torch.tensor([], dtype=dtype).element_size()
    row["fused_bytes_moved"] = moved
    row["fused_bandwidth_Bps"] = moved / row["fused_s"]
    return row


def machine(device):
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def fmt_bytes(b):
    return f"{b / 2**20:.1f} MiB" if b >= 2**20 else f"{b / 2**10:.1f} KiB"


def markdown(rows, copy_bw):
    out = ["| loss | device | N | V | dtype | top_p | fused ms | eager ms | compiled ms "
           "| fused vs eager | fused vs compiled | fused extra mem | eager extra mem "
           "| compiled extra mem |" + (" fused GB/s (of copy) |" if copy_bw else ""),
           "|---" * (14 + (1 if copy_bw else 0)) + "|"]
    for r in rows:
        comp = r.get("compiled_s")
        comp_ms = "" if comp is None else f"{1e3 * comp:.2f}"
        comp_x = "" if comp is None else f"{r['speedup_fused_vs_compiled']:.2f}x"
        comp_mem = "" if comp is None else fmt_bytes(r["compiled_peak_extra_bytes"])
        line = (f"| {r['loss']} | {r['device']} | {r['N']} | {r['V']} | {r['dtype']} "
                f"| {r['top_p']} | {1e3 * r['fused_s']:.2f} | {1e3 * r['eager_s']:.2f} "
                f"| {comp_ms} | {r['speedup_fused_vs_eager']:.2f}x | {comp_x} "
                f"| {fmt_bytes(r['fused_peak_extra_bytes'])} "
                f"| {fmt_bytes(r['eager_peak_extra_bytes'])} | {comp_mem} |")
        if copy_bw:
            bw = r["fused_bandwidth_Bps"]
            line += (f" {bw / 1e9:.0f} ({bw / copy_bw[r['device']]:.0%}) |"
                     if r["device"] in copy_bw else " |")
        out.append(line)
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    ap.add_argument("--quick", action="store_true", help="only the first case per device")
    ap.add_argument("--json", help="also write the rows (and machine facts) to this file")
    args = ap.parse_args()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    rows, copy_bw = [], {}
    for device in devices:
        cases = CPU_CASES if device == "cpu" else CUDA_CASES
        if device == "cuda":
            copy_bw["cuda"] = copy_bandwidth("cuda")
        for case in cases[:1] if args.quick else cases:
            row = run_case(case, device, args.warmup, args.repeats, not args.no_compile)
            rows.append(row)
            print(markdown([row], copy_bw).splitlines()[-1], flush=True)
    info = {d: machine(d) for d in devices}
    print(f"\nmachine: {info}; torch {torch.__version__}; dmmd_ext {dmmd_ext.__version__}")
    if copy_bw:
        print(f"device copy bandwidth: {copy_bw['cuda'] / 1e9:.0f} GB/s")
    print(markdown(rows, copy_bw))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "torch": torch.__version__,
                       "copy_bandwidth_Bps": copy_bw, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
