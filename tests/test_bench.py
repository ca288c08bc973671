"""The benchmark suite (python/bench_suite.py, bench_step.py) runs end to end at toy
sizes and reports every op against its baselines. Timings are not asserted (numbers
belong in docs/benchmarks.md); what is checked is that the suite measures what it
claims: every op family present, dmmd_ext and eager timed on each case, ratios and
bandwidth consistent with the timings, the baselines computing the same thing."""

import json
import sys
from pathlib import Path

import pytest
import torch

PY_DIR = str(Path(__file__).resolve().parents[1] / "python")
sys.path.insert(0, PY_DIR)

import bench_baselines as B  # noqa: E402
import bench_common as C  # noqa: E402
import bench_step  # noqa: E402
import bench_suite  # noqa: E402

from dmmd_ext import ops  # noqa: E402


def test_suite_smoke_covers_every_op(tmp_path, one_thread):
    bench_suite.main(["--device", "cpu", "--preset", "smoke", "--no-compile", "--no-step",
                      "--warmup", "0", "--repeats", "2", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "suite_cpu.json").read_text())
    rows = data["rows"]
    assert {r["op"] for r in rows} == {"generator_loss", "auxiliary_loss", "sample",
                                       "posterior", "corrupt"}
    assert {r["dtype"] for r in rows if r["op"] == "generator_loss"} == {"fp32", "bf16"}
    for r in rows:
        ours, eager = r["impls"]["dmmd_ext"], r["impls"]["eager"]
        assert "error" not in ours and "error" not in eager, r
        assert ours["p10_s"] <= ours["median_s"] <= ours["p90_s"]
        assert r["speedup"]["eager"] == pytest.approx(eager["median_s"] / ours["median_s"])
        assert r["bandwidth_Bps"] == pytest.approx(r["bytes_moved"] / ours["median_s"])
        assert "compile" not in r["impls"]
    md = (tmp_path / "suite_cpu.md").read_text()
    n_gen = sum(r["op"] == "generator_loss" for r in rows)
    assert n_gen == 5 and md.count("\n| generator_loss |") == 2 * n_gen  # two tables


def test_target_column_flags_misses():
    row = dict(op="sample", case="T=1.0", speedup={"eager": 1.5}, bandwidth_Bps=1.0)
    assert bench_suite.target_misses(row, "cpu", 1.0) == ["< 2x eager"]
    row["speedup"]["eager"] = 2.5
    assert bench_suite.target_misses(row, "cpu", 1.0) == []


def test_step_smoke(one_thread):
    r = bench_step.run("cpu", "smoke", warmup=0, repeats=1)
    for name in ("fused", "fused-head", "eager"):
        assert r["impls"][name]["median_s"] > 0, r
        assert r["impls"][name]["tokens_per_s"] == pytest.approx(32 / r["impls"][name]["median_s"])
    assert "throughput_ratio" in r and "fused vs eager" in bench_step.markdown(r)
    assert "head_vs_fused_throughput" in r and "fused-head vs fused" in bench_step.markdown(r)


def test_eager_losses_match_reference():
    """The eager baselines compute what the fused ops compute (else a ratio is meaningless)."""
    g = torch.Generator().manual_seed(0)
    s, t, a = (torch.randn(5, 37, generator=g, dtype=torch.float64) * 2 for _ in range(3))
    w = torch.rand(5, generator=g, dtype=torch.float64)
    ids = torch.randint(0, 37, (5,), generator=g)
    for top_p in (1.0, 0.8):
        # the eager baselines compute in float32 (as a user would), the ops here in float64
        torch.testing.assert_close(B.generator_loss(s, t, a, w, 1.3, top_p, 2.0).double(),
                                   ops.generator_loss(s, t, a, w, 1.3, top_p, 2.0),
                                   rtol=1e-4, atol=1e-5)
        for target in (ids, s):
            torch.testing.assert_close(B.auxiliary_loss(a, t, target, w, 1.3, top_p, 2.0).double(),
                                       ops.auxiliary_loss(a, t, target, w, 1.3, top_p, 2.0),
                                       rtol=1e-4, atol=1e-5)


