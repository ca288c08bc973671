"""The common dataset interface: fixed train/validation token rows, a
vocabulary size, and a resumable random batch iterator.

Rows are int64 tensors [N, L] or TokenRows: a view of rows of a (memory-mapped)
numpy array kept in its stored dtype (uint16 for a nanoGPT-style train.bin),
read and widened to int64 only for the rows a batch asks for."""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch

__all__ = ["TokenDataset", "TokenRows", "check_tokens"]


class TokenRows:
    """Rows of a 2-d integer numpy array (a np.memmap, or in memory), minus an
    optional sorted set of excluded rows (the other split), indexed like a tensor:
    rows[i] -> int64 [L], rows[a:b] / rows[idx tensor] -> int64 [n, L]. Only the
    rows asked for are read. Values are not checked here (tokens_dataset scans
    the file once)."""

    def __init__(self, array: np.ndarray, rows: np.ndarray | None = None,
                 exclude: np.ndarray | None = None):
        if array.ndim != 2:
            raise ValueError(f"TokenRows: expected a 2-d array, got shape {array.shape}")
        self.array = array
        self._rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        # exclude: sorted row numbers left out; the j-th kept row is j + #(w <= j)
        # with w_i = exclude_i - i (no index array of the kept rows is built)
        self._w = None
        if exclude is not None and len(exclude):
            ex = np.sort(np.asarray(exclude, dtype=np.int64))
            self._w = ex - np.arange(len(ex))
        n_total = array.shape[0]
        self._n = (len(self._rows) if self._rows is not None
                   else n_total - (0 if self._w is None else len(self._w)))

    @property
    def shape(self) -> tuple[int, int]:
        return (self._n, self.array.shape[1])

    @property
    def stored_dtype(self) -> np.dtype:
        return self.array.dtype

    dtype = torch.int64  # what indexing returns

    def __len__(self) -> int:
        return self._n

    def dim(self) -> int:
        return 2

    def size(self, d: int | None = None):
        return self.shape if d is None else self.shape[d]

    def _map(self, j: np.ndarray) -> np.ndarray:
        if self._rows is not None:
            return self._rows[j]
        if self._w is None:
            return j
        return j + np.searchsorted(self._w, j, side="right")

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            i = int(idx) + (self._n if idx < 0 else 0)
            if not 0 <= i < self._n:
                raise IndexError(f"row {idx} out of range for {self._n} rows")
            return torch.from_numpy(np.asarray(self.array[int(self._map(np.array([i]))[0])],
                                               dtype=np.int64))
        if isinstance(idx, slice):
            j = np.arange(self._n)[idx]
        else:
            j = np.asarray(idx.cpu() if isinstance(idx, torch.Tensor) else idx, dtype=np.int64)
            if j.ndim != 1:
                raise IndexError(f"TokenRows: expected a 1-d index, got shape {j.shape}")
            if len(j) and (j.min() < -self._n or j.max() >= self._n):
                raise IndexError(f"TokenRows: index out of range for {self._n} rows")
            j = np.where(j < 0, j + self._n, j)
        rows = self._map(j)
        if len(rows) > 1 and np.all(np.diff(rows) == 1):  # contiguous: one read
            out = self.array[rows[0]:rows[-1] + 1]
        else:
            out = self.array[rows]
        return torch.from_numpy(np.asarray(out, dtype=np.int64).reshape(len(rows), self.array.shape[1]))

    def materialize(self) -> torch.Tensor:
        return self[:]

    def __repr__(self) -> str:
        return f"TokenRows({self._n} x {self.array.shape[1]}, stored {self.array.dtype})"


def check_tokens(name: str, x: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """x as int64 [N, L]; clear errors for empty data, wrong rank, tokens out of range.
    TokenRows pass through unchanged (their file was checked when it was opened)."""
    if isinstance(x, TokenRows):
        if len(x) == 0:
            raise ValueError(f"{name}: empty data (no rows)")
        return x
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.dtype.is_floating_point or x.dtype == torch.bool or x.is_complex():
        raise ValueError(f"{name}: expected integer tokens, got dtype {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"{name}: expected a 2-d tensor [num_sequences, seq_len], "
                         f"got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name}: empty data (shape {tuple(x.shape)}); need at least one "
                         "sequence of length >= 1")
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"{name}: tokens must lie in [0, vocab_size={vocab_size}), "
                         f"got values in [{lo}, {hi}]")
    return x.to(torch.int64).contiguous()


class TokenDataset:
    """train [N, L] and val [M, L] int64 tokens in [0, vocab_size) (tensors or TokenRows).

    batches() draws training batches uniformly with replacement using the given
    generator, so saving the generator's state is enough to resume the stream
    exactly. decode, when given, maps a 1-d token tensor to text."""

    def __init__(self, name: str, train: torch.Tensor, val: torch.Tensor, vocab_size: int,
                 decode: Callable[[torch.Tensor], str] | None = None, info: dict | None = None):
        if int(vocab_size) < 1:
            raise ValueError(f"vocab_size: expected >= 1, got {vocab_size}")
        self.name, self.vocab_size = name, int(vocab_size)
        self.train = check_tokens(f"{name} train", train, self.vocab_size)
        self.val = check_tokens(f"{name} val", val, self.vocab_size)
        if self.train.shape[1] != self.val.shape[1]:
            raise ValueError(f"{name}: train and val sequence lengths differ "
                             f"({self.train.shape[1]} vs {self.val.shape[1]})")
        self._decode = decode
        self.info = dict(info or {})

    @property
    def seq_len(self) -> int:
        return self.train.shape[1]

    def check_vocab(self, vocab_size: int, what: str = "model") -> None:
        """Raise if a model/checkpoint built for another vocabulary meets this data."""
        if int(vocab_size) != self.vocab_size:
            raise ValueError(f"vocabulary mismatch: the {what} expects vocab_size={vocab_size} "
                             f"but dataset {self.name!r} has vocab_size={self.vocab_size}")

    def batches(self, batch_size: int, generator: torch.Generator | None = None,
                split: str = "train", device: torch.device | str = "cpu"
                ) -> Iterator[torch.Tensor]:
        """Endless random batches [batch_size, seq_len] (with replacement)."""
        data = self._split(split)
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        while True:
            idx = torch.randint(0, data.shape[0], (batch_size,), generator=generator)
            yield data[idx].to(device, non_blocking=True)

    def eval_batches(self, batch_size: int, max_batches: int | None = None, split: str = "val",
                     device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
        """The split in order, in batches (deterministic; for validation)."""
        data = self._split(split)
        n = data.shape[0] if max_batches is None else min(data.shape[0], max_batches * batch_size)
        for i in range(0, n, batch_size):
            yield data[i:min(i + batch_size, n)].to(device)

    def _split(self, split: str) -> torch.Tensor:
        if split not in ("train", "val"):
            raise ValueError(f"split: expected 'train' or 'val', got {split!r}")
        return self.train if split == "train" else self.val

    def decode(self, tokens: torch.Tensor) -> str | None:
        return None if self._decode is None else self._decode(tokens)

    def describe(self) -> dict:
        return {"name": self.name, "vocab_size": self.vocab_size, "seq_len": self.seq_len,
                "train_sequences": self.train.shape[0], "val_sequences": self.val.shape[0],
                **self.info}

    def __repr__(self) -> str:
        d = self.describe()
        return f"TokenDataset({', '.join(f'{k}={v}' for k, v in d.items())})"
