"""Reference models for generative perplexity and the gradient moment.

ARReference: a small autoregressive transformer (models.Transformer with
causal=True, no time conditioning) trained by this package on the training
split of the same dataset the diffusion models see. Row x = (x_1..x_L) is
scored as prod_i p(x_i | BOS, x_<i): the input is [BOS, x_1..x_{L-1}] with
BOS = K (an extra input id), so every position, the first included, gets an
NLL and the numbers compare across models of the same length.

HFReference: optionally, a Hugging Face causal LM that the user already has on
disk (local_files_only=True: never downloads), for text only; it needs the
`transformers` package and raises a clear error without it.

Both expose token_nll(x) -> [B, L] NLLs (nats) for perplexity, mean_nll(x) ->
scalar (the L of the gradient moment: mean per-token NLL) and parameters().
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..models.transformer import PRESETS, Transformer, TransformerConfig

__all__ = ["ARReference", "ReferenceConfig", "train_reference", "validation_nll", "save_reference", "load_reference",
           "HFReference"]


class ARReference(nn.Module):
    """Causal transformer language model over K tokens with a BOS input id K."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not config.causal or config.time_cond != "none":
            raise ValueError("ARReference: the transformer config must have causal=True and "
                             f"time_cond='none', got causal={config.causal}, time_cond={config.time_cond!r}")
        if config.vocab_in != config.vocab_out + 1:
            raise ValueError(f"ARReference: vocab_in must be vocab_out + 1 (BOS = vocab_out), got "
                             f"vocab_in={config.vocab_in}, vocab_out={config.vocab_out}")
        self.config = config
        self.net = Transformer(config)

    @classmethod
    def build(cls, vocab_size: int, seq_len: int, preset: str = "tiny", **overrides) -> "ARReference":
        if preset not in PRESETS:
            raise ValueError(f"ARReference: preset must be one of {sorted(PRESETS)}, got {preset!r}")
        cfg = TransformerConfig(vocab_in=vocab_size + 1, vocab_out=vocab_size, max_len=seq_len,
                                causal=True, time_cond="none", **{**PRESETS[preset], **overrides})
        return cls(cfg)

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_out

    @property
    def bos(self) -> int:
        return self.config.vocab_out

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.dtype.is_floating_point:
            raise ValueError(f"ARReference: x must be integer tokens [batch, length], got "
                             f"{tuple(x.shape)} {x.dtype}")
        if x.shape[1] > self.config.max_len:
            raise ValueError(f"ARReference: length {x.shape[1]} exceeds the model's max_len "
                             f"{self.config.max_len}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.vocab_size):
            raise ValueError(f"ARReference: tokens must lie in [0, {self.vocab_size}), got "
                             f"[{int(x.min())}, {int(x.max())}]")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, L, K]; position i predicts x_i from x_<i."""
        self._check(x)
        bos = torch.full_like(x[:, :1], self.bos)
        return self.net(torch.cat([bos, x[:, :-1]], dim=1).long())

    def token_nll(self, x: torch.Tensor) -> torch.Tensor:
        logits = self(x).float()
        return F.cross_entropy(logits.transpose(1, 2), x.long(), reduction="none")

    def mean_nll(self, x: torch.Tensor) -> torch.Tensor:
        return self.token_nll(x).mean()

    @torch.no_grad()
    def sample(self, n: int, length: int | None = None, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """Ancestral samples [n, length] (O(length) forward passes; for checks)."""
        length = length or self.config.max_len
        dev = next(self.parameters()).device
        x = torch.empty(n, 0, dtype=torch.long, device=dev)
        for _ in range(length):
            bos = torch.full((n, 1), self.bos, dtype=torch.long, device=dev)
            logits = self.net(torch.cat([bos, x], dim=1))[:, -1].float() / temperature
            nxt = torch.multinomial(logits.softmax(-1).cpu(), 1, generator=generator).to(dev)
            x = torch.cat([x, nxt], dim=1)
        return x


@dataclass
class ReferenceConfig:
    preset: str = "tiny"
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 50
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    eval_batches: int = 16  # validation NLL over this many batches of the val split (0: skip)
    log_every: int = 0      # print the training loss every n steps (0: quiet)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"ReferenceConfig.{name}: expected >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"ReferenceConfig.lr: expected > 0, got {self.lr}")


def _lr_factor(step: int, cfg: ReferenceConfig) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


@torch.no_grad()
def validation_nll(model: ARReference, data: torch.Tensor, batch_size: int = 64,
                   max_batches: int | None = None) -> float:
    """Mean per-token NLL (nats) over the first max_batches batches of data."""
    model.eval()
    dev = next(model.parameters()).device
    n = data.shape[0] if max_batches is None else min(data.shape[0], max_batches * batch_size)
    total = 0.0
    for i in range(0, n, batch_size):
        total += float(model.token_nll(data[i:i + batch_size].to(dev)).double().sum())
    return total / (n * data.shape[1])


def train_reference(dataset, config: ReferenceConfig | None = None) -> tuple[ARReference, dict]:
    """Train an ARReference on ``dataset.train`` (a data.TokenDataset or any
    object with train/val int64 [N, L] tensors and vocab_size). Returns the
    model in eval mode and a record (config, losses, validation NLL)."""
    cfg = config or ReferenceConfig()
    torch.manual_seed(cfg.seed)
    model = ARReference.build(dataset.vocab_size, dataset.train.shape[1], cfg.preset).to(cfg.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg))
    gen = torch.Generator().manual_seed(cfg.seed)
    train = dataset.train
    losses, t0 = [], time.time()
    model.train()
    for step in range(cfg.steps):
        idx = torch.randint(0, train.shape[0], (cfg.batch_size,), generator=gen)
        loss = model.mean_nll(train[idx].to(cfg.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if cfg.log_every and (step + 1) % cfg.log_every == 0:
            print(f"train-reference step {step + 1}/{cfg.steps} loss {sum(losses[-cfg.log_every:]) / cfg.log_every:.4f}")
    model.eval()
    record = {"config": dataclasses.asdict(cfg), "transformer": model.config.to_dict(),
              "final_train_loss": sum(losses[-50:]) / len(losses[-50:]), "train_losses": losses,
              "seconds": time.time() - t0, "dataset": getattr(dataset, "name", None)}
    if cfg.eval_batches:
        record["val_nll"] = validation_nll(model, dataset.val, cfg.batch_size, cfg.eval_batches)
    return model, record


def save_reference(model: ARReference, path: str | Path, record: dict | None = None) -> Path:
    """safetensors weights with the transformer config (and the training
    record, minus the per-step losses) in the metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"dmmd_kind": "ar_reference", "transformer": model.config.to_json()}
    if record is not None:
        meta["record"] = json.dumps({k: v for k, v in record.items() if k != "train_losses"})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=meta)
    return path


