"""Your own data: token files (memory-mapped, kept in their stored dtype) or text.

Formats, by file suffix:
- `.bin`: raw integers with no header (nanoGPT's train.bin), dtype given by
  `dtype` (default uint16), memory-mapped;
- `.npy`: a numpy array, memory-mapped (np.load(mmap_mode='r'));
- `.pt`: a saved tensor (torch.load(mmap=True));
- any other file: UTF-8 text, encoded with `tokenizer` (a local Hugging Face
  tokenizer directory or a `tokenizers` JSON file) or, without one, character
  by character (the vocabulary is then the sorted set of characters,
  info['alphabet']).

A 2-d array [N, L] holds N sequences (seq_len, if given, must equal L); a 1-d
array is one token stream cut into non-overlapping windows of seq_len (a view:
nothing is copied). Token files stay in their dtype on disk and in memory
(data.base.TokenRows); batches read only their rows and widen them to int64.

vocab_size defaults to max token + 1 (token files; one chunked scan of the file,
which also checks every token against a given vocab_size), or the tokenizer's
vocabulary. Validation: val_fraction of the sequences (at least one), or
val_sequences when given, chosen by a seeded random permutation (split='random',
split_seed) or as the last rows (split='tail'). The tokenizer, when given, also
decodes samples (dataset.decode, `dmmd sample`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import TokenDataset, TokenRows

__all__ = ["tokens_dataset", "open_token_array", "DTYPES", "SPLITS"]

DTYPES = ("uint8", "uint16", "uint32", "int16", "int32", "int64")
SPLITS = ("random", "tail")
_SCAN_CHUNK = 1 << 24  # elements per chunk of the min/max scan


def open_token_array(path: Path, dtype: str | None = None) -> np.ndarray:
    """The integer array of a .bin / .npy / .pt file, memory-mapped where possible."""
    if path.suffix == ".bin":
        dt = np.dtype(dtype or "uint16")
        if dt.name not in DTYPES:
            raise ValueError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
        size = path.stat().st_size
        if size == 0 or size % dt.itemsize:
            raise ValueError(f"{path}: {size} bytes is not a whole number of {dt.name} tokens "
                             f"({dt.itemsize} bytes each); is --dtype right?")
        return np.memmap(path, dtype=dt, mode="r")
    if dtype is not None:
        raise ValueError(f"dtype: only .bin files take a dtype ({path.name} records its own)")
    if path.suffix == ".npy":
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    else:
        t = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{path}: expected a saved tensor, got {type(t).__name__}")
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
            raise ValueError(f"{path}: expected integer tokens, got dtype {t.dtype}")
        x = t.numpy()
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{path}: expected integer tokens, got dtype {x.dtype}")
    return x


def _rows(x: np.ndarray, seq_len: int | None, path: Path) -> np.ndarray:
    if x.ndim == 2:
        if seq_len is not None and seq_len != x.shape[1]:
            raise ValueError(f"{path}: sequences have length {x.shape[1]}, but seq_len={seq_len}")
        return x
    if x.ndim != 1:
        raise ValueError(f"{path}: expected a 1-d token stream or a 2-d [N, L] array, "
                         f"got shape {tuple(x.shape)}")
    if seq_len is None or seq_len < 1:
        raise ValueError(f"{path}: a 1-d token stream needs seq_len >= 1 (got {seq_len})")
    n = len(x) // seq_len
    return x[:n * seq_len].reshape(n, seq_len)


def _scan_range(x: np.ndarray) -> tuple[int, int]:
    flat = x.reshape(-1)
    lo, hi = None, None
    for i in range(0, flat.shape[0], _SCAN_CHUNK):
        c = flat[i:i + _SCAN_CHUNK]
        a, b = int(c.min()), int(c.max())
        lo, hi = (a, b) if lo is None else (min(lo, a), max(hi, b))
    return lo, hi


def _encode_text(text: str, tokenizer):
    if hasattr(tokenizer, "get_vocab_size"):  # a tokenizers.Tokenizer
        ids = tokenizer.encode(text).ids
        k = tokenizer.get_vocab_size()
        return np.asarray(ids, dtype=np.int64), k, lambda t: tokenizer.decode(t.reshape(-1).tolist())
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    return (np.asarray(ids, dtype=np.int64), len(tokenizer),
            lambda t: tokenizer.decode(t.reshape(-1).tolist()))


def tokenizer_decoder(path: str | Path):
    """decode(1-d tokens) -> str with the tokenizer at path (see models.hf.load_tokenizer)."""
    from ..models.hf import load_tokenizer

    tok = load_tokenizer(path)
    if tok is None:
        raise ValueError(f"tokenizer: no tokenizer files in {path}")
    return lambda t: tok.decode(t.reshape(-1).tolist())


def _split(n: int, val_fraction: float, val_sequences: int | None, split: str, seed: int,
           path: Path) -> np.ndarray:
    """Sorted row numbers of the validation split."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    if n < 2:
        raise ValueError(f"{path}: need at least 2 sequences (one for validation), got {n}")
    if val_sequences is not None:
        if not 1 <= val_sequences < n:
            raise ValueError(f"val_sequences: expected 1 <= value < {n} (the sequences in {path}), "
                             f"got {val_sequences}")
        n_val = int(val_sequences)
    else:
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction: expected a number in (0, 1), got {val_fraction}")
        n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    if split == "tail":
        return np.arange(n - n_val, n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=n_val, replace=False))


