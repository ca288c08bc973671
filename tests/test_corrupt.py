"""Forward corruption: kernel vs reference (bit-exact), rates, errors, parity."""

import math
import subprocess
import sys

import pytest
import torch

import dmmd_ext
from dmmd_ext import ops, reference
from conftest import NEUTRAL_CWD, child_env

PROCS = ["masked", "uniform"]


@pytest.mark.parametrize("process", PROCS)
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("rate_kind", ["scalar", "row", "token"])
def test_matches_reference_bitwise(process, dtype, rate_kind):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 37, (5, 33), generator=g, dtype=dtype)
    alpha = {"scalar": 0.3, "row": torch.rand(5, generator=g),
             "token": torch.rand(5, 33, generator=g, dtype=torch.float64)}[rate_kind]
    got = ops.corrupt(x0, alpha, process, 37, seed=123, offset=8)
    want = reference.corrupt(x0, alpha, process, 37, seed=123, offset=8)
    assert got.dtype == dtype
    assert torch.equal(got, want)


@pytest.mark.parametrize("process", PROCS)
def test_rate_matches_one_minus_alpha(process):
    # 200k Bernoulli draws per rate: a 6-sigma band has a false-alarm rate ~2e-9.
    K, n = 50, 200_000
    x0 = torch.zeros(4, n, dtype=torch.int64)
    alpha = torch.tensor([0.0, 0.25, 0.7, 1.0])
    z = ops.corrupt(x0, alpha, process, K, seed=7)
    for i, a in enumerate(alpha.tolist()):
        if process == "masked":
            frac = (z[i] == K).double().mean().item()
            p = 1 - a
        else:  # a replaced token stays 0 with probability 1/K
            frac = (z[i] != 0).double().mean().item()
            p = (1 - a) * (1 - 1 / K)
        sd = math.sqrt(max(p * (1 - p), 1e-12) / n)
        assert abs(frac - p) <= 6 * sd + 1e-12, (a, frac, p)


def test_uniform_replacements_are_uniform():
    # chi-square over K = 20 classes, 100k draws, df = 19: P(chi2 > 60) ~ 3e-6.
    K = 20
    x0 = torch.zeros(1, 100_000, dtype=torch.int64)
    z = ops.corrupt(x0, 0.0, "uniform", K, seed=3)
    counts = torch.bincount(z[0], minlength=K).double()
    expected = z.numel() / K
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 60, chi2


def test_keep_mask_protects_positions():
    x0 = torch.randint(0, 9, (3, 40))
    keep = torch.rand(3, 40) < 0.5
    z = ops.corrupt(x0, 0.0, "masked", 9, keep=keep, seed=1)
    assert torch.equal(z[keep], x0[keep])
    assert (z[~keep] == 9).all()


