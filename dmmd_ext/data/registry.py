"""Datasets by name, for the command line and configuration files:
load_dataset('hmm', preset='cycle'), load_dataset('text', seq_len=128),
load_dataset('shakespeare'), load_dataset('digits'),
load_dataset('tokens', path='my.npy', seq_len=64).

Every dataset records the call that built it in info['spec'] ({'name': ..., plus
the builder's arguments}); checkpoints keep it in config['data'] (the dataset's
describe()), so rebuild_dataset(checkpoint) makes the same data again and
rebuild_hmm(checkpoint) the exact HMM an HMM run was trained on."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .base import TokenDataset

__all__ = ["DATASETS", "load_dataset", "rebuild_dataset", "rebuild_hmm"]


def _hmm(**kw):
    from .hmm import hmm_dataset
    return hmm_dataset(**kw)


def _text(**kw):
    from .text import text_dataset
    return text_dataset(**kw)


def _shakespeare(**kw):
    from .shakespeare import shakespeare_dataset
    return shakespeare_dataset(**kw)


def _digits(**kw):
    from .digits import digits_dataset
    return digits_dataset(**kw)


def _tokens(**kw):
    from .tokens import tokens_dataset
    return tokens_dataset(**kw)


DATASETS = {"hmm": _hmm, "text": _text, "shakespeare": _shakespeare, "digits": _digits,
            "tokens": _tokens}


def load_dataset(name: str, **kwargs) -> TokenDataset:
    """A TokenDataset by name; kwargs go to the dataset's builder (None values dropped)."""
    if name not in DATASETS:
        raise ValueError(f"dataset: expected one of {sorted(DATASETS)}, got {name!r}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    ds = DATASETS[name](**kwargs)
    # builders that know more (hmm: the sampling sizes) record their own spec
    ds.info.setdefault("spec", {"name": name, **{k: _portable(k, v) for k, v in kwargs.items()}})
    return ds


def _portable(key: str, value):
    """File arguments as absolute paths, so a spec rebuilds from any directory."""
    if key in ("path", "tokenizer") and isinstance(value, (str, os.PathLike)):
        return str(Path(value).expanduser().resolve())
    return value


def _config(source: dict | str | os.PathLike) -> dict:
    """A checkpoint config: the dict itself, or read from a checkpoint or run directory."""
    if isinstance(source, dict):
        return source
    path = Path(source)
    for cand in (path / "config.json", path / "checkpoint" / "config.json"):
        if cand.is_file():
            return json.loads(cand.read_text())
    raise FileNotFoundError(f"checkpoint: no config.json in {path} or {path / 'checkpoint'}")


def rebuild_dataset(source: dict | str | os.PathLike) -> TokenDataset:
    """The dataset a checkpoint was trained on, from its recorded spec (source: a
    checkpoint config dict, or a checkpoint / run directory)."""
    spec = (_config(source).get("data") or {}).get("spec")
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError("checkpoint: its config records no data spec (written by dmmd_ext "
                         "versions before data specs); pass the data flags explicitly")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    return load_dataset(spec["name"], **kwargs)


def rebuild_hmm(source: dict | str | os.PathLike):
    """The exact HMM a checkpoint's data came from (its config's data.hmm arguments)."""
    from .hmm import make_hmm

    args = (_config(source).get("data") or {}).get("hmm")
    if not isinstance(args, dict):
        raise ValueError("checkpoint: its data is not an HMM language (config has no data.hmm)")
    return make_hmm(**args)