def test_eager_samplers_respect_filters():
    """Top-k / top-p baselines only return tokens the filter keeps."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(200, 50, generator=g) * 3
    keep_k = logits.topk(5, -1).indices
    for fn in (B.sample_multinomial, B.sample_gumbel):
        x = fn(logits, 1.0, 5, 1.0)
        assert (keep_k == x[:, None]).any(-1).all()
    probs = logits.softmax(-1)
    srt, idx = probs.sort(-1, descending=True)
    inside = (srt.cumsum(-1) - srt) < 0.5
    for fn in (B.sample_multinomial, B.sample_gumbel):
        x = fn(logits, 1.0, 0, 0.5)
        allowed = torch.zeros_like(inside).scatter(-1, idx, inside)
        assert allowed.gather(-1, x[:, None]).all()


def test_eager_corrupt_rate():
    x0 = torch.zeros(4, 20000, dtype=torch.long)
    a = torch.tensor([0.0, 0.25, 0.5, 1.0])
    z = B.corrupt(x0, a, "masked", 7)
    frac = (z == 7).float().mean(-1)
    # binomial s.e. <= 0.0036: 6 s.e. margin
    torch.testing.assert_close(frac, 1 - a, atol=0.02, rtol=0)


def test_timing_and_rotation_helpers():
    calls = []
    t = C.time_calls(lambda i: calls.append(i), "cpu", warmup=2, repeats=5, n_inputs=3)
    assert calls == [0, 1, 2, 0, 1, 2, 0]
    assert len(t.samples) == 5 and t.p10_s <= t.median_s <= t.p90_s
    assert C.rotation_count(10**9, "cpu") == 1
    assert C.fmt_bytes(3 * 2**20) == "3.0 MiB"


def test_time_interleaved_alternates_and_reports_failures():
    log = []

    def bad(i):
        log.append(("bad", i))
        if len([x for x in log if x[0] == "bad"]) > 2:  # fails in its second timed round
            raise ValueError("boom")

    out = C.time_interleaved({"a": lambda i: log.append(("a", i)), "b": lambda i: log.append(("b", i)),
                              "bad": bad}, "cpu", warmup=1, repeats=4, n_inputs=2)
    timed = [x for x in log[3:]]  # after the three warm-up calls
    assert timed[:6] == [("a", 1), ("b", 1), ("bad", 1), ("a", 0), ("b", 0), ("bad", 0)]
    assert [x for x in timed[6:]] == [("a", 1), ("b", 1), ("a", 0), ("b", 0)]
    assert len(out["a"].samples) == 4 and len(out["b"].samples) == 4
    assert isinstance(out["bad"], ValueError)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS via /proc (Linux)")
def test_cpu_peak_memory_sees_allocations_after_timing_mode():
    # After timing-mode calls of the same size (glibc may keep such blocks), the peak
    # measurement sees a call's 16 MiB allocation, and next to nothing for a call that
    # allocates nothing.
    C.malloc_timing_mode()
    for _ in range(3):
        x = torch.ones(4 << 20)  # 16 MiB, freed at once
        del x
    peak = C.peak_extra_bytes(lambda: torch.ones(4 << 20).sum(), "cpu")
    assert peak >= 15 << 20, peak
    assert C.peak_extra_bytes(lambda: None, "cpu") < 4 << 20


def test_fused_head_bench_smoke(tmp_path, one_thread):
    """python/bench_fused_head.py at a toy shape: every CPU impl measured, Liger
    skipped cleanly without CUDA, the ratios consistent with the timings."""
    import bench_fused_head
    res = bench_fused_head.main(["--device", "cpu", "--smoke", "--warmup", "0", "--repeats", "2",
                                 "--chunk-size", "7", "--out", str(tmp_path)])
    assert [r["loss"] for r in res["rows"]] == ["generator", "auxiliary"]
    for r in res["rows"]:
        for name in ("eager", "matmul+fused", "fused-head"):
            assert r["impls"][name]["median_s"] > 0 and r["impls"][name]["peak_extra_B"] >= 0, r
        assert "skipped" in r["impls"]["liger-jsd"]
        assert r["time_vs_matmul_fused"] == pytest.approx(
            r["impls"]["fused-head"]["median_s"] / r["impls"]["matmul+fused"]["median_s"])
    assert (tmp_path / "fused_head_cpu.md").read_text().count("\n| generator |") == 1


def test_fused_head_bench_reports_a_failed_impl():
    """An impl that raised is a target miss, never 'met'."""
    import bench_fused_head
    ok = {"median_s": 1.0, "peak_extra_B": 10}
    out = bench_fused_head.targets({"fused-head": {"error": "AttributeError: x", "oom": False},
                                    "matmul+fused": ok, "eager": ok}, "cpu")
    assert out["target_misses"] == ["fused-head failed"]


def test_cpu_isa_names_the_path_the_kernels_take():
    """The suite header's ISA: the target_clones level and the (capped) Philox path."""
    import bench_common as C
    v4 = C._V3 | C._V4
    assert C.cpu_isa(v4, cap="") == "AVX-512 loops, AVX-512 Philox"
    assert C.cpu_isa(v4, cap="avx2") == "AVX-512 loops, AVX2 Philox"
    assert C.cpu_isa(C._V3, cap="") == "AVX2 loops, AVX2 Philox"
    assert C.cpu_isa(C._V3, cap="scalar") == "AVX2 loops, scalar Philox"
    assert C.cpu_isa({"avx2"}, cap="") == "baseline x86-64 loops, AVX2 Philox"


def test_fused_head_bench_child_peak():
    """The CPU memory column comes from a fresh process (bench_fused_head.child_peak)."""
    import argparse
    import bench_fused_head
    a = argparse.Namespace(dtype="fp32", top_p=1.0, tau=1.0, seed=0, threads=1, chunk_size=None,
                           memory_budget=None)
    peak = bench_fused_head.child_peak("generator", "fused-head", 64, 16, 4099, a)
    assert isinstance(peak, int) and peak >= 0


def test_ab_bench_runs_every_call(one_thread):
    import bench_ab
    fns = bench_ab.calls(torch.Generator().manual_seed(0))
    assert len(fns) == 10 and all(callable(f) for f in fns.values())
    assert fns["corrupt masked 256x4096"]().shape == (256, 4096)
    assert bench_ab.median_ms(fns["corrupt uniform 256x4096"], 3) > 0
