"""The SIMT emulator (csrc/simt/) on its own: its self-test program, compiled with
the host compiler, passes in every fiber order, with the portable ucontext
context switch, and under ASan + UBSan; and ASan reports a write past a
__shared__ array. No torch or GPU is needed."""

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

SIMT_DIR = Path(__file__).resolve().parents[1] / "csrc" / "simt"
SELFTEST = SIMT_DIR / "selftest.cpp"
CXX = os.environ.get("CXX") or shutil.which("g++")

COMMON = ["-std=c++20", "-O1", "-ffp-contract=off", f"-I{SIMT_DIR}"]
# __shared__ variables are poisoned through a linker section (csrc/simt/shared.h).
SHARED = ["-Wa,--no-warn", f"-Wl,-T,{SIMT_DIR / 'shared.ld'}"]
FLAVORS = {
    "default": SHARED,
    "ucontext": ["-DSIMT_UCONTEXT=1", *SHARED],
    # -O0: half the compile time of -O1 (the emulated kernels' own sanitizer
    # build, tests/test_simt_sanitizers.py, runs optimized code).
    "asan": ["-O0", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
             "-DSIMT_SHARED_SECTION=0"],
}

pytestmark = pytest.mark.skipif(
    not CXX or not SELFTEST.exists(),
    reason="needs a C++20 host compiler (g++ or $CXX) and the csrc/simt sources")


@pytest.fixture(scope="session")
def selftest_binaries(tmp_path_factory):
    """Each flavor compiled once per session, all at the same time."""
    out = tmp_path_factory.mktemp("simt_selftest")

    def build(flavor):
        exe = out / f"selftest_{flavor}"
        cmd = [CXX, *COMMON, *FLAVORS[flavor], str(SELFTEST), "-o", str(exe)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        return flavor, (exe if r.returncode == 0 else None), " ".join(cmd) + "\n" + r.stderr

    with ThreadPoolExecutor(len(FLAVORS)) as pool:
        return {flavor: (exe, log) for flavor, exe, log in pool.map(build, FLAVORS)}


def binary(binaries, flavor):
    exe, log = binaries[flavor]
    if exe is None and flavor == "asan" and ("lasan" in log or "libasan" in log):
        pytest.skip("the compiler has no AddressSanitizer runtime")
    assert exe is not None, f"compiling the {flavor} self-test failed:\n{log[-4000:]}"
    return exe


def run(exe, *args, **env):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SIMT_")}
    full_env.update(env)
    return subprocess.run([str(exe), *args], env=full_env, capture_output=True, text=True,
                          timeout=300)


def assert_passed(r):
    report = r.stdout[-6000:] + "\n" + r.stderr[-4000:]
    assert r.returncode == 0, f"self-test failed (rc {r.returncode}):\n{report}"
    assert "FAIL" not in r.stdout and "passed: 0 failed" in r.stdout, report


@pytest.mark.parametrize("order,seed", [("seq", None), ("rev", None), ("random", "12345")])
def test_selftest_in_every_order(selftest_binaries, order, seed):
    env = {"SIMT_ORDER": order, **({"SIMT_SEED": seed} if seed else {})}
    r = run(binary(selftest_binaries, "default"), **env)
    assert_passed(r)
    assert f"SIMT_ORDER={order}" in r.stdout
    print(next(line for line in r.stdout.splitlines() if "cost:" in line))


def test_selftest_with_ucontext_switch(selftest_binaries):
    r = run(binary(selftest_binaries, "ucontext"), SIMT_ORDER="seq")
    assert_passed(r)
    assert "SIMT_UCONTEXT=1" in r.stdout


def test_selftest_clean_under_asan_and_ubsan(selftest_binaries):
    r = run(binary(selftest_binaries, "asan"), SIMT_ORDER="rev")
    assert_passed(r)
    assert "ASan=1" in r.stdout
    assert "AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr[-4000:]


def test_asan_reports_shared_memory_overflow(selftest_binaries):
    r = run(binary(selftest_binaries, "asan"), "oob")
    assert r.returncode != 0, "a write past a __shared__ array went unreported"
    assert "AddressSanitizer" in r.stderr, r.stderr[-4000:]
    assert "global-buffer-overflow" in r.stderr and "selftest.cpp" in r.stderr, r.stderr[-4000:]