def test_generator_reproducible_and_advances():
    x0 = torch.randint(0, 9, (4, 64))
    g1 = torch.Generator().manual_seed(5)
    g2 = torch.Generator().manual_seed(5)
    a = ops.corrupt(x0, 0.5, "masked", 9, generator=g1)
    b = ops.corrupt(x0, 0.5, "masked", 9, generator=g2)
    c = ops.corrupt(x0, 0.5, "masked", 9, generator=g1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_offset_changes_stream():
    x0 = torch.randint(0, 9, (4, 256))
    a = ops.corrupt(x0, 0.5, "masked", 9, seed=1, offset=0)
    b = ops.corrupt(x0, 0.5, "masked", 9, seed=1, offset=4)
    assert not torch.equal(a, b)


def test_empty_and_noncontiguous():
    e = torch.empty(0, 5, dtype=torch.int64)
    assert ops.corrupt(e, 0.5, "masked", 9, seed=1).shape == (0, 5)
    x = torch.randint(0, 9, (16, 8)).t()  # [8, 16], not contiguous
    alpha = torch.rand(8)
    got = ops.corrupt(x, alpha, "uniform", 9, seed=2)
    want = reference.corrupt(x.contiguous(), alpha, "uniform", 9, seed=2)
    assert torch.equal(got, want)


# The CPU kernel draws Philox words for blocks of 64 consecutive tokens with
# SIMD (csrc/cpu/philox_simd.h). These shapes put block ends, row ends (per-row
# alpha) and the thread split at every relation to each other: numel below,
# at and just past a block, rows of 1, 7 and 13 tokens, and 8229 tokens that
# two threads split at 4115 (mid-block, mid-row).
BLOCK_SHAPES = [(1, 1), (1, 7), (8, 1), (3, 3), (9, 7), (8, 8), (5, 13), (17, 241), (3, 2743)]
BIG_SEED, BIG_OFFSET = 2**63 - 1, 2**61 - 3


def check_blocks_match_reference(shapes=BLOCK_SHAPES):
    g = torch.Generator().manual_seed(11)
    for shape in shapes:
        for dtype in (torch.int32, torch.int64):
            x0 = torch.randint(0, 1000, shape, generator=g, dtype=dtype)
            keep = torch.rand(shape, generator=g) < 0.2
            rates = {"scalar": 0.4, "row": torch.rand(shape[0], generator=g),
                     "token": torch.rand(shape, generator=g, dtype=torch.float64)}
            for kind, alpha in rates.items():
                for process in PROCS:
                    for kw in (dict(seed=BIG_SEED, offset=BIG_OFFSET),
                               dict(seed=5, offset=0, keep=keep)):
                        got = ops.corrupt(x0, alpha, process, 1000, **kw)
                        want = reference.corrupt(x0, alpha, process, 1000, **kw)
                        assert torch.equal(got, want), (shape, dtype, kind, process, kw)


def test_blocks_match_reference_bitwise():
    check_blocks_match_reference()


def test_thread_count_does_not_change_result():
    x0 = torch.randint(0, 50257, (3, 2743))
    alpha = torch.rand(3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.corrupt(x0, alpha, "uniform", 50257, seed=9)
        torch.set_num_threads(max(threads, 2))
        many = ops.corrupt(x0, alpha, "uniform", 50257, seed=9)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)


@pytest.mark.parametrize("isa", ["avx2", "scalar"])
def test_narrower_simd_paths_match_reference(isa):
    # The widest path this CPU has runs above; DMMD_EXT_CPU_ISA caps the choice
    # (read once per process), so the narrower ones run in a child process.
    code = ("import test_corrupt as t; "
            "t.check_blocks_match_reference([(1, 7), (9, 7), (5, 13), (17, 241), (3, 2743)])")
    r = subprocess.run([sys.executable, "-c", code], cwd=NEUTRAL_CWD, capture_output=True,
                       text=True, timeout=300, env=child_env(DMMD_EXT_CPU_ISA=isa))
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x0=torch.zeros(2, 3)), "x0: expected dtype"),
        (dict(alpha=torch.rand(3)), r"alpha: expected a scalar, shape \[2\]"),
        (dict(alpha=torch.tensor([0.5, 1.5])), r"alpha: expected values in \[0, 1\]"),
        (dict(x0=torch.full((2, 3), 9)), r"x0: token ids must lie in \[0, 9\)"),
        (dict(mask_id=3), "mask_id: expected an id >= vocab_size"),
        (dict(keep=torch.ones(2, 3)), "keep: expected bool"),
        (dict(offset=-4), r"offset: expected an integer in \[0, 2\^61\)"),
    ],
)
def test_errors_name_the_argument(kwargs, match):
    args = dict(x0=torch.zeros(2, 3, dtype=torch.int64), alpha=torch.tensor([0.5, 0.5]),
                process="masked", vocab_size=9, seed=0)
    args.update(kwargs)
    # the op's checks raise RuntimeError; the wrapper's integer checks ValueError
    with pytest.raises((RuntimeError, ValueError), match=match):
        ops.corrupt(**args)