def tokens_dataset(path: str, seq_len: int | None = None, vocab_size: int | None = None,
                   val_fraction: float = 0.05, dtype: str | None = None,
                   tokenizer: str | None = None, val_sequences: int | None = None,
                   split: str = "random", split_seed: int = 0) -> TokenDataset:
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise FileNotFoundError(f"tokens: no such file {p}")
    info, decode = {"path": str(p)}, None
    if tokenizer is not None:
        tokenizer = str(Path(tokenizer).expanduser().resolve())
        info["tokenizer"] = tokenizer
    if p.suffix in (".bin", ".npy", ".pt"):
        x = _rows(open_token_array(p, dtype), seq_len, p)
        if x.size == 0:
            raise ValueError(f"{p}: empty data (shape {tuple(x.shape)})")
        lo, hi = _scan_range(x)
        if lo < 0 or (vocab_size is not None and hi >= vocab_size):
            raise ValueError(f"{p}: tokens must lie in [0, vocab_size={vocab_size or hi + 1}), "
                             f"got values in [{lo}, {hi}]")
        vocab_size = hi + 1 if vocab_size is None else vocab_size
        info["dtype"] = x.dtype.name
        if tokenizer is not None:
            decode = tokenizer_decoder(tokenizer)
    else:
        text = p.read_text(encoding="utf-8")
        if not text:
            raise ValueError(f"{p}: empty text file")
        if tokenizer is not None:
            from ..models.hf import load_tokenizer

            tok = load_tokenizer(tokenizer)
            if tok is None:
                raise ValueError(f"tokenizer: no tokenizer files in {tokenizer}")
            ids, k, decode = _encode_text(text, tok)
            if vocab_size is not None and vocab_size < k and ids.size and ids.max() >= vocab_size:
                raise ValueError(f"vocab_size: {vocab_size} is below the token id {int(ids.max())} "
                                 f"that the tokenizer writes for {p}")
            vocab_size = vocab_size or k
        else:
            alphabet = "".join(sorted(set(text)))
            index = {c: i for i, c in enumerate(alphabet)}
            if vocab_size is not None and vocab_size != len(alphabet):
                raise ValueError(f"vocabulary mismatch: {p} has {len(alphabet)} distinct characters "
                                 f"but vocab_size={vocab_size}")
            vocab_size = len(alphabet)
            ids = np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
            info["alphabet"] = alphabet
            decode = lambda t: "".join(alphabet[i] for i in t.reshape(-1).tolist())  # noqa: E731
        x = _rows(ids, seq_len or 128, p)
    val_rows = _split(x.shape[0], val_fraction, val_sequences, split, split_seed, p)
    info.update(split=split, split_seed=split_seed, val_rows=int(len(val_rows)))
    return TokenDataset(p.stem, TokenRows(x, exclude=val_rows), TokenRows(x, rows=val_rows),
                        vocab_size, decode=decode, info=info)
