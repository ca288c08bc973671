"""The benchmark suite: every dmmd_ext op against the alternatives, measured in one run.

    PYTHONPATH=. python python/bench_suite.py --device cpu            # CPU preset
    python python/bench_suite.py --device cuda --out bench_results     # the issue's sizes

Ops: generator_loss and auxiliary_loss (forward + backward), sample_categorical
(plain, top-p, top-k), posterior_step, corrupt. Baselines, all timed in the same
run on the same inputs: `eager` (the computation in eager PyTorch ops, float32
math: python/bench_baselines.py), `compile` (torch.compile of that same function),
and on CUDA where installed Liger-Kernel (JSD / cross-entropy on the same shapes:
comparable, not identical, work) and FlashInfer (sampling from logits / top-k /
top-p). Each impl: the median of --repeats calls after --warmup, with the
10th-90th percentile spread; the impls of a case are timed in turn, one call of
each per round, so that a shared machine's drift slows them alike (--sequential:
each impl's calls back to back, as before 2026-12-02); on CUDA timed with CUDA
events and rotating input sets so that none is served from L2. Also the bytes the op must move, the fraction
of the device's measured copy bandwidth that dmmd_ext reaches, and each impl's
peak extra memory. Results: <out>/suite_<device>.json (rewritten after every case,
so an interrupted run keeps what it measured) and <out>/suite_<device>.md.

Presets: `full` (default on CUDA) = the sizes of the benchmark issue: text-like
N = 16384 rows x V = 50257, pixel-like N = 65536 x V = 256, sampling 64 x 1024
rows x V = 50257, fp32 and bf16. `cpu` (default on CPU) = the same cases with
fewer rows (a 2-core machine would need hours for the full sizes); the table
states every size. Then, unless --no-step, the end-to-end D-MMD step
(python/bench_step.py) at the preset's model size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_baselines as B  # noqa: E402
import bench_common as C  # noqa: E402

import dmmd_ext  # noqa: E402
from dmmd_ext import ops  # noqa: E402

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class Case:
    op: str                     # generator_loss, auxiliary_loss, sample, posterior, corrupt
    name: str                   # the knobs, e.g. "top_p=0.9"
    shape: str                  # e.g. "N=16384 V=50257"
    dtype: str
    bytes_moved: int            # the least traffic the op needs (see docs/benchmarks.md)
    make: Callable[[], tuple]   # one input set, on the device
    impls: dict = field(default_factory=dict)   # name -> fn(inputs)
    notes: dict = field(default_factory=dict)   # impl name -> caveat printed under the table


# ---- cases -----------------------------------------------------------------------------------

def _randn(shape, dtype, device, scale, gen):
    return (torch.randn(shape, generator=gen, device=device) * scale).to(dtype)


def _fwd_bwd(loss_fn, diff, *rest):
    x = diff.detach().requires_grad_()
    loss_fn(x, *rest).sum().backward()
    return x.grad


def loss_cases(device, N, V, dtype, kinds, compile_):
    dt = _DTYPES[dtype]
    el = torch.tensor([], dtype=dt).element_size()
    liger = B.liger_functions() if device.startswith("cuda") else None
    seeds = iter(range(1000))

    def make():
        g = torch.Generator(device=device).manual_seed(next(seeds))
        s, t, a = (_randn((N, V), dt, device, 2.0, g) for _ in range(3))
        w = torch.rand(N, generator=g, device=device)
        ids = torch.randint(0, V, (N,), generator=g, device=device)
        return s, t, a, w, ids

    for kind, top_p in kinds:
        # Forward reads S, T, A; backward reads them again and writes the gradient.
        moved = 7 * N * V * el + 3 * 4 * N
        if kind == "gen":
            fused = lambda i, p=top_p: _fwd_bwd(ops.generator_loss, i[0], i[1], i[2], i[3],  # noqa: E731
                                               1.0, p, 2.0)
            eager_fn = B.generator_loss
            ref = lambda fn, p=top_p: (lambda i: _fwd_bwd(fn, i[0], i[1], i[2], i[3], 1.0, p, 2.0))  # noqa: E731
            name = "generator" + (f", top_p={top_p}" if top_p < 1 else "")
        else:
            soft = kind == "aux-soft"
            tgt = (lambda i: i[0]) if soft else (lambda i: i[4])
            fused = lambda i, p=top_p, tgt=tgt: _fwd_bwd(ops.auxiliary_loss, i[2], i[1], tgt(i),  # noqa: E731
                                                        i[3], 1.0, p, 2.0)
            eager_fn = B.auxiliary_loss
            ref = lambda fn, p=top_p, tgt=tgt: (  # noqa: E731
                lambda i: _fwd_bwd(fn, i[2], i[1], tgt(i), i[3], 1.0, p, 2.0))
            name = "auxiliary, " + ("soft" if soft else "hard") + " targets" + (
                f", top_p={top_p}" if top_p < 1 else "")
            if not soft:
                moved = 6 * N * V * el + 3 * 4 * N + 8 * N  # S is not read
        op = "generator_loss" if kind == "gen" else "auxiliary_loss"
        case = Case(op, name, f"N={N} V={V}", dtype, moved, make)
        case.impls["dmmd_ext"] = fused
        case.impls["eager"] = ref(eager_fn)
        if compile_:
            case.impls["compile"] = ref(torch.compile(eager_fn, dynamic=False))
        if liger and top_p == 1.0:
            _add_liger(case, liger, kind)
        yield case


def _add_liger(case, liger, kind):
    """Liger's fused JSD (generator) / cross-entropy (hard auxiliary) on the same
    shapes: the closest fused kernels it has, given log-probs it expects."""
    if kind == "gen":
        def jsd(i):
            x = torch.log_softmax(i[0].float(), -1).to(i[0].dtype).detach().requires_grad_()
            y = torch.log_softmax(i[1].float(), -1).to(i[1].dtype)
            liger["jsd"](x, y, None, 0.5, -100).backward()
        case.impls["liger jsd"] = jsd
        case.notes["liger jsd"] = ("Liger JSD(S, T) on precomputed log-probs (two inputs, "
                                   "no temperature/top-p); the log_softmax calls are timed too")
    elif kind == "aux-hard":
        def ce(i):
            x = i[2].detach().requires_grad_()
            out = liger["ce"](x, i[4], None, -100, 0.0, 0.0, "sum")
            (out[0] if isinstance(out, tuple) else out).backward()
        case.impls["liger ce"] = ce
        case.notes["liger ce"] = ("Liger cross-entropy(A, ids): the hard-target term only "
                                  "(dmmd_ext also reads T for the teacher term)")


def sample_cases(device, N, V, dtype, knobs, compile_):
    dt = _DTYPES[dtype]
    el = torch.tensor([], dtype=dt).element_size()
    fi = B.flashinfer_sampling() if device.startswith("cuda") else None
    seeds = iter(range(1000))

    def make():
        g = torch.Generator(device=device).manual_seed(next(seeds))
        return (_randn((N, V), dt, device, 3.0, g),)

    for T, k, p in knobs:
        name = f"T={T}" + (f", top_k={k}" if k else "") + (f", top_p={p}" if p < 1 else "")
        case = Case("sample", name, f"rows={N} V={V}", dtype, N * V * el + 8 * N, make)
        case.impls["dmmd_ext"] = lambda i, T=T, k=k, p=p: ops.sample_categorical(i[0], T, k, p, seed=1)
        case.impls["eager"] = lambda i, T=T, k=k, p=p: B.sample_multinomial(i[0], T, k, p)
        case.notes["eager"] = "softmax + torch.multinomial (torch.topk / sort filter first)"
        if compile_:
            cg = torch.compile(B.sample_gumbel, dynamic=False)
            case.impls["compile"] = lambda i, T=T, k=k, p=p, cg=cg: cg(i[0], T, k, p)
            case.notes["compile"] = "torch.compile of argmax(l/T + Gumbel(torch.rand)): 24-bit noise"
        if fi is not None:
            _add_flashinfer(case, fi, T, k, p)
        yield case


def _add_flashinfer(case, fi, T, k, p):
    if k == 0 and p >= 1.0:
        case.impls["flashinfer"] = lambda i: fi.sampling_from_logits(i[0].float() / T)
    elif k:
        case.impls["flashinfer"] = lambda i: fi.top_k_sampling_from_probs(
            torch.softmax(i[0].float() / T, -1), k)
    else:
        case.impls["flashinfer"] = lambda i: fi.top_p_sampling_from_probs(
            torch.softmax(i[0].float() / T, -1), p)
    case.notes["flashinfer"] = "FlashInfer sampling (the softmax it needs is timed too)"


def posterior_cases(device, Bsz, L, K, compile_):
    seeds = iter(range(1000))

    def make(process):
        g = torch.Generator(device=device).manual_seed(next(seeds))
        logits = torch.randn(Bsz, L, K, generator=g, device=device) * 3
        z = torch.randint(0, K, (Bsz, L), generator=g, device=device)
        if process == "masked":
            z[torch.rand(Bsz, L, generator=g, device=device) < 0.5] = K
        return z, logits

    for process in ("masked", "uniform"):
        rows = Bsz * L // 2 if process == "masked" else Bsz * L  # masked: only masked rows are read
        case = Case("posterior", process, f"{Bsz}x{L} K={K}", "fp32", rows * K * 4 + 16 * Bsz * L,
                    lambda pr=process: make(pr))
        case.impls["dmmd_ext"] = lambda i, pr=process: ops.posterior_step(
            i[0], i[1], 0.3, 0.6, pr, seed=2, validate=False)
        case.impls["eager"] = lambda i, pr=process: B.posterior_step(i[0], i[1], 0.3, 0.6, pr, K)
        if compile_:
            cp = torch.compile(lambda z, l, pr: B.posterior_step(z, l, 0.3, 0.6, pr, K,
                                                                 sampler=B.sample_gumbel),
                               dynamic=False)
            case.impls["compile"] = lambda i, pr=process, cp=cp: cp(i[0], i[1], pr)
            case.notes["compile"] = "torch.compile of the eager step with Gumbel-max sampling"
        yield case


def corrupt_cases(device, Bsz, L, K, compile_):
    seeds = iter(range(1000))

    def make():
        g = torch.Generator(device=device).manual_seed(next(seeds))
        return (torch.randint(0, K, (Bsz, L), generator=g, device=device),
                torch.rand(Bsz, generator=g, device=device))

    for process in ("masked", "uniform"):
        case = Case("corrupt", process, f"{Bsz}x{L} K={K}", "int64", 16 * Bsz * L + 4 * Bsz, make)
        case.impls["dmmd_ext"] = lambda i, pr=process: ops.corrupt(i[0], i[1], pr, K, seed=3,
                                                                   validate=False)
        case.impls["eager"] = lambda i, pr=process: B.corrupt(i[0], i[1], pr, K)
        if compile_:
            cc = torch.compile(B.corrupt, dynamic=False)
            case.impls["compile"] = lambda i, pr=process, cc=cc: cc(i[0], i[1], pr, K)
        yield case


PRESETS = {
    # rows for (text-like loss, pixel-like loss, sampling at V=50257, sampling at V=256),
    # posterior (B, L, K) pairs, corruption (B, L).
    "full": dict(loss_text=16384, loss_pixel=65536, sample_text=64 * 1024, sample_pixel=65536,
                 posterior=[(64, 1024, 50257), (64, 1024, 256)], corrupt=(4096, 4096)),
    "cpu": dict(loss_text=1024, loss_pixel=16384, sample_text=256, sample_pixel=16384,
                posterior=[(4, 256, 50257), (64, 1024, 256)], corrupt=(256, 4096)),
    # Seconds-long run of every case at toy row counts: what tests/test_bench.py runs.
    "smoke": dict(loss_text=3, loss_pixel=64, sample_text=3, sample_pixel=64,
                  posterior=[(1, 4, 50257), (2, 16, 256)], corrupt=(4, 64)),
}


def build_cases(device, preset, compile_):
    P = PRESETS[preset]
    gen_kinds = [("gen", 1.0)]
    for dt in ("fp32", "bf16"):
        yield from loss_cases(device, P["loss_text"], 50257, dt,
                              gen_kinds + ([("gen", 0.9)] if dt == "bf16" else []), compile_)
    for dt in ("fp32", "bf16"):
        yield from loss_cases(device, P["loss_pixel"], 256, dt, gen_kinds, compile_)
    for dt in ("fp32", "bf16"):
        knobs = [(1.0, 0, 1.0), (0.8, 0, 0.9), (1.0, 50, 1.0)]
        yield from sample_cases(device, P["sample_text"], 50257, dt, knobs, compile_)
    yield from sample_cases(device, P["sample_pixel"], 256, "fp32",
                            [(1.0, 0, 1.0), (1.0, 50, 1.0)], compile_)
    yield from loss_cases(device, P["loss_text"], 50257, "bf16",
                          [("aux-hard", 1.0), ("aux-soft", 1.0)], compile_)
    yield from loss_cases(device, P["loss_pixel"], 256, "bf16", [("aux-hard", 1.0)], compile_)
    for Bsz, L, K in P["posterior"]:
        yield from posterior_cases(device, Bsz, L, K, compile_)
    yield from corrupt_cases(device, *P["corrupt"], 50257, compile_)


# ---- running ---------------------------------------------------------------------------------

def run_case(case: Case, device: str, warmup: int, repeats: int, sequential: bool = False) -> dict:
    first = case.make()
    set_bytes = sum(x.numel() * x.element_size() for x in first if isinstance(x, torch.Tensor))
    n_sets = C.rotation_count(set_bytes, device)
    sets = [first] + [case.make() for _ in range(n_sets - 1)]
    row = dict(op=case.op, case=case.name, shape=case.shape, dtype=case.dtype,
               bytes_moved=case.bytes_moved, input_sets=n_sets, impls={}, notes=case.notes)
    # the implementations are timed in turn, call by call (time_interleaved), or
    # (sequential) each one's calls back to back
    calls = {n: (lambda j, fn=fn: fn(sets[j])) for n, fn in case.impls.items()}
    if sequential:
        timed = {n: C.time_interleaved({n: f}, device, warmup, repeats, n_sets)[n]
                 for n, f in calls.items()}
    else:
        timed = C.time_interleaved(calls, device, warmup, repeats, n_sets)
    C.release(device)
    for name, fn in case.impls.items():
        t = timed[name]
        res = {}
        try:
            if isinstance(t, Exception):
                raise t
            res.update(median_s=t.median_s, p10_s=t.p10_s, p90_s=t.p90_s, spread=t.spread)
            res["peak_extra_bytes"] = C.peak_extra_bytes(lambda: fn(sets[0]), device)
        except Exception as e:  # noqa: BLE001 - a failing baseline is reported, not fatal
            res = {"error": "out of memory" if C.is_oom(e) else f"{type(e).__name__}: {e}"[:200]}
        row["impls"][name] = res
        C.release(device)
    del sets, first
    C.release(device)
    ours = row["impls"]["dmmd_ext"].get("median_s")
    row["speedup"] = {n: r["median_s"] / ours for n, r in row["impls"].items()
                      if n != "dmmd_ext" and ours and "median_s" in r}
    row["bandwidth_Bps"] = case.bytes_moved / ours if ours else None
    return row


def target_misses(row: dict, device: str, copy_bw: float) -> list[str]:
    """The benchmark issue's targets this row misses (empty list: all met)."""
    sp, miss = row["speedup"], []
    if not device.startswith("cuda"):
        if sp.get("eager", 0) < 2.0:
            miss.append("< 2x eager")
        return miss
    frac = (row["bandwidth_Bps"] or 0) / copy_bw
    if row["op"] == "generator_loss":
        if frac < 0.8:
            miss.append("< 80% copy BW")
        if sp.get("eager", 0) < 3.0:
            miss.append("< 3x eager")
        if "compile" in sp and sp["compile"] < 1.5:
            miss.append("< 1.5x compile")
    if row["op"] == "sample" and "top" not in row["case"]:
        if frac < 0.8:
            miss.append("< 80% copy BW")
        if "flashinfer" in sp and sp["flashinfer"] < 1.0:
            miss.append("slower than FlashInfer")
    return miss


