"""Datasets by name, for the command line and configuration files:
load_dataset('hmm', preset='cycle'), load_dataset('text', seq_len=128),
load_dataset('digits'), load_dataset('tokens', path='my.npy', seq_len=64)."""

from __future__ import annotations

from .base import TokenDataset


def _hmm(**kw):
    from .hmm import hmm_dataset
    return hmm_dataset(**kw)


def _text(**kw):
    from .text import text_dataset
    return text_dataset(**kw)


def _digits(**kw):
    from .digits import digits_dataset
    return digits_dataset(**kw)


def _tokens(**kw):
    from .tokens import tokens_dataset
    return tokens_dataset(**kw)


DATASETS = {"hmm": _hmm, "text": _text, "digits": _digits, "tokens": _tokens}


def load_dataset(name: str, **kwargs) -> TokenDataset:
    """A TokenDataset by name; kwargs go to the dataset's builder (None values dropped)."""
    if name not in DATASETS:
        raise ValueError(f"dataset: expected one of {sorted(DATASETS)}, got {name!r}")
    return DATASETS[name](**{k: v for k, v in kwargs.items() if v is not None})
