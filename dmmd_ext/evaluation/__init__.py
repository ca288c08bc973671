"""Evaluation of discrete diffusion teachers and D-MMD students (method.md
section 3): the unbiased gradient moment, generative perplexity beside
per-sample unigram entropy, exact quantities on synthetic data with a known
likelihood, n-gram reverse cross-entropy and total variation with their data
floors (metrics a sharper-but-narrower sampler cannot win), a Frechet distance on classifier features for images, and the
`dmmd eval` report (JSON, markdown, plots)."""

from .exact import exact_report, true_gradient_moment, true_nll
from .frechet import (ClassifierConfig, DigitClassifier, digits_classifier, digits_frechet,
                      frechet_distance, frechet_distance_features, gaussian_fit,
                      train_digit_classifier)
from .ngram import (exact_ngram_probs, ngram_counts, ngram_floor, ngram_metrics, ngram_tv,
                    reverse_cross_entropy, smoothed_log_conditional)
from .gradient_moment import GradientMomentEstimator, batch_gradient, gradient_moment, pair_estimate
from .perplexity import (PerplexityResult, generative_perplexity, per_sample_nll, perplexity_report,
                         unigram_entropy)
from .reference_model import (ARReference, HFReference, ReferenceConfig, load_reference, save_reference,
                              train_reference)
from .stats import Estimate, RunningMean
from .suite import EvalSuite

__all__ = [
    "ARReference", "ClassifierConfig", "DigitClassifier", "Estimate", "EvalSuite",
    "GradientMomentEstimator", "HFReference", "PerplexityResult", "ReferenceConfig", "RunningMean",
    "batch_gradient", "digits_classifier", "digits_frechet", "exact_ngram_probs", "exact_report",
    "frechet_distance", "frechet_distance_features", "gaussian_fit", "generative_perplexity",
    "gradient_moment", "load_reference", "ngram_counts", "ngram_floor", "ngram_metrics", "ngram_tv",
    "pair_estimate", "per_sample_nll", "perplexity_report", "reverse_cross_entropy",
    "save_reference", "smoothed_log_conditional", "train_digit_classifier", "train_reference",
    "true_gradient_moment", "true_nll", "unigram_entropy",
]
