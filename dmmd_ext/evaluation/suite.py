"""EvalSuite: every metric that applies to one dataset, measured on a set of
samples under one protocol, and on real data for the baseline rows.

Protocol. The validation rows are split by a seeded random partition into two
halves: B (the data side of every gradient moment) and A (real rows that
stand in for samples in the held-out baseline row). Model samples and A are
therefore scored identically, and the baseline's gradient moment compares two
disjoint real sets (train rows would not do: the reference has fitted them;
train_rows() gives them as a second, "memorizing sampler" baseline).

Metrics (absent when their ingredient is absent):
- reference model (ARReference / HFReference): gen_ppl, nll, gradient_moment;
- always: unigram_entropy;
- a true model (dataset.hmm): true_nll, true_gradient_moment (data term exact 0);
- a digits classifier: frechet (to the training split; floor = A vs train);
- n-gram reverse cross-entropy and total variation (ngram.py) at ngram_orders:
  against the exact statistics of the true model when there is one, else against
  half B's empirical ones (orders whose K^n dense table is too large are left
  out). The baseline row (half A, the same size as the default sample count) is
  then their data floor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from .exact import true_gradient_moment, true_nll
from .frechet import classifier_features, frechet_distance, gaussian_fit
from .gradient_moment import gradient_moment
from .ngram import MAX_ENTRIES, has_exact_ngrams, ngram_metrics
from .perplexity import per_sample_nll, summarize, unigram_entropy
from .stats import estimate

__all__ = ["EvalSuite"]


@dataclass
class EvalSuite:
    train: torch.Tensor
    val: torch.Tensor
    reference: object | None = None
    true_model: object | None = None
    classifier: object | None = None
    half_batch: int = 32
    batch_size: int = 64
    device: str = "cpu"
    # maps rows of dataset tokens to the reference's own tokens (e.g. decode +
    # re-tokenize for a Hugging Face model); None: the reference reads them as they are
    encode: Callable[[torch.Tensor], torch.Tensor] | None = None
    split_seed: int = 0
    # K for the held-out n-gram metrics (None: none, unless the true model gives exact ones)
    vocab_size: int | None = None
    ngram_orders: tuple[int, ...] = (2, 3)
    ngram_smoothing: float = 1.0
    ngram_boot: int = 20
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def heldout(self) -> torch.Tensor:
        """Half A of the validation split (the baseline's stand-in samples)."""
        return self._halves()[0]

    @property
    def gm_data(self) -> torch.Tensor:
        """Half B: the data side of every gradient moment."""
        return self._halves()[1]

    def _halves(self) -> tuple[torch.Tensor, torch.Tensor]:
        # A random (seeded) partition, not first/second half: a validation split
        # cut from the end of a corpus drifts along its length, and contiguous
        # halves would then differ in distribution (a nonzero real-vs-real GM).
        if "halves" not in self._cache:
            n = self.val.shape[0]
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
            self._cache["halves"] = (self.val[perm[: n // 2]], self.val[perm[n // 2:]])
        return self._cache["halves"]

    def measure(self, samples: torch.Tensor, seed: int = 0) -> dict:
        """All applicable metrics of ``samples`` [n, L] as a flat dict of
        {name: {"mean", "stderr", "n"}} or {name: value}."""
        if samples.shape[1] != self.val.shape[1]:
            raise ValueError(f"EvalSuite.measure: samples have length {samples.shape[1]}, the data "
                             f"{self.val.shape[1]}")
        samples = samples.cpu()
        entropy = unigram_entropy(samples)
        out: dict = {"unigram_entropy": estimate(entropy).as_dict()}
        gen = torch.Generator().manual_seed(seed)
        if self.reference is not None:
            ref = self.reference
            rows, data = self._for_reference(samples), self._gm_data_for_reference()
            nll = per_sample_nll(ref.token_nll, rows, batch_size=self.batch_size, device=self.device)
            res = summarize(nll, entropy)
            out["gen_ppl"] = res.perplexity
            out["nll"] = res.nll.as_dict()
            out["gradient_moment"] = gradient_moment(
                ref.mean_nll, list(ref.parameters()), rows, data, half_batch=self.half_batch,
                n_pairs=self._pairs(rows), generator=gen, device=self.device).as_dict()
        if self.true_model is not None:
            out["true_nll"] = estimate(true_nll(self.true_model, samples)).as_dict()
            out["true_gradient_moment"] = true_gradient_moment(
                self.true_model, samples, None, half_batch=self.half_batch, generator=gen).as_dict()
        out.update(self._ngram(samples, seed))
        if self.classifier is not None:
            out["frechet"] = frechet_distance(*gaussian_fit(classifier_features(self.classifier, samples)),
                                              *self._train_fit())
        return out

    def baseline(self, seed: int = 0) -> dict:
        """The same metrics on held-out real rows (half A)."""
        return self.measure(self.heldout, seed=seed)

    def train_rows(self, seed: int = 0) -> torch.Tensor:
        """As many random training rows as half A: what a sampler that
        reproduces the training set exactly would score (the reference has
        fitted them, and the validation split may differ from training)."""
        g = torch.Generator().manual_seed(seed)
        n = min(self.heldout.shape[0], self.train.shape[0])
        return self.train[torch.randperm(self.train.shape[0], generator=g)[:n]]

    @property
    def ngram_reference(self) -> str | None:
        """What the n-gram metrics compare with: 'exact' (an HMM true model),
        'held-out' (half B; needs vocab_size) or None (off)."""
        if self.true_model is not None and has_exact_ngrams(self.true_model):
            return "exact"
        return "held-out" if self.vocab_size else None

    def ngram_orders_used(self) -> tuple[int, ...]:
        """ngram_orders without those whose dense K^n table would be too large."""
        if self.ngram_reference is None:
            return ()
        K = self._ngram_vocab()
        # a bad order is kept so that ngram_metrics names it in its error
        return tuple(n for n in self.ngram_orders
                     if not isinstance(n, int) or K ** n <= MAX_ENTRIES)

    def _ngram_vocab(self) -> int:
        return self.true_model.vocab_size if self.ngram_reference == "exact" else self.vocab_size

    def _ngram(self, samples: torch.Tensor, seed: int) -> dict:
        orders = self.ngram_orders_used()
        if not orders:
            return {}
        ref = self.true_model if self.ngram_reference == "exact" else self.gm_data
        K = self._ngram_vocab()
        return ngram_metrics(samples, ref, orders, vocab_size=K, smoothing=self.ngram_smoothing,
                             n_boot=self.ngram_boot, seed=seed)

    def _for_reference(self, rows: torch.Tensor) -> torch.Tensor:
        return rows if self.encode is None else self.encode(rows)

    def _gm_data_for_reference(self) -> torch.Tensor:
        if "gm_data" not in self._cache:
            self._cache["gm_data"] = self._for_reference(self.gm_data)
        return self._cache["gm_data"]

    def _pairs(self, samples: torch.Tensor) -> int:
        n = min(samples.shape[0], self.gm_data.shape[0]) // (2 * self.half_batch)
        if n < 2:
            raise ValueError(f"EvalSuite: the gradient moment needs >= 2 pairs of {2 * self.half_batch} rows; "
                             f"got {samples.shape[0]} samples and {self.gm_data.shape[0]} data rows "
                             f"(lower half_batch={self.half_batch} or use more rows)")
        return n

    def _train_fit(self):
        if "train_fit" not in self._cache:
            self._cache["train_fit"] = gaussian_fit(classifier_features(self.classifier, self.train))
        return self._cache["train_fit"]
