"""How a checkpoint records the model it holds, and how every loader rebuilds it.

A model spec is a JSON-able dict with an "arch" key, stored as config["model"]
in every checkpoint (checkpoint.py):

    {"arch": "transformer", **TransformerConfig fields}      the built-in model
                                                             ("ours" on the CLI)
    {"arch": "hf:/abs/dir", "vocab_size": K, ...}           a Hugging Face model
                                                             wrapped by models.hf
    {"arch": "pkg.module:factory", "args": {...}}            your own model:
                                                             factory(**args)

A spec may add "d_noise": n > 0 (a D-MMD student): the built-in Transformer has
the field natively; any other model is wrapped in models.noise.NoiseInput.

model_spec(model) reads the spec back from a model (its dmmd_spec attribute,
which build_model, new_model and the adapters set, or a TransformerConfig), so
trainers record it without knowing the class. For arch "pkg.module:factory"
the module must be importable where the checkpoint is loaded (installed or on
PYTHONPATH); new_model passes vocab_in, vocab_out and max_len to the factory as
keyword arguments, with the user's arguments, and records all of them.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch.nn as nn

__all__ = ["model_spec", "build_model", "new_model", "arch_kind", "resolve_factory"]


def arch_kind(arch: str) -> str:
    """'transformer', 'hf' or 'factory' for an arch string; a clear error otherwise."""
    if arch in ("transformer", "ours"):
        return "transformer"
    if arch.startswith("hf:"):
        if len(arch) == 3:
            raise ValueError("model: 'hf:' needs a directory, e.g. hf:./my-bert")
        return "hf"
    mod, sep, fn = arch.partition(":")
    if sep and mod and fn and all(p.isidentifier() for p in mod.split(".")) and fn.isidentifier():
        return "factory"
    raise ValueError(f"model: expected 'ours' (the built-in transformer), 'hf:DIR' (a local "
                     f"Hugging Face model) or 'package.module:factory' (your own), got {arch!r}")


def resolve_factory(arch: str):
    mod_name, _, fn_name = arch.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ImportError(f"model {arch!r}: cannot import module {mod_name!r} ({e}); install it or "
                          "put its directory on PYTHONPATH") from e
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise ValueError(f"model {arch!r}: module {mod_name!r} has no callable {fn_name!r}")
    return fn


def check_arguments(fn, args: dict, what: str) -> None:
    """A clear error for arguments fn does not take (before fn runs)."""
    try:
        inspect.signature(fn).bind(**args)
    except TypeError as e:
        params = [p for p in inspect.signature(fn).parameters if p not in ("self",)]
        raise ValueError(f"{what}: {e}; it takes {params}") from None


def model_spec(model: nn.Module) -> dict | None:
    """The spec of a model (see the module docstring), or None when unknown."""
    spec = getattr(model, "dmmd_spec", None)
    if isinstance(spec, dict):
        return dict(spec)
    from .transformer import TransformerConfig

    cfg = getattr(model, "config", None)
    if isinstance(cfg, TransformerConfig):
        return {"arch": "transformer", **cfg.to_dict()}
    return None


def _with_noise(model: nn.Module, spec: dict) -> nn.Module:
    d_noise = int(spec.get("d_noise", 0) or 0)
    if d_noise > 0:
        from .noise import NoiseInput

        model = NoiseInput(model, d_noise)
    model.dmmd_spec = dict(spec)
    return model


def build_model(spec: dict, pretrained: bool = False) -> nn.Module:
    """The model a spec describes, freshly initialized (load the weights after);
    pretrained=True loads a Hugging Face model's own weights from its directory."""
    if not isinstance(spec, dict) or not spec:
        raise ValueError("checkpoint: the config records no model (config['model'] is empty); "
                         "rebuild the model yourself and load the weights with "
                         "checkpoint.load_weights")
    arch = str(spec.get("arch", "transformer"))
    kind = arch_kind(arch)
    if kind == "transformer":
        from .transformer import Transformer, TransformerConfig

        # its config is its spec (model_spec reads it): no dmmd_spec attribute, so
        # with_noise_input's copy cannot carry a stale one
        return Transformer(TransformerConfig.from_dict(
            {k: v for k, v in spec.items() if k != "arch"}))
    if kind == "hf":
        from .hf import hf_denoiser_from_spec

        return _with_noise(hf_denoiser_from_spec(spec, pretrained=pretrained), spec)
    factory = resolve_factory(arch)
    check_arguments(factory, spec.get("args", {}), f"model {arch!r} (--model-arg)")
    model = factory(**spec.get("args", {}))
    if not isinstance(model, nn.Module):
        raise TypeError(f"model {arch!r}: the factory returned {type(model).__name__}, "
                        "expected an nn.Module")
    return _with_noise(model, spec)


def new_model(arch: str, vocab_in: int, vocab_out: int, max_len: int, process: str = "masked",
              args: dict[str, Any] | None = None) -> nn.Module:
    """A new teacher for arch ('hf:DIR' starts from the directory's weights,
    'package.module:factory' calls factory(vocab_in=, vocab_out=, max_len=, **args));
    its dmmd_spec records how to rebuild it. The built-in transformer is built by
    the CLI from its presets (cli._run_train)."""
    args = dict(args or {})
    kind = arch_kind(arch)
    if kind == "hf":
        from pathlib import Path

        from .hf import load_hf_denoiser

        check_arguments(load_hf_denoiser, {"path": None, "vocab_size": None, "masked": None,
                                           **args}, f"model {arch!r} (--model-arg)")
        return load_hf_denoiser(Path(arch[3:]).expanduser(), vocab_size=vocab_out,
                                masked=process == "masked", **args)
    if kind == "factory":
        spec = {"arch": arch, "args": {"vocab_in": vocab_in, "vocab_out": vocab_out,
                                       "max_len": max_len, **args}}
        return build_model(spec)
    from .transformer import TransformerConfig

    return build_model({"arch": "transformer", **TransformerConfig(
        vocab_in=vocab_in, vocab_out=vocab_out, max_len=max_len, **args).to_dict()})
