"""N-gram statistics that a sharper-but-narrower sampler cannot win.

Excess NLL rewards mode seeking (a sampler that emits only likely sequences scores
below the entropy) and, on some data, so does the gradient moment. These metrics
compare the samples' n-gram statistics with the data's in both directions:

- windows: the n-grams of a row x [L] are (x_i, ..., x_{i+n-1}), i = 0..L-n; the
  n-gram distribution of a process is that of one window at a position i uniform
  over the L-n+1 positions (for a stationary HMM the same at every i);
- exact_ngram_probs(hmm, n): that distribution for the true HMM, exactly, by the
  forward recursion over hidden states started from the window-averaged state
  marginal (the recursion is linear in its start, so averaging the start averages
  the windows); a dense float64 tensor [K] * n, refused when K^n * S is too large;
- reverse cross-entropy (bits/token): fit a smoothed n-gram model q to the samples,
  then H(P, q) = -sum_g P(g) log2 q(g_n | g_1..g_{n-1}), P the exact distribution
  (HMM) or a held-out data sample's empirical one. A collapsed sampler leaves true
  n-grams unseen; q gives them only smoothing mass, so the reverse CE rises. A
  sampler that covers the data but adds errors also rises (its q is off);
- n-gram total variation: 0.5 * sum_g |P_samples(g) - P(g)|.

Smoothing (smoothed_log_conditional): interpolation with one concentration beta
(`smoothing`, default 1), q_0 = uniform over K and, for k = 1..n,

    q_k(x | h) = (c(h, x) + beta * q_{k-1}(x | h')) / (c(h) + beta),

h' = h without its first token, c the counts of the last k tokens of the sample's
n-gram windows. It is the posterior mean of a hierarchical Dirichlet prior (PPM-like,
no discounting): every q_k > 0, and beta sets how fast the counts take over.

Both metrics are biased at finite sample size (smoothing; an empirical distribution is
never at TV 0), so compare with the **data floor**: the same metric of a data sample
of the same size (ngram_floor: from the true HMM, or a second held-out sample).
Standard errors: bootstrap over rows (the samples' rows, and the held-out reference's
rows when the reference is data; the exact reference has none), n_boot replicates;
n_boot = 0 gives none (stderr nan).
"""

from __future__ import annotations

import math

import torch

__all__ = ["exact_ngram_probs", "has_exact_ngrams", "ngram_counts", "smoothed_log_conditional",
           "reverse_cross_entropy", "ngram_tv", "ngram_metrics", "ngram_floor", "MAX_ENTRIES"]

MAX_ENTRIES = 2 ** 24  # dense tensors of K^n (times S) float64 entries: 128 MiB


def has_exact_ngrams(model) -> bool:
    """Whether exact_ngram_probs can read the model: an HMM-like object with
    log_probs() -> (init, trans, emit), n_states, vocab_size and seq_len."""
    return all(hasattr(model, a) for a in ("log_probs", "n_states", "vocab_size", "seq_len"))


def _check_order(n, length: int, vocab_size: int, max_entries: int, what: str,
                 factor: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an integer n-gram order >= 1, got {n!r}")
    if n > length:
        raise ValueError(f"n: order {n} exceeds the sequence length {length} of {what}")
    if vocab_size ** n * factor > max_entries:
        raise ValueError(f"n: {what} needs K^n{' * S' if factor > 1 else ''} = "
                         f"{vocab_size ** n * factor} dense entries (K={vocab_size}, n={n}), "
                         f"more than max_entries={max_entries}; lower n")
    return n


def _check_tokens(tokens, vocab_size: int, name: str) -> torch.Tensor:
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
        raise ValueError(f"{name}: expected int tokens [rows, L], got "
                         f"{type(tokens).__name__} of shape {tuple(getattr(tokens, 'shape', ()))}")
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise ValueError(f"{name}: expected integer tokens, got dtype {tokens.dtype}")
    if tokens.shape[0] < 1 or tokens.shape[1] < 1:
        raise ValueError(f"{name}: empty (shape {tuple(tokens.shape)}); need >= 1 row of "
                         ">= 1 token")
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"{name}: tokens must lie in [0, {vocab_size}), got values in "
                         f"[{lo}, {hi}]")
    return tokens.long().cpu()