def load_reference(path: str | Path, device: str | torch.device = "cpu") -> ARReference:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("dmmd_kind") != "ar_reference":
        raise ValueError(f"load_reference: {path} is not an AR reference checkpoint "
                         f"(metadata dmmd_kind={meta.get('dmmd_kind')!r}, expected 'ar_reference')")
    model = ARReference(TransformerConfig.from_dict(json.loads(meta["transformer"])))
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval()


class HFReference:
    """A local Hugging Face causal LM as reference for text. Rows are the
    model's own token ids; each row is scored after the tokenizer's BOS (or EOS)
    token. Rows re-tokenized from text have unequal lengths: they are cut to a
    common length and the shorter ones end in perplexity.PAD (not scored)."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu") -> None:
        try:
            import transformers
        except ImportError as e:
            raise ImportError("HFReference needs the `transformers` package (pip install transformers); "
                              "the built-in reference is ARReference (`dmmd train-reference`).") from e
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
        except OSError as e:
            raise FileNotFoundError(f"HFReference: no local model at {path!s} (this package never "
                                    "downloads; point it at a directory saved with save_pretrained)") from e
        self.model.float().to(device).eval()
        self.device = device
        self.path = str(path)
        bos = self.tokenizer.bos_token_id
        self.bos = bos if bos is not None else self.tokenizer.eos_token_id
        if self.bos is None:
            raise ValueError(f"HFReference: the tokenizer at {path!s} has neither a BOS nor an EOS token")
        cfg = self.model.config
        self.max_len = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
        self.vocab_size = self.model.get_input_embeddings().num_embeddings

    def same_tokenizer(self, path: str | Path) -> bool:
        """True when the tokenizer at path has this reference's vocabulary (data
        tokenized with it are scored as they are, without decoding)."""
        from ..models.hf import load_tokenizer

        other = load_tokenizer(path)
        return other is not None and other.get_vocab() == self.tokenizer.get_vocab()

    def encode(self, texts: list[str], length: int | None = None) -> torch.Tensor:
        """Token ids [n, length] (default: the longest text's length, at most the
        model's positions minus one for the BOS); shorter rows end in PAD."""
        from .perplexity import PAD

        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        cap = self.max_len - 1 if self.max_len else None
        length = length or max(len(i) for i in ids)
        length = min(length, cap) if cap else length
        if length < 1:
            raise ValueError("HFReference.encode: every text is empty after tokenization")
        rows = [i[:length] + [PAD] * (length - len(i[:length])) for i in ids]
        return torch.tensor(rows, dtype=torch.long)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.model.parameters())

    def encoder_for(self, decode, reference_rows: torch.Tensor):
        """A function mapping rows of dataset tokens to this model's ids at one
        length: that of the longest re-tokenized row of ``reference_rows`` (the
        held-out data); longer rows are cut, shorter ones padded with PAD.
        ``decode`` maps a 1-d token tensor to text."""
        length = self.encode([decode(r) for r in reference_rows]).shape[1]
        return lambda rows: self.encode([decode(r) for r in rows], length=length)

    def token_nll(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L] NLLs (nats); 0 at PAD positions."""
        from .perplexity import PAD

        x = x.to(self.device).long()
        valid = x != PAD
        ids = torch.where(valid, x, torch.full_like(x, self.bos))
        inp = torch.cat([torch.full_like(ids[:, :1], self.bos), ids[:, :-1]], dim=1)
        logits = self.model(input_ids=inp).logits.float()
        nll = F.cross_entropy(logits.transpose(1, 2), ids, reduction="none")
        return nll * valid

    def mean_nll(self, x: torch.Tensor) -> torch.Tensor:
        from .perplexity import PAD

        valid = (x.to(self.device) != PAD).sum().clamp_min(1)
        return self.token_nll(x).sum() / valid
