"""Measurement helpers shared by the benchmark suite (python/bench_suite.py) and the
end-to-end step benchmark (python/bench_step.py).

- Timing: the median of `repeats` calls after `warmup` calls, with the spread as
  the 10th-90th percentile range. CUDA: CUDA events around each call. Inputs are
  rotated (a different, identically distributed input set per call) when one set
  is smaller than a few L2 caches, so a kernel cannot be timed out of L2.
- Peak extra memory of one call: CUDA, the caching allocator's peak above what
  was allocated before the call; CPU, peak resident memory above the level at the
  call's start, sampled by a thread every 0.2 ms (glibc's mmap threshold is
  pinned so freed blocks leave RSS).
- Copy bandwidth of the device, measured the same way (a large tensor copy), so
  kernels report the fraction of it they reach.
"""

from __future__ import annotations

import ctypes
import math
import os
import platform
import statistics
import threading
import time
from dataclasses import dataclass, field

import torch


@dataclass
class Timing:
    median_s: float
    p10_s: float
    p90_s: float
    samples: list = field(default_factory=list)

    @property
    def spread(self) -> float:
        """(p90 - p10) / median: the relative spread of the repeated calls."""
        return (self.p90_s - self.p10_s) / self.median_s if self.median_s > 0 else 0.0


def _percentile(xs: list, q: float) -> float:
    xs = sorted(xs)
    pos = q * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time_one(fn, j: int, cuda: bool) -> float:
    if cuda:
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn(j)
        e.record()
        e.synchronize()
        return s.elapsed_time(e) / 1e3
    t0 = time.perf_counter()
    fn(j)
    return time.perf_counter() - t0


def time_calls(fn, device: str, warmup: int, repeats: int, n_inputs: int = 1) -> Timing:
    """Times fn(i) for i cycling over range(n_inputs) (the rotation of input sets)."""
    for i in range(warmup):
        fn(i % n_inputs)
    sync(device)
    cuda = device.startswith("cuda")
    samples = [_time_one(fn, (warmup + i) % n_inputs, cuda) for i in range(repeats)]
    return Timing(statistics.median(samples), _percentile(samples, 0.1),
                  _percentile(samples, 0.9), samples)


def time_interleaved(fns: dict, device: str, warmup: int, repeats: int,
                     n_inputs: int = 1) -> dict:
    """Times several implementations of one call in turn, one call of each per
    round, so that a machine whose speed drifts (a shared VM: the same call
    varied 2x within a minute) slows them alike and their ratios hold. Returns
    name -> Timing, or name -> the exception an implementation raised (it is
    dropped from the later rounds)."""
    out, live = {}, dict(fns)
    cuda = device.startswith("cuda")
    for name, fn in list(live.items()):
        try:
            for i in range(warmup):
                fn(i % n_inputs)
            sync(device)
        except Exception as e:  # noqa: BLE001 - reported to the caller
            out[name] = e
            del live[name]
    samples = {name: [] for name in live}
    for i in range(repeats):
        j = (warmup + i) % n_inputs
        for name, fn in list(live.items()):
            try:
                samples[name].append(_time_one(fn, j, cuda))
            except Exception as e:  # noqa: BLE001
                out[name] = e
                del live[name]
    for name in live:
        xs = samples[name]
        out[name] = Timing(statistics.median(xs), _percentile(xs, 0.1), _percentile(xs, 0.9), xs)
    return out


def rotation_count(set_bytes: int, device: str, cap: int = 8) -> int:
    """How many input sets to rotate through so that consecutive calls miss L2:
    enough sets to cover 4 L2 caches, at most `cap` (CPU: 1)."""
    if not device.startswith("cuda") or set_bytes <= 0:
        return 1
    l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 50 << 20)
    return max(1, min(cap, math.ceil(4 * l2 / set_bytes)))


class RssPeak:
    """Peak resident memory above the level at entry, sampled by a thread."""

    def __init__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")

    def rss(self) -> int:
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


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def malloc_timing_mode() -> None:
    """Times with glibc's warmed-up default: its dynamic mmap threshold rises to the
    largest freed block, at most 32 MiB on 64-bit (trim threshold twice that). Fixing it
    there makes the first calls behave like the later ones: blocks up to 32 MiB are
    reused from the heap, larger ones are mapped (and page-faulted) on every call, as
    in a long-running CPU training process."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)


def malloc_peak_mode() -> None:
    """For peak-RSS measurement: a 128 KiB mmap threshold returns every large block to
    the OS when it is freed (RSS tracks live memory), and malloc_trim releases what
    the heap kept from earlier calls (else a call could reuse it unseen)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_THRESHOLD, 128 << 10)
        libc.mallopt(_M_TRIM_THRESHOLD, 128 << 10)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


def peak_extra_bytes(fn, device: str) -> int:
    """Peak memory one call of fn() needs beyond what is live before it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    malloc_peak_mode()
    try:
        with RssPeak() as m:
            fn()
    finally:
        malloc_timing_mode()
    return m.extra


def copy_bandwidth(device: str, nbytes: int | None = None, repeats: int = 10) -> float:
    """Measured bytes/s of a large device-to-device (CPU: memory-to-memory) tensor
    copy, counting both the read and the write."""
    if nbytes is None:
        nbytes = (1 << 30) if device.startswith("cuda") else (256 << 20)
    x = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    t = time_calls(lambda _i: y.copy_(x), device, warmup=2, repeats=repeats)
    del x, y
    return 2 * nbytes / t.median_s


def machine(device: str) -> str:
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(device)
        return f"{p.name} ({p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB)"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
            f"kernels: {cpu_isa()}")


_V4 = {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
_V3 = {"avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe"}


def cpu_isa(flags: set[str] | None = None, cap: str | None = None) -> str:
    """The instruction-set path of dmmd_ext's CPU kernels on this machine, by the
    rules the library applies: GCC's target_clones resolver picks the x86-64-v4
    (AVX-512), v3 (AVX2) or baseline clone of the hot loops (csrc/cpu/clones.h),
    and the Philox path is AVX-512, AVX2 or scalar, capped by DMMD_EXT_CPU_ISA
    (csrc/cpu/philox_simd.h). flags: /proc/cpuinfo's (default: read them)."""
    if flags is None:
        flags = set()
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"{platform.machine()} (portable build, scalar Philox)"
    clones = "AVX-512" if _V4 <= flags else "AVX2" if _V3 <= flags else "baseline x86-64"
    cap = os.environ.get("DMMD_EXT_CPU_ISA", "") if cap is None else cap
    philox = ("AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "scalar")
    if cap == "scalar" or (cap == "avx2" and philox == "AVX-512"):
        philox = "scalar" if cap == "scalar" else "AVX2"
    return f"{clones} loops, {philox} Philox"


def fmt_bytes(b) -> str:
    if b is None:
        return "-"
    if abs(b) >= 2**30:
        return f"{b / 2**30:.2f} GiB"
    if abs(b) >= 2**20:
        return f"{b / 2**20:.1f} MiB"
    return f"{b / 2**10:.1f} KiB"


def is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def release(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
