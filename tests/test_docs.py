"""docs/own_model.md runs as written: its python blocks, in order, in an empty directory."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "own_model.md"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def test_own_model_guide_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers", reason="the guide uses the optional `transformers`")
    pytest.importorskip("tokenizers", reason="the guide uses the optional `tokenizers`")
    blocks = python_blocks(DOC)
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace = {"__name__": "own_model_guide"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{DOC.name} block {i + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "MASK ->" in out and "NoiseInput with d_noise = 8 for k = 4" in out
    assert (tmp_path / "runs" / "student-k4" / "checkpoint" / "model.safetensors").is_file()
    sys.modules.pop("my_models", None)


def test_docs_name_only_files_that_exist():
    root = DOC.parents[1]
    for doc in [DOC, root / "docs" / "usage.md", root / "README.md"]:
        for ref in re.findall(r"`((?:python|docs|dmmd_ext|tests|scripts)/[\w/.-]+\.(?:py|md|sh))`",
                              doc.read_text()):
            assert (root / ref).is_file(), f"{doc.name} names {ref}, which is not in the repository"
