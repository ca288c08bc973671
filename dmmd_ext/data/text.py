"""A character-level English corpus that every Python installation carries:
the docstrings of a fixed list of standard-library modules.

Extraction is deterministic: the modules in MODULES (sorted) are read from the
running interpreter's stdlib directory (sysconfig 'stdlib'), parsed with ast
(nothing is imported), and the docstrings of the module, its classes and
functions are taken in ast.walk order. Each docstring has its whitespace runs
collapsed to one space and characters outside printable ASCII dropped; docstrings
are joined with newlines. The vocabulary is fixed: newline plus the 95 printable
ASCII characters (K = 96). The first 90% of the characters are the training
text, the last 10% the validation text, cut into non-overlapping windows.

The text depends on the Python version (docstrings are edited between releases),
so RECORDED_SHA256 holds the content hash per version where it was recorded.
"""

from __future__ import annotations

import ast
import hashlib
import re
import sys
import sysconfig
from functools import lru_cache
from pathlib import Path

import torch

from .base import TokenDataset

__all__ = ["MODULES", "ALPHABET", "corpus_text", "corpus_sha256", "text_dataset",
           "RECORDED_SHA256", "encode", "decode"]

MODULES = sorted([
    "argparse", "ast", "base64", "bisect", "calendar", "collections", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "datetime", "difflib", "email.message",
    "enum", "fractions", "ftplib", "functools", "getopt", "gettext", "glob", "heapq", "hmac",
    "imaplib", "inspect", "ipaddress", "json", "json.decoder", "logging", "mailbox",
    "numbers", "optparse", "os", "pathlib", "pickle", "pprint", "queue", "random", "sched",
    "shlex", "shutil", "smtplib", "statistics", "string", "subprocess", "tarfile",
    "tempfile", "textwrap", "threading", "timeit", "tokenize", "traceback", "typing",
    "unittest.case", "urllib.parse", "uuid", "warnings", "weakref", "zipfile",
])

ALPHABET = "\n" + "".join(chr(c) for c in range(32, 127))
_INDEX = {c: i for i, c in enumerate(ALPHABET)}

# sha256 of corpus_text() per Python version (major.minor.micro) where recorded.
RECORDED_SHA256 = {
    "3.11.7": "94cc5f92a33192dfeb308a329cc9efad07071a33cf39381d2179a71f48d5c8bc",
}


def _module_file(root: Path, name: str) -> Path:
    parts = name.split(".")
    for cand in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"text corpus: stdlib module {name!r} not found under {root}")


def _docstrings(source: str) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                doc = re.sub(r"\s+", " ", doc).strip()
                doc = "".join(c for c in doc if 32 <= ord(c) < 127)
                if doc:
                    out.append(doc)
    return out


@lru_cache(maxsize=1)
def corpus_text() -> str:
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for name in MODULES:
        docs.extend(_docstrings(_module_file(root, name).read_text(encoding="utf-8")))
    return "\n".join(docs)


def corpus_sha256() -> str:
    return hashlib.sha256(corpus_text().encode("ascii")).hexdigest()


def python_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))


def encode(text: str) -> torch.Tensor:
    try:
        return torch.tensor([_INDEX[c] for c in text], dtype=torch.long)
    except KeyError as e:
        raise ValueError(f"text: character {e.args[0]!r} is outside the corpus alphabet "
                         "(newline + printable ASCII)") from None


def decode(tokens: torch.Tensor) -> str:
    return "".join(ALPHABET[i] for i in tokens.reshape(-1).tolist())


def text_dataset(seq_len: int = 128, val_fraction: float = 0.1) -> TokenDataset:
    """TokenDataset of stdlib docstrings, K = 96, windows of seq_len characters."""
    if seq_len < 1:
        raise ValueError(f"seq_len: expected >= 1, got {seq_len}")
    ids = encode(corpus_text())
    cut = int(len(ids) * (1 - val_fraction))

    def windows(x):
        n = len(x) // seq_len
        return x[:n * seq_len].reshape(n, seq_len)

    return TokenDataset("text", windows(ids[:cut]), windows(ids[cut:]), len(ALPHABET),
                        decode=decode,
                        info={"alphabet": ALPHABET, "characters": len(ids),
                              "sha256": corpus_sha256(), "python": python_version()})
