"""The edge-case subset of the CUDA tests (marker simt_edge: odd V, V = 1, strided
rows, empty batches, +-inf/NaN rows, top-k/top-p at the edges) against the
ASan + UBSan build of the emulated CUDA kernels (dmmd_ext._simt_asan), in a
child pytest with libasan preloaded: an out-of-bounds read or write of a
kernel, in global or __shared__ memory, or undefined behaviour fails it with
the sanitizer's report (file:line)."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from dmmd_ext import simt
from conftest import NEUTRAL_CWD, TESTS_DIR, child_env


def _libasan():
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("gcc")
    if not cxx:
        return None
    out = subprocess.run([cxx, "-print-file-name=libasan.so"], capture_output=True, text=True)
    path = out.stdout.strip()
    return path if out.returncode == 0 and os.path.isabs(path) and os.path.exists(path) else None


@pytest.mark.skipif(not simt.available("asan"),
                    reason="the sanitizer build is not installed (DMMD_EXT_SIMT=1 builds it)")
def test_edge_cases_under_asan_and_ubsan():
    libasan = _libasan()
    assert libasan, "the asan build exists but libasan.so was not found (set CXX)"
    env = child_env(
        LD_PRELOAD=libasan,
        # Python and torch keep allocations alive at exit; leaks are not the question.
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:alloc_dealloc_mismatch=0",
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
        DMMD_SIMT_FLAVOR="asan", DMMD_KERNEL_BACKENDS="simt", DMMD_SIMT_ORDERS="rev",
    )
    cmd = [sys.executable, "-m", "pytest", TESTS_DIR, "-m", "simt_edge", "-q", "-x",
           "-p", "no:cacheprovider"]
    r = subprocess.run(cmd, cwd=NEUTRAL_CWD, env=env, capture_output=True, text=True,
                       timeout=1800)
    tail = (r.stdout[-6000:] + "\n" + r.stderr[-6000:])
    assert r.returncode == 0, f"sanitizer run failed (rc {r.returncode}):\n{tail}"
    assert "AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, tail
    ran = re.search(r"(\d+) passed", r.stdout)
    assert ran and int(ran.group(1)) >= 50, f"too few edge-case tests ran:\n{tail}"
