"""Fused LM head + D-MMD losses (dmmd_ext.ops.fused_head): one forward + backward of
the generator and the auxiliary loss from hidden states, against

- eager:          logits = F.linear(h, W) for each model, the eager float32 loss of
                  bench_baselines (what a user would write), autograd;
- matmul+fused:   the same logits, then our fused loss ops (ops.generator_loss /
                  ops.auxiliary_loss), autograd through the matmul;
- fused-head:     ops.linear_generator_loss / ops.linear_auxiliary_loss (row chunks,
                  the logits never materialized);
- liger-jsd:      Liger-Kernel's fused linear JSD of student vs teacher (CUDA, only if
                  liger_kernel imports; a different, two-model loss, for scale only).

Reported per case: the median time (10th-90th percentile) and the peak extra memory
of one call (bench_common.peak_extra_bytes: CUDA, the allocator's peak above what is
allocated before the call; CPU, peak RSS above the level at the call's start,
sampled every 0.2 ms, in a fresh process: child_peak). Both include the gradients
dh, dW the call produces.

    python python/bench_fused_head.py --device cpu --threads 2           # N = 1024 rows
    python python/bench_fused_head.py --device cuda                      # the GPU shapes
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_baselines as B  # noqa: E402
import bench_common as C  # noqa: E402

from dmmd_ext import ops  # noqa: E402

# (N rows, d, V). CPU: fewer rows than the GPU shapes (2 shared cores); the
# d = 4096, V = 128256 shape needs three 2 GiB float32 heads and is GPU only.
SHAPES = {"cuda": [(16384, 768, 50257), (8192, 4096, 128256)],
          "cpu": [(1024, 768, 50257)],
          "smoke": [(48, 16, 301)]}
IMPLS = ("eager", "matmul+fused", "fused-head", "liger-jsd")


def make_inputs(N, d, V, dtype, device, seed=0):
    """Three (h [N, d], W [V, d]) heads with logits of scale ~3, row weights in
    [0.5, 1.5), token ids. Drawn on the device (large heads)."""
    g = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, device=device) * scale).to(dtype)

    heads = [(randn(N, d), randn(V, d, scale=3.0 / d ** 0.5)) for _ in range(3)]
    w = torch.rand(N, generator=g, device=device) + 0.5
    ids = torch.randint(0, V, (N,), generator=g, device=device)
    return heads, w, ids


def _liger_jsd():
    mod = B.optional_module("liger_kernel.transformers.fused_linear_jsd")
    return None if mod is None else mod.LigerFusedLinearJSD()


def call(loss: str, impl: str, heads, w, ids, a):
    """One forward + backward; returns None when impl does not apply here."""
    (hs, ws), (ht, wt), (ha, wa) = heads
    kw = dict(tau=a.tau, top_p=a.top_p, delta=2.0)
    trained = (hs, ws) if loss == "generator" else (ha, wa)
    for x in trained:
        x.grad = None
    if impl == "liger-jsd":
        jsd = _liger_jsd() if a.device.startswith("cuda") and loss == "generator" else None
        if jsd is None:
            return None
        jsd(hs, ws, ht, wt).backward()
        return True
    if impl == "fused-head":
        fk = dict(kw, reduction="sum", chunk_size=a.chunk_size, memory_budget=a.memory_budget)
        if loss == "generator":
            out = ops.linear_generator_loss(hs, ws, ht, wt, ha, wa, w, **fk)
        else:
            out = ops.linear_auxiliary_loss(ha, wa, ht, wt, ids, w, **fk)
        out.backward()
        return True
    with torch.no_grad():
        t = F.linear(ht, wt)
    x = F.linear(*trained)
    if loss == "generator":
        with torch.no_grad():
            aux = F.linear(ha, wa)
        fn = B.generator_loss if impl == "eager" else ops.generator_loss
        out = fn(x, t, aux, w, **kw)
    else:
        fn = B.auxiliary_loss if impl == "eager" else ops.auxiliary_loss
        out = fn(x, t, ids, w, **kw)
    out.sum().backward()
    return True


def measure(loss, impl, heads, w, ids, a) -> dict:
    try:
        if call(loss, impl, heads, w, ids, a) is None:
            return {"skipped": "needs CUDA and liger_kernel" if impl == "liger-jsd" else "n/a"}
        C.sync(a.device)
        if a.device.startswith("cuda") or a.smoke:
            mem = C.peak_extra_bytes(lambda: call(loss, impl, heads, w, ids, a), a.device)
        else:
            mem = child_peak(loss, impl, heads[0][0].shape[0], heads[0][0].shape[1],
                             heads[0][1].shape[0], a)
        t = C.time_calls(lambda _i: call(loss, impl, heads, w, ids, a), a.device,
                         a.warmup, a.repeats)
    except Exception as e:  # noqa: BLE001 - an OOM in one baseline must not end the run
        C.release(a.device)
        return {"error": f"{type(e).__name__}: {str(e)[:200]}", "oom": C.is_oom(e)}
    C.release(a.device)
    return {"median_s": t.median_s, "p10_s": t.p10_s, "p90_s": t.p90_s, "peak_extra_B": mem}


# CPU peak RSS in a fresh process: after warm-up and timing calls glibc's heap holds
# freed blocks, and a call that touches them one after another (the fused head's
# chunk blocks) raises RSS above what is ever live at once (measured: +49 MiB per
# chunk at N = 2048, 1.3 GiB for 116 MiB live). The child pins the 128 KiB mmap
# threshold before anything large exists, so every block is mapped and unmapped.
def child_peak(loss, impl, N, d, V, a) -> int:
    argv = [sys.executable, str(Path(__file__).resolve()), "--device", "cpu",
            "--shape", f"{N},{d},{V}", "--dtype", a.dtype, "--top-p", str(a.top_p),
            "--tau", str(a.tau), "--seed", str(a.seed), "--child-peak", f"{loss},{impl}"]
    for flag, v in (("--threads", a.threads), ("--chunk-size", a.chunk_size),
                    ("--memory-budget", a.memory_budget)):
        if v is not None:
            argv += [flag, str(v)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return int(json.loads(out.stdout.strip().splitlines()[-1])["peak_extra_B"])


def _child_main(a) -> None:
    loss, impl = a.child_peak.split(",")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[a.dtype]
    warm = make_inputs(48, 16, 301, dtype, "cpu", a.seed)  # first-use costs (BLAS, pools)
    for h, W in warm[0]:
        h.requires_grad_()
        W.requires_grad_()
    call(loss, impl, *warm, a)
    del warm
    C.malloc_peak_mode()
    heads, w, ids = make_inputs(*a.shape_tuple, dtype, "cpu", a.seed)
    for h, W in heads:
        h.requires_grad_()
        W.requires_grad_()
    print(json.dumps({"peak_extra_B": C.peak_extra_bytes(
        lambda: call(loss, impl, heads, w, ids, a), "cpu")}))


def run_case(N, d, V, a) -> list[dict]:
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[a.dtype]
    heads, w, ids = make_inputs(N, d, V, dtype, a.device, a.seed)
    for h, W in heads:
        h.requires_grad_()
        W.requires_grad_()
    rows = []
    for loss in ("generator", "auxiliary"):
        impls = {i: measure(loss, i, heads, w, ids, a) for i in IMPLS}
        rows.append({"loss": loss, "N": N, "d": d, "V": V, "dtype": a.dtype, "top_p": a.top_p,
                     "impls": impls, **targets(impls, a.device)})
        print(markdown_row(rows[-1]), flush=True)
    return rows


def targets(impls, device) -> dict:
    """Ratios of the fused head to the baselines and the issue's targets."""
    f, b, e = impls["fused-head"], impls["matmul+fused"], impls["eager"]
    out = {}

    def mem_ratio(x, y):  # RSS at toy sizes can show no growth at all
        return x["peak_extra_B"] / y["peak_extra_B"] if y["peak_extra_B"] > 0 else None

    if "median_s" in f and "median_s" in b:
        out["time_vs_matmul_fused"] = f["median_s"] / b["median_s"]
        out["mem_vs_matmul_fused"] = mem_ratio(f, b)
    if "median_s" in f and "median_s" in e:
        out["mem_vs_eager"] = mem_ratio(f, e)
    # a failed impl must not read as "met"
    misses = [f"{name} failed" for name, r in (("fused-head", f), ("matmul+fused", b),
                                                ("eager", e)) if "error" in r]
    if (out.get("mem_vs_matmul_fused") or 0) > 1 / 5:
        misses.append("memory > 1/5 of matmul+fused")
    if (out.get("mem_vs_eager") or 0) > 1 / 10:
        misses.append("memory > 1/10 of eager")
    if device == "cpu" and out.get("time_vs_matmul_fused", 0) > 1.2:
        misses.append("time > 1.2x matmul+fused")
    out["target_misses"] = misses
    return out


