"""The package loads its kernels and reports how they were built."""

import importlib
import importlib.util
import platform
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

import dmmd_ext


def test_build_info_matches_running_torch():
    info = dmmd_ext.build_info()
    assert info["torch_version"].split("+")[0] == torch.__version__.split("+")[0]
    assert isinstance(info["cuda_kernels"], bool)
    if info["cuda_kernels"]:
        assert info["cuda_archs"], "CUDA kernels were built but no architecture is recorded"
        assert info["cuda_compiler"]
    assert info["cxx_compiler"]


def test_ops_registered_on_cpu():
    for name in ["corrupt", "philox", "gumbel_from_bits"]:
        op = getattr(torch.ops.dmmd_ext, name)
        assert op.default._schema.name == f"dmmd_ext::{name}"


def test_mismatched_build_fails_with_rebuild_message(tmp_path):
    """A build for another torch must fail at import with advice, not a symbol error."""
    code = textwrap.dedent(
        """
        import sys, types, torch
        fake = types.ModuleType("dmmd_ext._build_info")
        fake.TORCH_VERSION = "1.0.0"; fake.TORCH_CUDA = ""; fake.WITH_CUDA = False
        fake.CUDA_ARCHS = []; fake.CXX_COMPILER = "x"; fake.CUDA_COMPILER = ""; fake.BUILD_TYPE = "x"
        sys.modules["dmmd_ext._build_info"] = fake
        try:
            import dmmd_ext
        except ImportError as e:
            print("ERR", e)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "ERR" in out.stdout and "Rebuild" in out.stdout and "1.0.0" in out.stdout


def test_version_exposed():
    assert importlib.import_module("dmmd_ext").__version__


# The float lane loops of the CPU losses. Each must be AVX-512 code in its
# x86-64-v4 clone: GCC once left the soft-target loop scalar (the soft auxiliary
# forward ran 4x slower), which no numerical test can see.
_LANE_LOOPS = [
    "gen_chunk<float>", "gen_chunk_grad<float>", "aux_chunk<float, true>",
    "aux_chunk<float, false>", "aux_chunk_grad<float>", "chunk_sum_exp<float>",
    "chunk_exp<float>", "chunk_soft_y<float>",
]


def _v4_clones(so_path, objdump):
    """{demangled function name: its instructions} for every x86-64-v4 clone."""
    out = subprocess.run([objdump, "-d", "--no-show-raw-insn", "-C", so_path],
                         capture_output=True, text=True, check=True).stdout
    clones, name = {}, None
    for line in out.splitlines():
        head = re.match(r"^[0-9a-f]+ <(.*) \[clone \.arch_x86_64_v4\]>:$", line)
        if head:
            name = head.group(1)
            clones[name] = []
        elif not line.strip():
            name = None
        elif name:
            clones[name].append(line)
    return clones


def test_cpu_lane_loops_vectorized():
    if platform.machine() != "x86_64" or not dmmd_ext.build_info()["cxx_compiler"].startswith("GNU"):
        pytest.skip("the target_clones lane loops exist only in GCC builds for x86-64")
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump (binutils) not found")
    clones = _v4_clones(importlib.util.find_spec("dmmd_ext._C").origin, objdump)
    assert clones, "no named x86-64-v4 clones in dmmd_ext._C: was it stripped? (pyproject.toml: install.strip)"
    for loop in _LANE_LOOPS:
        bodies = [b for n, b in clones.items() if f"::{loop}(" in n]
        assert bodies, f"no x86-64-v4 clone of {loop} in dmmd_ext._C"
        zmm = sum("zmm" in insn for insn in bodies[0])
        # a vectorized loop body has dozens; a scalar one keeps at most a few
        # for the lane reductions
        assert zmm >= 16, f"{loop}: {zmm} AVX-512 instructions, the loop was not vectorized"
