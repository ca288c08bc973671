"""Your own data: token tensors (.pt / .npy) or a text file (character level).

- a 2-d integer array [N, L]: N sequences of length L (seq_len, if given, must match);
- a 1-d integer array: one token stream, cut into non-overlapping windows of seq_len;
- any other file: read as UTF-8 text, characters become tokens; the vocabulary is
  the sorted set of characters in the file (info['alphabet']).

vocab_size defaults to max token + 1 (arrays) and is checked when given. The last
val_fraction of the sequences (at least one) form the validation set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import TokenDataset


def _windows(x: torch.Tensor, seq_len: int | None, path: Path) -> torch.Tensor:
    if x.dim() == 2:
        if seq_len is not None and seq_len != x.shape[1]:
            raise ValueError(f"{path}: sequences have length {x.shape[1]}, but seq_len={seq_len}")
        return x
    if x.dim() != 1:
        raise ValueError(f"{path}: expected a 1-d token stream or a 2-d [N, L] array, "
                         f"got shape {tuple(x.shape)}")
    if seq_len is None or seq_len < 1:
        raise ValueError(f"{path}: a 1-d token stream needs seq_len >= 1 (got {seq_len})")
    n = len(x) // seq_len
    return x[:n * seq_len].reshape(n, seq_len)


def _load_array(path: Path) -> torch.Tensor:
    if path.suffix == ".npy":
        x = torch.from_numpy(np.load(path, allow_pickle=False))
    else:
        x = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{path}: expected a saved tensor, got {type(x).__name__}")
    if x.dtype.is_floating_point or x.dtype == torch.bool:
        raise ValueError(f"{path}: expected integer tokens, got dtype {x.dtype}")
    return x.to(torch.int64)


def tokens_dataset(path: str, seq_len: int | None = None, vocab_size: int | None = None,
                   val_fraction: float = 0.05) -> TokenDataset:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"tokens: no such file {p}")
    info, decode = {"path": str(p)}, None
    if p.suffix in (".pt", ".npy"):
        x = _windows(_load_array(p), seq_len, p)
        if x.numel() == 0:
            raise ValueError(f"{p}: empty data (shape {tuple(x.shape)})")
        k = int(x.max()) + 1
        if vocab_size is None:
            vocab_size = k
    else:
        text = p.read_text(encoding="utf-8")
        if not text:
            raise ValueError(f"{p}: empty text file")
        alphabet = "".join(sorted(set(text)))
        index = {c: i for i, c in enumerate(alphabet)}
        if vocab_size is not None and vocab_size != len(alphabet):
            raise ValueError(f"vocabulary mismatch: {p} has {len(alphabet)} distinct characters "
                             f"but vocab_size={vocab_size}")
        vocab_size = len(alphabet)
        x = _windows(torch.tensor([index[c] for c in text], dtype=torch.long),
                     seq_len or 128, p)
        info["alphabet"] = alphabet
        decode = lambda t: "".join(alphabet[i] for i in t.reshape(-1).tolist())  # noqa: E731
    if x.shape[0] < 2:
        raise ValueError(f"{p}: need at least 2 sequences (one for validation), got "
                         f"{x.shape[0]} of length {x.shape[1] if x.dim() == 2 else '?'}")
    n_val = max(1, int(round(x.shape[0] * val_fraction)))
    return TokenDataset(p.stem, x[:-n_val], x[-n_val:], vocab_size, decode=decode, info=info)