def test_bad_process_name():
    with pytest.raises(ValueError, match="process"):
        ops.corrupt(torch.zeros(1, 1, dtype=torch.int64), 0.5, "gaussian", 9, seed=0)


def test_opcheck():
    x0 = torch.randint(0, 9, (3, 10))
    for pid in (0, 1):
        torch.library.opcheck(
            torch.ops.dmmd_ext.corrupt.default,
            (x0, torch.rand(3, dtype=torch.float64), pid, 9, 9),
            {"seed": 11, "offset": 0},
        )


def test_compile_matches_eager():
    x0 = torch.randint(0, 9, (3, 10))
    alpha = torch.rand(3)

    def f(x, a):
        return ops.corrupt(x, a, "masked", 9, seed=4) + 0

    assert torch.equal(torch.compile(f, fullgraph=True)(x0, alpha), f(x0, alpha))


@pytest.mark.simt_edge
@pytest.mark.parametrize("process", PROCS)
@pytest.mark.parametrize("rate", ["scalar", "row", "token"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_cuda_matches_cpu_bitwise(kb, process, rate, dtype):
    x0 = torch.randint(0, 1000, (64, 513), dtype=dtype)
    alpha = {"scalar": torch.tensor(0.4, dtype=torch.float64), "row": torch.rand(64),
             "token": torch.rand(64, 513)}[rate]
    keep = torch.rand(64, 513) < 0.1
    cpu = ops.corrupt(x0, alpha, process, 1000, keep=keep, seed=99, offset=12)
    dev = kb.call(ops.corrupt, x0, alpha, process, 1000, keep=keep, seed=99, offset=12)
    assert dev.dtype == dtype and torch.equal(cpu, dev)


@pytest.mark.simt_edge
def test_cuda_edge_shapes(kb):
    for shape in [(0,), (0, 7), (1, 1), (3, 1), (1, 1031)]:
        x0 = torch.randint(0, 50, shape)
        cpu = ops.corrupt(x0, 0.3, "uniform", 50, seed=5)
        assert torch.equal(kb.call(ops.corrupt, x0, 0.3, "uniform", 50, seed=5), cpu), shape
    x0 = torch.randint(0, 50, (40, 30)).t()  # non-contiguous
    alpha = torch.rand(30, generator=torch.Generator().manual_seed(0))
    cpu = ops.corrupt(x0, alpha, "masked", 50, seed=6)
    assert torch.equal(kb.call(ops.corrupt, x0, alpha, "masked", 50, seed=6), cpu)


def test_cuda_generator_advances(kb):
    x0 = torch.zeros(4, 1024, dtype=torch.int64)
    g = kb.generator(0)
    a = kb.call(ops.corrupt, x0, 0.5, "masked", 9, generator=g)
    b = kb.call(ops.corrupt, x0, 0.5, "masked", 9, generator=g)
    assert not torch.equal(a, b)


def test_integer_move_limit_matches_the_double_compare(tmp_path):
    """The CPU loops decide `uniform_from_bits(lo) < 1 - a` as an integer compare
    (csrc/cpu/move_limit.h); a C++ check compares the two at the boundary for
    about 1.2M thresholds (exact draws' values, their neighbours, tiny rates, 0, 1,
    +-inf, NaN)."""
    import shutil
    from pathlib import Path
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler on PATH to build tests/cpp/move_limit_check.cpp")
    root = Path(__file__).resolve().parents[1]
    exe = tmp_path / "move_limit_check"
    subprocess.run([cxx, "-std=c++17", "-O2", "-ffp-contract=off", f"-I{root / 'csrc/include'}",
                    f"-I{root / 'csrc/cpu'}", str(root / "tests/cpp/move_limit_check.cpp"),
                    "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True)
    bad, checked = map(int, out.stdout.split())
    assert checked > 1_000_000
    assert bad == 0 and out.returncode == 0