def _cell(r: dict) -> str:
    if "skipped" in r:
        return "skipped"
    if "error" in r:
        return "OOM" if r.get("oom") else "error"
    return (f"{r['median_s'] * 1e3:.1f} ms ({r['p10_s'] * 1e3:.0f}-{r['p90_s'] * 1e3:.0f}), "
            f"{C.fmt_bytes(r['peak_extra_B'])}")


HEADER = ("| loss | N x d x V | " + " | ".join(IMPLS) + " | fused-head / matmul+fused "
          "(time, memory) | fused-head / eager (memory) | targets |\n|"
          + "---|" * (len(IMPLS) + 5))


def markdown_row(row: dict) -> str:
    t = row.get("time_vs_matmul_fused")
    m = row.get("mem_vs_matmul_fused")
    e = row.get("mem_vs_eager")
    ratio = "-" if t is None else f"{t:.2f}x, " + ("-" if m is None else f"{m:.3f}")
    return (f"| {row['loss']} | {row['N']} x {row['d']} x {row['V']} | "
            + " | ".join(_cell(row["impls"][i]) for i in IMPLS)
            + f" | {ratio} | {'-' if e is None else f'{e:.3f}'} | "
            + ("; ".join(row["target_misses"]) or "met") + " |")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--shape", action="append", default=None, metavar="N,d,V",
                   help="rows, width, vocabulary (repeatable; default: per device)")
    p.add_argument("--smoke", action="store_true", help="a toy shape (tests)")
    p.add_argument("--dtype", default=None, choices=["fp32", "bf16"],
                   help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--tau", type=float, default=1.0)
    p.add_argument("--chunk-size", type=int, default=None, help="rows per chunk (default: budget)")
    p.add_argument("--memory-budget", type=int, default=None, help="bytes per chunk's blocks")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="directory for fused_head_<device>.json / .md")
    p.add_argument("--child-peak", default=None, help=argparse.SUPPRESS)  # LOSS,IMPL (CPU)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    a.dtype = a.dtype or ("bf16" if a.device.startswith("cuda") else "fp32")
    if a.child_peak:
        C.malloc_peak_mode()  # before anything large exists
        a.shape_tuple = tuple(int(v) for v in a.shape[0].split(","))
        return _child_main(a)
    if a.shape:
        shapes = [tuple(int(v) for v in s.split(",")) for s in a.shape]
    else:
        shapes = SHAPES["smoke" if a.smoke else "cuda" if a.device.startswith("cuda") else "cpu"]
    C.malloc_timing_mode()
    head = (f"machine: {C.machine(a.device)}; torch {torch.__version__}; dtype {a.dtype}; "
            f"top_p {a.top_p}; times: median (p10-p90) of {a.repeats} after {a.warmup} warm-up; "
            f"memory: peak extra "
            + ("CUDA allocator bytes" if a.device.startswith("cuda") else "RSS")
            + " of one call")
    if not a.device.startswith("cuda") and not a.shape and not a.smoke:
        head += "; CPU: fewer rows than the GPU shapes (N = 1024 instead of 16384)"
    print(head + "\n\n" + HEADER, flush=True)
    rows = [r for s in shapes for r in run_case(*s, a)]
    res = {"machine": C.machine(a.device), "header": head, "torch": torch.__version__,
           "args": vars(a), "rows": rows}
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        tag = "cuda" if a.device.startswith("cuda") else "cpu"
        (out / f"fused_head_{tag}.json").write_text(json.dumps(res, indent=2))
        (out / f"fused_head_{tag}.md").write_text(
            head + "\n\n" + HEADER + "\n" + "\n".join(markdown_row(r) for r in rows) + "\n")
    return res


if __name__ == "__main__":
    main()
