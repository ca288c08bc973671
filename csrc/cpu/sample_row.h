// The CPU row sampler, shared by sample_categorical (cpu/sample.cpp) and
// posterior_step (cpu/posterior.cpp): one implementation, one set of
// semantics (include/dmmd/sample.h states them).
//
// Memory contract: reads one row of logits (strided, any of fp32/bf16/fp16)
// once without top-k/top-p; with them, copies the row's finite candidates
// into a per-thread scratch (RowScratch, O(V) floats/ints/doubles, reused
// across rows) and runs the radix selects on that scratch, compacting the
// classes still in play after each 8-bit pass. Never allocates V-sized noise
// or probabilities per call beyond that scratch.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "dmmd/sample.h"

namespace dmmd {

struct RowScratch {
  std::vector<float> x;        // scaled logits of the finite candidates
  std::vector<int64_t> idx;    // their class ids, ascending
  std::vector<uint32_t> key;   // radix work keys
  std::vector<double> mass;    // radix work masses (top-p)
  void reserve(int64_t n) {
    if (static_cast<int64_t>(x.size()) >= n) return;
    x.resize(n);
    idx.resize(n);
    key.resize(n);
    mass.resize(n);
  }
};

// A Gumbel draw never exceeds 45.06 (noise.h); a class whose x + 46 cannot
// beat the current finite best is skipped without drawing its noise. This
// prunes work only: the result is the same as scoring every class.
constexpr float kGumbelBound = 46.0f;

DMMD_HD bool may_win(const Best& b, float x) {
  return b.tier < 0 || (b.tier == 0 && !(dadd(x, kGumbelBound) <= b.score)) ||
         x == u2f(0x7f800000u);
}

inline bool needs_select(const SampleParams& p, int64_t V) {
  return (p.top_k > 0 && p.top_k < V) || p.top_p < 1.0;
}

// Scores the classes of a list (ascending ids, scaled logits) whose key is
// >= thr; one Philox call per vocabulary pair.
inline Best score_list(const float* x, const int64_t* idx, int64_t n, uint32_t thr,
                       const SampleParams& p, uint64_t row, uint64_t half) {
  Best b = best_none();
  int64_t cached_pair = -1;
  U32x4 w{0, 0, 0, 0};
  for (int64_t i = 0; i < n; ++i) {
    if (ord_key(x[i]) < thr || !may_win(b, x[i])) continue;
    const int64_t v = idx[i];
    if (v / 2 != cached_pair) {
      cached_pair = v / 2;
      w = gumbel_words(p, row, half, static_cast<uint64_t>(cached_pair));
    }
    offer(b, x[i], gumbel_of(w, v & 1), v);
  }
  return b;
}

// k-th largest key (k >= 1, k <= n) of key[0, n); destroys key[].
inline uint32_t radix_select_count(uint32_t* key, int64_t n, int64_t k) {
  uint32_t prefix = 0;
  for (int pass = 0; pass < kRadixPasses; ++pass) {
    int64_t count[kRadixBuckets] = {0};
    for (int64_t i = 0; i < n; ++i) ++count[radix_digit(key[i], pass)];
    const int b = pick_bucket_count(count, k);
    prefix |= static_cast<uint32_t>(b) << radix_shift(pass);
    int64_t j = 0;
    for (int64_t i = 0; i < n; ++i)
      if (radix_digit(key[i], pass) == static_cast<uint32_t>(b)) key[j++] = key[i];
    n = j;
  }
  return prefix;
}

// Largest key t with mass{key >= t} >= top_p * total; destroys key[], mass[].
inline uint32_t radix_select_mass(uint32_t* key, double* mass, int64_t n, double top_p) {
  uint32_t prefix = 0;
  double above = 0.0, target = 0.0;
  for (int pass = 0; pass < kRadixPasses; ++pass) {
    double hist[kRadixBuckets] = {0.0};
    for (int64_t i = 0; i < n; ++i) hist[radix_digit(key[i], pass)] += mass[i];
    if (pass == 0) {
      double total = 0.0;
      for (int b = 0; b < kRadixBuckets; ++b) total += hist[b];
      target = top_p * total;
    }
    const int b = pick_bucket_mass(hist, above, target);
    prefix |= static_cast<uint32_t>(b) << radix_shift(pass);
    int64_t j = 0;
    for (int64_t i = 0; i < n; ++i)
      if (radix_digit(key[i], pass) == static_cast<uint32_t>(b)) {
        key[j] = key[i];
        mass[j++] = mass[i];
      }
    n = j;
  }
  return prefix;
}

// One pass, no selection: Gumbel-max over all candidates.
template <typename T>
int64_t sample_row_plain(const T* row, int64_t V, int64_t stride, const SampleParams& p,
                         uint64_t r) {
  const uint64_t half = pairs_per_row(V);
  Best b = best_none();
  for (int64_t v0 = 0; v0 < V; v0 += 2) {
    float x[2];
    bool use[2] = {false, false};
    for (int j = 0; j < 2 && v0 + j < V; ++j) {
      if (v0 + j == p.exclude) continue;
      const float l = static_cast<float>(row[(v0 + j) * stride]);
      if (std::isnan(l)) return -1;
      x[j] = scaled_logit(l, p.temperature);
      use[j] = x[j] > -INFINITY && may_win(b, x[j]);
    }
    if (!use[0] && !use[1]) continue;
    const U32x4 w = gumbel_words(p, r, half, static_cast<uint64_t>(v0 / 2));
    for (int j = 0; j < 2; ++j)
      if (use[j]) offer(b, x[j], gumbel_of(w, j == 1), v0 + j);
  }
  return b.index;
}

// Threshold key for top-k then top-p over the list in s (n finite candidates,
// none +inf).
inline uint32_t select_threshold(RowScratch& s, int64_t n, float xmax, const SampleParams& p) {
  uint32_t thr = 0;
  if (p.top_k > 0 && p.top_k < n) {
    for (int64_t i = 0; i < n; ++i) s.key[i] = ord_key(s.x[i]);
    thr = radix_select_count(s.key.data(), n, p.top_k);
  }
  if (p.top_p < 1.0) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t k = ord_key(s.x[i]);
      if (k < thr) continue;
      s.key[m] = k;
      s.mass[m++] = std::exp(static_cast<double>(s.x[i]) - static_cast<double>(xmax));
    }
    thr = radix_select_mass(s.key.data(), s.mass.data(), m, p.top_p);
  }
  return thr;
}

// The row sampler: returns the class id, or -1 for an invalid row.
template <typename T>
int64_t sample_row_cpu(const T* row, int64_t V, int64_t stride, const SampleParams& p,
                       uint64_t r, RowScratch& s) {
  if (!needs_select(p, V)) return sample_row_plain(row, V, stride, p, r);
  s.reserve(V);
  int64_t n = 0, n_inf = 0;
  float xmax = -INFINITY;
  for (int64_t v = 0; v < V; ++v) {
    if (v == p.exclude) continue;
    const float l = static_cast<float>(row[v * stride]);
    if (std::isnan(l)) return -1;
    const float x = scaled_logit(l, p.temperature);
    if (!(x > -INFINITY)) continue;
    s.x[n] = x;
    s.idx[n++] = v;
    n_inf += x == INFINITY;
    xmax = x > xmax ? x : xmax;
  }
  if (n == 0) return -1;
  const uint32_t thr = n_inf > 0 ? ord_key(INFINITY) : select_threshold(s, n, xmax, p);
  return score_list(s.x.data(), s.idx.data(), n, thr, p, r, pairs_per_row(V)).index;
}

}  // namespace dmmd