def _ms(r: dict) -> str:
    if "error" in r:
        return r["error"] if r["error"] == "out of memory" else "error"
    return f"{1e3 * r['median_s']:.2f} (±{50 * r['spread']:.0f}%)"


def markdown(rows: list, device: str, copy_bw: float, header: str) -> str:
    baselines = []
    for r in rows:
        baselines += [n for n in r["impls"] if n != "dmmd_ext" and n not in baselines]
    head = ["op", "case", "shape", "dtype", "dmmd_ext ms", "GB/s (of copy)", "peak extra"]
    for b in baselines:
        head += [f"{b} ms", f"vs {b}"]
    head += ["targets"]
    out = [header, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = {}
    for r in rows:
        ours = r["impls"]["dmmd_ext"]
        bw = r["bandwidth_Bps"]
        cells = [r["op"], r["case"], r["shape"], r["dtype"], _ms(ours),
                 f"{bw / 1e9:.1f} ({bw / copy_bw:.0%})" if bw else "-",
                 C.fmt_bytes(ours.get("peak_extra_bytes"))]
        for b in baselines:
            res = r["impls"].get(b)
            cells += ["-", "-"] if res is None else [
                _ms(res), f"{r['speedup'][b]:.2f}x" if b in r["speedup"] else "-"]
        miss = target_misses(r, device, copy_bw)
        cells.append("met" if not miss else "MISSED: " + ", ".join(miss))
        out.append("| " + " | ".join(cells) + " |")
        notes.update(r["notes"])
    mem = ["", "Peak extra memory per impl:", "",
           "| op | case | shape | dtype | " + " | ".join(["dmmd_ext"] + baselines) + " |",
           "|" + "---|" * (5 + len(baselines))]
    for r in rows:
        cells = [r["op"], r["case"], r["shape"], r["dtype"]]
        for b in ["dmmd_ext"] + baselines:
            res = r["impls"].get(b, {})
            cells.append(C.fmt_bytes(res.get("peak_extra_bytes")) if "peak_extra_bytes" in res
                         else res.get("error", "-"))
        mem.append("| " + " | ".join(cells) + " |")
    tail = [f"- {k}: {v}" for k, v in notes.items()]
    return "\n".join(out + mem + ([""] + tail if tail else []))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", choices=sorted(PRESETS), default=None,
                    help="sizes (default: full on CUDA, cpu on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="default: 3 CUDA, 1 CPU")
    ap.add_argument("--repeats", type=int, default=None, help="default: 10 CUDA, 5 CPU")
    ap.add_argument("--only", default="", help="run the cases whose 'op case shape' contains this")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile baselines")
    ap.add_argument("--compile-only", default="",
                    help="add torch.compile baselines only to cases whose 'op case dtype' "
                         "contains this (each compile costs seconds; the GPU check uses it)")
    ap.add_argument("--no-step", action="store_true", help="skip the end-to-end D-MMD step")
    ap.add_argument("--out", default="bench_results", help="directory for the JSON and markdown")
    ap.add_argument("--sequential", action="store_true",
                    help="time each implementation's calls back to back (before 2026-12-02 the "
                         "only mode) instead of in turn, call by call")
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible")
    preset = args.preset or ("full" if cuda else "cpu")
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    repeats = args.repeats if args.repeats is not None else (10 if cuda else 5)
    torch._dynamo.config.cache_size_limit = 64
    C.malloc_timing_mode()
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"suite_{'cuda' if cuda else 'cpu'}")
    copy_bw = C.copy_bandwidth(args.device)
    info = dict(machine=C.machine(args.device), device=args.device, preset=preset,
                torch=torch.__version__, dmmd_ext=dmmd_ext.__version__,
                date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                copy_bandwidth_Bps=copy_bw, warmup=warmup, repeats=repeats,
                timing="sequential" if args.sequential else "interleaved",
                liger_kernel=B.version_of("liger-kernel") if cuda else None,
                flashinfer=B.version_of("flashinfer-python") if cuda else None)
    header = (f"{info['machine']}; torch {info['torch']}; preset {preset}; {info['date']}; "
              f"copy bandwidth {copy_bw / 1e9:.1f} GB/s; median of {repeats} after {warmup} "
              f"warm-up, {info['timing']} (± = half the p10-p90 range, in % of the median)")
    print(header, flush=True)
    rows = []
    for case in build_cases(args.device, preset, not args.no_compile):
        if args.only not in f"{case.op} {case.name} {case.shape}":
            continue
        if args.compile_only not in f"{case.op} {case.name} {case.dtype}":
            case.impls.pop("compile", None)
        t0 = time.time()
        row = run_case(case, args.device, warmup, repeats, args.sequential)
        rows.append(row)
        line = markdown([row], args.device, copy_bw, "").splitlines()[4]
        print(f"{line}  [{time.time() - t0:.0f} s]", flush=True)
        _write(stem, info, rows, None, args.device, copy_bw, header)
    step = None
    if not args.no_step:
        import bench_step
        step = bench_step.run(args.device, preset, warmup=1 if not cuda else 2,
                              repeats=3 if not cuda else 5)
        print(bench_step.markdown(step), flush=True)
    _write(stem, info, rows, step, args.device, copy_bw, header)
    print(f"\nwrote {stem}.json and {stem}.md")


def _write(stem, info, rows, step, device, copy_bw, header):
    with open(stem + ".json", "w") as f:
        json.dump(dict(info, rows=rows, step=step), f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(markdown(rows, device, copy_bw, header) + "\n")
        if step is not None:
            import bench_step
            f.write("\n" + bench_step.markdown(step) + "\n")


if __name__ == "__main__":
    main()
