"""The package loads its kernels and reports how they were built."""

import importlib
import subprocess
import sys
import textwrap

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
