"""Hugging Face models as diffusion denoisers (needs `transformers`: the [hf] extra).

HFDenoiser(model, vocab_size=K, masked=..., mask_token_id=..., time_input=...)
wraps any module that returns logits from input_ids or inputs_embeds (an
AutoModelForMaskedLM, a causal LM, a trust_remote_code model, your own) and
follows the repository's denoiser convention (processes.DenoiserModel):

    forward(z [B, L] int64, t [B] float, noise=None) -> logits [B, L, K]

Conventions (docs/usage.md, "Model conventions"):
- MASK: the masked process writes MASK as id K. The wrapper maps it to the
  model's own mask token (the tokenizer's or the config's mask_token_id) when it
  has one; otherwise it appends one row to the input embeddings (id V for a
  model with V input ids) and uses that. Uniform processes have no MASK.
- vocabulary: the data ids 0..K-1 are the model's ids 0..K-1 (data tokenized
  with the model's tokenizer, or a smaller vocabulary); K must not exceed the
  model's vocabulary. The output keeps the first K logits ("slicing"). When the
  mask token is one of those K ids, its logit is set to MASK_LOGIT (-1e4): the
  model never draws it, since a revealed token equal to it would read as MASK.
- time: with time_input=True a sinusoidal embedding of t goes through a small
  MLP whose last layer starts at zero and is added to the input embeddings, so
  the model starts as the time-independent model it was (MDLM-style masked
  models do not need t; uniform ones benefit).
- noise: a student's noise input is models.noise.NoiseInput around this wrapper
  (a hook on the input embedding; get_input_embeddings() points it there).

load_hf_denoiser(dir, ...) builds one from a local directory (save_pretrained;
never downloads: local_files_only=True); models.registry records it as
{"arch": "hf:<absolute dir>", ...} so checkpoints rebuild it (the directory
must still exist where the checkpoint is loaded: its config and, with
trust_remote_code, its code are read from there).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

__all__ = ["HFDenoiser", "load_hf_denoiser", "hf_denoiser_from_spec", "load_tokenizer",
           "require_transformers", "MASK_LOGIT"]

MASK_LOGIT = -1e4  # the logit of the mask token when it lies inside the K data classes


def require_transformers():
    try:
        import transformers
    except ImportError as e:
        raise ImportError("Hugging Face models need the `transformers` package: "
                          "pip install 'dmmd_ext[hf]' (or pip install transformers tokenizers)") from e
    return transformers


def _logits(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if getattr(out, "logits", None) is not None:
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"HFDenoiser: the model returned {type(out).__name__}; expected logits "
                    "(a tensor, an output with .logits, or a tuple whose first item is the logits)")


def _max_positions(model: nn.Module) -> int | None:
    cfg = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_seq_len"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


class HFDenoiser(nn.Module):
    """See the module docstring. Attributes: model, vocab_size, masked,
    mask_token_id (the id MASK maps to), appended_mask, time_proj, max_len."""

    d_noise = 0

    def __init__(self, model: nn.Module, vocab_size: int, masked: bool = True,
                 mask_token_id: int | None = None, time_input: bool = False):
        super().__init__()
        self.model, self.vocab_size, self.masked = model, int(vocab_size), bool(masked)
        emb = model.get_input_embeddings()
        n_in = emb.num_embeddings
        if self.vocab_size < 1 or self.vocab_size > n_in:
            raise ValueError(f"vocab_size: the data has K={self.vocab_size} tokens but the model "
                             f"embeds only {n_in} ids; use a model with >= K input ids")
        self.appended_mask = False
        if self.masked and mask_token_id is None:
            if not hasattr(model, "resize_token_embeddings"):
                raise ValueError("mask_token_id: this model has no mask token and no "
                                 "resize_token_embeddings(); pass mask_token_id")
            try:
                model.resize_token_embeddings(n_in + 1, mean_resizing=False)
            except TypeError:
                model.resize_token_embeddings(n_in + 1)
            mask_token_id, self.appended_mask = n_in, True
        if self.masked and not 0 <= int(mask_token_id) < model.get_input_embeddings().num_embeddings:
            raise ValueError(f"mask_token_id: {mask_token_id} is outside the model's input ids "
                             f"[0, {model.get_input_embeddings().num_embeddings})")
        self.mask_token_id = int(mask_token_id) if self.masked else None
        self.max_len = _max_positions(model)
        self.time_proj = None
        if time_input:
            d = emb.embedding_dim
            self.time_proj = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
            nn.init.zeros_(self.time_proj[2].weight)
            nn.init.zeros_(self.time_proj[2].bias)
            self.time_proj.to(emb.weight.device, emb.weight.dtype)

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def model_ids(self, z: torch.Tensor) -> torch.Tensor:
        """The process's ids (MASK = K) as the model's ids."""
        if not self.masked:
            return z
        return torch.where(z == self.vocab_size, torch.full_like(z, self.mask_token_id), z)

    def forward(self, z: torch.Tensor, t: torch.Tensor | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        B, L = z.shape
        if self.max_len is not None and L > self.max_len:
            raise ValueError(f"z: sequence length {L} exceeds the model's {self.max_len} positions")
        ids = self.model_ids(z)
        if self.time_proj is None:
            out = self.model(input_ids=ids)
        else:
            if t is None:
                raise ValueError("t: this model has a time input; pass t [B]")
            from .transformer import timestep_embedding

            h = self.get_input_embeddings()(ids)
            te = timestep_embedding(t.reshape(B), h.shape[-1]).to(h.dtype)
            out = self.model(inputs_embeds=h + self.time_proj(te)[:, None])
        logits = _logits(out)
        if logits.shape[:2] != (B, L) or logits.shape[-1] < self.vocab_size:
            raise ValueError(f"HFDenoiser: the model returned logits of shape {tuple(logits.shape)} "
                             f"for {B} x {L} ids; expected [{B}, {L}, >= K={self.vocab_size}]")
        logits = logits[..., :self.vocab_size]
        if self.masked and self.mask_token_id < self.vocab_size:
            # the mask token is one of the K classes: never predict it (a revealed
            # token equal to it would read as MASK at the next step)
            idx = torch.tensor([self.mask_token_id], device=logits.device)
            logits = logits.index_fill(-1, idx, MASK_LOGIT)
        return logits


def load_tokenizer(path: str | Path):
    """A tokenizer from a local directory (AutoTokenizer) or a tokenizers JSON file;
    None when the directory has no tokenizer files."""
    p = Path(path).expanduser()
    if p.is_file():
        try:
            from tokenizers import Tokenizer
        except ImportError as e:
            raise ImportError("a tokenizers JSON file needs the `tokenizers` package "
                              "(pip install tokenizers)") from e
        return Tokenizer.from_file(str(p))
    if not p.is_dir():
        raise FileNotFoundError(f"tokenizer: no such file or directory {p}")
    transformers = require_transformers()
    try:
        return transformers.AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _mask_from(path: Path, config) -> int | None:
    tok = load_tokenizer(path) if any(path.glob("tokenizer*")) else None
    m = getattr(tok, "mask_token_id", None) if tok is not None else None
    if m is None:
        m = getattr(config, "mask_token_id", None)
    return int(m) if isinstance(m, int) else None


def _model_class(transformers, config, auto_class: str):
    if auto_class == "masked-lm":
        return transformers.AutoModelForMaskedLM, "masked-lm"
    if auto_class == "causal-lm":
        return transformers.AutoModelForCausalLM, "causal-lm"
    if auto_class != "auto":
        raise ValueError(f"auto_class: expected 'auto', 'masked-lm' or 'causal-lm', got {auto_class!r}")
    remote = getattr(config, "auto_map", None) or {}
    mapping = transformers.AutoModelForMaskedLM._model_mapping
    if "AutoModelForMaskedLM" in remote or type(config) in mapping:
        return transformers.AutoModelForMaskedLM, "masked-lm"
    return transformers.AutoModelForCausalLM, "causal-lm"


def load_hf_denoiser(path: str | Path, vocab_size: int, masked: bool = True,
                     time_input: bool = False, trust_remote_code: bool = False,
                     mask_token_id: int | str | None = "auto", auto_class: str = "auto",
                     pretrained: bool = True) -> HFDenoiser:
    """An HFDenoiser for the model saved in directory path (see the module
    docstring). mask_token_id: 'auto' (the tokenizer's or config's, else append
    one), an id, or None (append). auto_class: 'auto' (masked LM when the
    architecture has one, else causal LM), 'masked-lm' or 'causal-lm'.
    pretrained=False builds the architecture with fresh weights (checkpoints
    load theirs over it)."""
    transformers = require_transformers()
    p = Path(path).expanduser().resolve()
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"hf model: no config.json in {p} (a directory written by "
                                "save_pretrained; models are never downloaded)")
    config = transformers.AutoConfig.from_pretrained(str(p), local_files_only=True,
                                                     trust_remote_code=trust_remote_code)
    cls, cls_name = _model_class(transformers, config, auto_class)
    if pretrained:
        model = cls.from_pretrained(str(p), local_files_only=True, dtype=torch.float32,
                                    trust_remote_code=trust_remote_code)
    else:
        model = cls.from_config(config, trust_remote_code=trust_remote_code)
    model = model.float()
    if mask_token_id == "auto":
        mask_token_id = _mask_from(p, config) if masked else None
    den = HFDenoiser(model, vocab_size, masked=masked, mask_token_id=mask_token_id,
                     time_input=time_input)
    den.dmmd_spec = {"arch": f"hf:{p}", "vocab_size": int(vocab_size), "masked": bool(masked),
                     "mask_token_id": None if den.appended_mask else den.mask_token_id,
                     "time_input": bool(time_input), "trust_remote_code": bool(trust_remote_code),
                     "auto_class": cls_name}
    return den


def hf_denoiser_from_spec(spec: dict, pretrained: bool = False) -> HFDenoiser:
    """Rebuild the HFDenoiser a registry spec describes (fresh weights unless pretrained)."""
    return load_hf_denoiser(spec["arch"][3:], vocab_size=spec["vocab_size"],
                            masked=spec.get("masked", True), time_input=spec.get("time_input", False),
                            trust_remote_code=spec.get("trust_remote_code", False),
                            mask_token_id=spec.get("mask_token_id"),
                            auto_class=spec.get("auto_class", "auto"), pretrained=pretrained)