@torch.no_grad()
def exact_ngram_probs(hmm, n: int, max_entries: int = MAX_ENTRIES) -> torch.Tensor:
    """The true process's n-gram distribution (module docstring), float64 [K] * n."""
    K, S, L = hmm.vocab_size, hmm.n_states, hmm.seq_len
    _check_order(n, L, K, max_entries, "the exact n-gram distribution", factor=S)
    log_pi, log_a, log_b = hmm.log_probs()
    pi, a, b = log_pi.detach().exp(), log_a.detach().exp(), log_b.detach().exp()
    start, state = torch.zeros_like(pi), pi
    for _ in range(L - n + 1):
        start, state = start + state, state @ a
    start = start / (L - n + 1)
    f = (start[:, None] * b).t()  # [K, S]: P(x_1, state at x_1)
    for _ in range(n - 1):
        f = ((f @ a)[:, None, :] * b.t()[None]).reshape(-1, S)  # [K^j * K, S]
    return f.sum(-1).reshape([K] * n)


def _codes(tokens: torch.Tensor, n: int, vocab_size: int) -> torch.Tensor:
    """[rows, L - n + 1] int64 index of each window in the flattened [K] * n tensor."""
    w = tokens.shape[1] - n + 1
    code = torch.zeros(tokens.shape[0], w, dtype=torch.long)
    for j in range(n):
        code = code * vocab_size + tokens[:, j:j + w]
    return code


def _counts_from_codes(codes: torch.Tensor, n: int, vocab_size: int,
                       row_weights: torch.Tensor | None = None) -> torch.Tensor:
    weights = None
    if row_weights is not None:  # bootstrap: a row drawn m times counts m times
        weights = row_weights.double()[:, None].expand_as(codes).reshape(-1)
    c = torch.bincount(codes.reshape(-1), weights=weights, minlength=vocab_size ** n)
    return c.double().reshape([vocab_size] * n)


def ngram_counts(tokens: torch.Tensor, n: int, vocab_size: int,
                 max_entries: int = MAX_ENTRIES) -> torch.Tensor:
    """Counts of every n-gram window of the rows of tokens [rows, L], float64 [K] * n."""
    tokens = _check_tokens(tokens, vocab_size, "tokens")
    _check_order(n, tokens.shape[1], vocab_size, max_entries, "tokens")
    return _counts_from_codes(_codes(tokens, n, vocab_size), n, vocab_size)


def smoothed_log_conditional(counts: torch.Tensor, smoothing: float = 1.0) -> torch.Tensor:
    """log q(x_n | x_1..x_{n-1}) [K] * n of the interpolated model of the module
    docstring fitted to n-gram counts [K] * n (natural log)."""
    if not (isinstance(smoothing, (int, float)) and math.isfinite(smoothing) and smoothing > 0):
        raise ValueError(f"smoothing: expected a finite number > 0 (the concentration beta; "
                         f"0 would give unseen n-grams probability 0), got {smoothing!r}")
    n, K = counts.dim(), counts.shape[0]
    q = torch.full((K,), 1.0 / K, dtype=torch.float64)
    for k in range(1, n + 1):
        c_k = counts.sum(dim=tuple(range(n - k))) if k < n else counts  # last k tokens
        q = (c_k + smoothing * q.unsqueeze(0)) / (c_k.sum(-1, keepdim=True) + smoothing)
    return q.log()


def reverse_cross_entropy(log_q: torch.Tensor, probs: torch.Tensor) -> float:
    """-sum_g P(g) log2 q(g_n | g_<n), bits/token (P zero where it is zero)."""
    return float(-(probs * log_q).sum() / math.log(2))


def ngram_tv(p: torch.Tensor, probs: torch.Tensor) -> float:
    """Total variation 0.5 * sum |p - P| between two n-gram distributions."""
    return float(0.5 * (p - probs).abs().sum())


def _both(sample_counts: torch.Tensor, ref_probs: torch.Tensor, smoothing: float) -> tuple:
    p = sample_counts / sample_counts.sum()
    return (reverse_cross_entropy(smoothed_log_conditional(sample_counts, smoothing), ref_probs),
            ngram_tv(p, ref_probs))


