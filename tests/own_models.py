"""Small user-style denoisers for the tests (importable as `own_models`: tests/ is
on sys.path in the tests and in their subprocesses, see conftest.child_env)."""

from __future__ import annotations

import os
import signal

import torch
import torch.nn as nn


class ConvDenoiser(nn.Module):
    """Token + time embedding, two 1-d convolutions, K logits (no noise input)."""

    def __init__(self, vocab_in: int, vocab_out: int, width: int = 16):
        super().__init__()
        self.emb = nn.Embedding(vocab_in, width)
        self.time = nn.Linear(1, width)
        self.convs = nn.ModuleList(nn.Conv1d(width, width, 3, padding=1) for _ in range(2))
        self.out = nn.Linear(width, vocab_out)

    def forward(self, z, t=None, noise=None):
        h = self.emb(z)
        if t is not None:
            h = h + self.time(t.reshape(-1, 1).float())[:, None]
        h = h.transpose(1, 2)
        for conv in self.convs:
            h = h + torch.tanh(conv(h))
        return self.out(h.transpose(1, 2))


def conv_denoiser(vocab_in: int, vocab_out: int, max_len: int, width: int = 16) -> nn.Module:
    """The factory `dmmd train-teacher --model own_models:conv_denoiser` calls."""
    return ConvDenoiser(vocab_in, vocab_out, width)


class ForeignConfig:
    """Stands in for a Hugging Face PretrainedConfig: has to_dict(), is not ours."""

    def __init__(self, hidden_size: int):
        self.hidden_size = hidden_size

    def to_dict(self) -> dict:
        return {"hidden_size": self.hidden_size, "model_type": "foreign"}


class ForeignConfigDenoiser(ConvDenoiser):
    """A wrapper keeping `self.config = hf.config`, as users write them."""

    def __init__(self, vocab_in: int, vocab_out: int, width: int = 16):
        super().__init__(vocab_in, vocab_out, width)
        self.config = ForeignConfig(width)


class InterruptAt(ConvDenoiser):
    """Sends the process SIGINT (as Ctrl-C would) in its `at`-th forward in training
    mode; once per process run of a test (copies of it, such as a student and an
    auxiliary, share `fired`: reset InterruptAt.fired = False to arm it again)."""

    fired = False

    def __init__(self, vocab_in: int, vocab_out: int, at: int = 3):
        super().__init__(vocab_in, vocab_out)
        self.at, self.calls = at, 0
        InterruptAt.fired = False

    def forward(self, z, t=None, noise=None):
        if self.training:
            self.calls += 1
            if self.calls == self.at and not InterruptAt.fired:
                InterruptAt.fired = True
                os.kill(os.getpid(), signal.SIGINT)
        return super().forward(z, t, noise)
