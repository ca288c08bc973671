"""The common dataset interface: fixed train/validation token tensors, a
vocabulary size, and a resumable random batch iterator."""

from __future__ import annotations

from typing import Callable, Iterator

import torch

__all__ = ["TokenDataset", "check_tokens"]


def check_tokens(name: str, x: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """x as int64 [N, L]; clear errors for empty data, wrong rank, tokens out of range."""
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
    """train [N, L] and val [M, L] int64 tokens in [0, vocab_size).

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