def _bootstrap(codes, ref, n, K, smoothing, n_boot, seed) -> tuple[list, list]:
    """Replicates of (reverse CE, TV) with the sample rows (and the reference rows
    when the reference is data: ref = its codes) resampled with replacement."""
    g = torch.Generator().manual_seed(seed)
    rce, tv = [], []
    for _ in range(n_boot):
        w = torch.bincount(torch.randint(0, codes.shape[0], (codes.shape[0],), generator=g),
                           minlength=codes.shape[0])
        probs = ref
        if ref.dtype == torch.long:  # data reference: its window codes
            wr = torch.bincount(torch.randint(0, ref.shape[0], (ref.shape[0],), generator=g),
                                minlength=ref.shape[0])
            c = _counts_from_codes(ref, n, K, wr)
            probs = c / c.sum()
        r, t = _both(_counts_from_codes(codes, n, K, w), probs, smoothing)
        rce.append(r)
        tv.append(t)
    return rce, tv


def _estimate(value: float, reps: list, rows: int, unit: str) -> dict:
    se = float(torch.tensor(reps, dtype=torch.float64).std()) if len(reps) >= 2 else math.nan
    return {"mean": value, "stderr": se, "n": rows, "n_boot": len(reps), "unit": unit}


def ngram_metrics(samples: torch.Tensor, reference, orders=(2, 3), *, vocab_size: int | None = None,
                  smoothing: float = 1.0, n_boot: int = 20, seed: int = 0,
                  max_entries: int = MAX_ENTRIES) -> dict:
    """Reverse cross-entropy and n-gram TV of samples [rows, L] at each order.

    reference: the true HMM (exact statistics; vocab_size is its K) or held-out data
    tokens [rows', L'] (empirical statistics; vocab_size required). Returns
    {"reverse_ce_<n>": {mean, stderr, n, n_boot, unit}, "ngram_tv_<n>": {...}}."""
    exact = has_exact_ngrams(reference)
    if exact:
        if vocab_size is not None and vocab_size != reference.vocab_size:
            raise ValueError(f"vocab_size: {vocab_size} disagrees with the HMM's K="
                             f"{reference.vocab_size}")
        vocab_size = reference.vocab_size
    elif vocab_size is None:
        raise ValueError("vocab_size: required when the reference is data tokens")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise ValueError(f"n_boot: expected an integer >= 0, got {n_boot!r}")
    if not isinstance(orders, (tuple, list)):
        orders = (orders,)  # one order; _check_order judges it
    samples = _check_tokens(samples, vocab_size, "samples")
    ref_tokens = None if exact else _check_tokens(reference, vocab_size, "reference")
    out = {}
    for n in orders:
        _check_order(n, samples.shape[1], vocab_size, max_entries, "samples")
        if exact:
            probs = exact_ngram_probs(reference, n, max_entries)
            ref = probs
        else:
            _check_order(n, ref_tokens.shape[1], vocab_size, max_entries, "reference")
            ref = _codes(ref_tokens, n, vocab_size)
            c = _counts_from_codes(ref, n, vocab_size)
            probs = c / c.sum()
        codes = _codes(samples, n, vocab_size)
        rce, tv = _both(_counts_from_codes(codes, n, vocab_size), probs, smoothing)
        rce_reps, tv_reps = _bootstrap(codes, ref, n, vocab_size, smoothing, n_boot, seed + n)
        out[f"reverse_ce_{n}"] = _estimate(rce, rce_reps, samples.shape[0], "bits/token")
        out[f"ngram_tv_{n}"] = _estimate(tv, tv_reps, samples.shape[0], "total variation")
    return out


def ngram_floor(reference, n_samples: int, orders=(2, 3), *,
                floor_tokens: torch.Tensor | None = None, vocab_size: int | None = None,
                seed: int = 0, **kw) -> dict:
    """ngram_metrics of a data sample of n_samples rows: drawn from the true HMM
    (seeded) when reference is one, else the first n_samples rows of floor_tokens, a
    second held-out sample disjoint from the reference rows."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples: expected an integer >= 1, got {n_samples!r}")
    if has_exact_ngrams(reference):
        data = reference.sample(n_samples, torch.Generator().manual_seed(seed))
    else:
        if floor_tokens is None:
            raise ValueError("floor_tokens: required when the reference is data (a second held-out "
                             "sample, disjoint from the reference rows)")
        if floor_tokens.shape[0] < n_samples:
            raise ValueError(f"floor_tokens: {floor_tokens.shape[0]} rows, fewer than "
                             f"n_samples={n_samples}")
        data = floor_tokens[:n_samples]
    return ngram_metrics(data, reference, orders, vocab_size=vocab_size, seed=seed, **kw)
