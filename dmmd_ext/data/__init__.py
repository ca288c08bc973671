"""Datasets behind one interface (TokenDataset): a synthetic HMM language with
exact likelihood, stdlib-docstring English text, 8x8 digits, and user tokens."""

from .base import TokenDataset, check_tokens
from .registry import DATASETS, load_dataset

__all__ = ["TokenDataset", "check_tokens", "DATASETS", "load_dataset"]
