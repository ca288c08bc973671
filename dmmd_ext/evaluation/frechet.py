"""Frechet distance between Gaussian fits of features (the FID formula), and
the small classifier on `digits` whose penultimate layer supplies the features.

    FD = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)

The trace term uses symmetric eigen-decompositions only: S1^1/2 S2 S1^1/2 is
symmetric PSD, so tr of its square root is the sum of the square roots of its
(clipped non-negative) eigenvalues. This avoids the complex round-off of a
general sqrtm and needs nothing beyond numpy.

FD from finite sets is biased upward (it shrinks as the sets grow), so a value
means something only beside the data-vs-data floor measured with the same set
sizes: train features vs held-out features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["gaussian_fit", "sqrtm_psd", "frechet_distance", "frechet_distance_features",
           "DigitClassifier", "ClassifierConfig", "train_digit_classifier", "digits_frechet"]


def _as_features(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"frechet: `{name}` must be [n >= 2, dim] features, got shape {x.shape}")
    return x


def gaussian_fit(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, n - 1) covariance of [n, dim] features, float64."""
    f = _as_features(features, "features")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric PSD matrix; tiny negative eigenvalues from
    round-off are clipped to zero."""
    a = np.asarray(a, dtype=np.float64)
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared 2-Wasserstein distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    for name, m in (("sigma1", s1), ("sigma2", s2)):
        if m.shape != (d, d):
            raise ValueError(f"frechet_distance: `{name}` must be [{d}, {d}] to match the means, got {m.shape}")
    if mu2.shape != (d,):
        raise ValueError(f"frechet_distance: `mu2` must have shape ({d},), got {mu2.shape}")
    r1 = sqrtm_psd(s1)
    middle = r1 @ s2 @ r1
    w = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_sqrt = float(np.sqrt(np.clip(w, 0.0, None)).sum())
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)
    return max(value, 0.0)  # round-off can leave -1e-12 for identical inputs


def frechet_distance_features(features1, features2) -> float:
    """FD between Gaussian fits of two [n, dim] feature sets."""
    return frechet_distance(*gaussian_fit(features1), *gaussian_fit(features2))


# --- the feature extractor for `digits` --------------------------------------------


class DigitClassifier(nn.Module):
    """MLP on the 64 grey-level tokens of an 8x8 digit, scaled to [0, 1].
    ``features`` returns the penultimate activations used for the FD."""

    def __init__(self, levels: int = 17, pixels: int = 64, hidden: int = 128,
                 feature_dim: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.levels = levels
        self.body = nn.Sequential(nn.Linear(pixels, hidden), nn.ReLU(),
                                  nn.Linear(hidden, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, classes)

    def _inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2:
            raise ValueError(f"DigitClassifier: tokens must be [batch, pixels], got {tuple(tokens.shape)}")
        return tokens.to(self.head.weight.dtype) / (self.levels - 1)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.body(self._inputs(tokens))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(tokens))


@dataclass
class ClassifierConfig:
    hidden: int = 128
    feature_dim: int = 64
    steps: int = 400
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    seed: int = 0


def train_digit_classifier(tokens: torch.Tensor, labels: torch.Tensor, levels: int = 17,
                           config: ClassifierConfig | None = None) -> DigitClassifier:
    """Trains the classifier with Adam on minibatches (a few seconds on a CPU);
    returns it in eval mode. Deterministic for a given seed."""
    config = config or ClassifierConfig()
    if tokens.shape[0] != labels.shape[0]:
        raise ValueError(f"train_digit_classifier: tokens has {tokens.shape[0]} rows but labels "
                         f"has {labels.shape[0]}")
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)  # parameter init
    model = DigitClassifier(levels, tokens.shape[1], config.hidden, config.feature_dim,
                            int(labels.max()) + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    tokens, labels = tokens.cpu(), labels.cpu().long()
    for _ in range(config.steps):
        idx = torch.randint(0, tokens.shape[0], (config.batch_size,), generator=gen)
        loss = nn.functional.cross_entropy(model(tokens[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def _features(model: DigitClassifier, tokens: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    dev = model.head.weight.device
    parts = [model.features(tokens[i:i + batch_size].to(dev)).double().cpu()
             for i in range(0, tokens.shape[0], batch_size)]
    return torch.cat(parts).numpy()


def digits_frechet(model: DigitClassifier, samples: torch.Tensor, train: torch.Tensor,
                   heldout: torch.Tensor) -> dict:
    """FD of ``samples`` to the training set, beside the floor FD(held-out,
    train). Compare only at equal set sizes: use as many samples as held-out rows."""
    ref = gaussian_fit(_features(model, train))
    fd = frechet_distance(*gaussian_fit(_features(model, samples)), *ref)
    floor = frechet_distance(*gaussian_fit(_features(model, heldout)), *ref)
    return {"frechet": fd, "frechet_floor": floor, "n_samples": int(samples.shape[0]),
            "n_heldout": int(heldout.shape[0]), "n_train": int(train.shape[0])}
