// The CPU row sampler, shared by sample_categorical (cpu/sample.cpp) and
// posterior_step (cpu/posterior.cpp): one implementation, one set of
// semantics (include/dmmd/sample.h states them). The loops that vectorize
// and the batched Philox call live in cpu/sample_simd.cpp (cpu/philox_simd.h
// holds the SIMD Philox itself).
//
// Every row is first scanned for its largest candidate logit lmax (row_max,
// vectorized), the centre of the centred logits x = (l - lmax) / T (sample.h).
//
// Without top-k/top-p (sample_row_plain): one pass over the row in chunks of
// 64 classes: centred logits (vectorized), a may-win gate for the chunk, the
// Philox words of its 32 pairs in one batch (cpu/philox_simd.h, gathered),
// then offer_bits only for the classes whose leading-zero noise bound can
// still beat the best (a table lookup; usually a handful per row).
//
// With top-k/top-p (sample_row_select), the row is read once into a
// per-thread scratch of order keys (RowScratch::vkey, one uint32 per class,
// ord_key of the centred logit; a vectorized loop), plus the maximum key of
// each block of B classes (B <= 64, chosen so there are >= 4k blocks). Top-k
// then needs no radix pass over the row: the k-th largest block maximum is a
// lower bound on the k-th largest key (those k maxima are k distinct
// classes), so only the blocks whose maximum reaches it can hold the top k;
// their keys >= the bound are gathered (typically a little more than k) and
// an exact selection on that short list (kth_largest: radix select over the
// list's own [min, max] range) gives the threshold. Top-p gathers the kept
// keys, computes their fixed-point masses in one vectorized loop (topp_masses:
// sample.h's topp_mass, integers, so the order of the sums cannot matter and
// the threshold is bitwise the CUDA sampler's) and runs the 8-bit radix mass
// select on the list. The final Gumbel-max gathers the kept
// classes (blocks whose maximum reaches the threshold, branch-free inside),
// draws their pairs' Philox words in batches and offers them in ascending
// class order.
//
// Every shortcut prunes work only (bounds that are never below the truth,
// gates judged against an earlier, never better, running best): each row's
// result is bitwise that of scoring every kept class one by one, i.e. the
// same as before these shortcuts and as the CUDA sampler (cuda/sample_row.cuh).
//
// Memory contract: reads one row of logits (strided, any of fp32/bf16/fp16)
// once. Scratch (select only): O(V) uint32 keys, block maxima and list keys,
// O(V) uint64 top-p masses, allocated once per thread and reused
// across rows; the plain path uses a few KB of stack. Never allocates V-sized
// noise or probabilities.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>  // _mm_getcsr
#endif

#include "dmmd/sample.h"

namespace dmmd {

struct RowScratch {
  std::vector<uint32_t> vkey;  // ord_key of every class of the row (excluded: 0)
  std::vector<uint32_t> bmax;  // max of vkey per block of classes
  std::vector<uint32_t> key;   // list work keys (selection, top-p)
  std::vector<uint64_t> mass;  // list masses (top-p, fixed point)
  void reserve(int64_t n) {
    if (static_cast<int64_t>(vkey.size()) >= n) return;
    vkey.resize(n);
    bmax.resize(n);
    key.resize(n);
    mass.resize(n);
  }
};

inline bool needs_select(const SampleParams& p, int64_t V) {
  return (p.top_k > 0 && p.top_k < V) || p.top_p < 1.0;
}

// ord_key (sample.h) written branch-free so that the key loop vectorizes.
constexpr uint32_t kKeyNegInf = 0x007fffffu;  // ord_key(-inf)
constexpr uint32_t kKeyPosInf = 0xff800000u;  // ord_key(+inf)
__attribute__((always_inline)) inline uint32_t ord_key_bits(uint32_t u) {
  u = (u == 0x80000000u) ? 0u : u;  // -0.0 -> +0.0, as ord_key does
  return u ^ (static_cast<uint32_t>(static_cast<int32_t>(u) >> 31) | 0x80000000u);
}

struct KeyStats {
  int64_t n_fin = 0;  // candidates with x > -inf (NaN counted or not: the row is invalid then)
  int64_t n_inf = 0;  // candidates with x == +inf
  bool nan = false;   // some class (excluded one included) is NaN
};

// centred_logit (sample.h) for a finite lmax, written so that the key loops
// vectorize. kMul = false when 1 / T == 1: then the float64 difference rounded
// to float32 is the float32 difference bit for bit (sample.h), so the loop
// stays in float32, twice the lanes.
template <bool kMul>
__attribute__((always_inline)) inline float centred_finite(float l, float lmax, double inv_t) {
  if (!kMul) return l - lmax;
  return static_cast<float>((static_cast<double>(l) - static_cast<double>(lmax)) * inv_t);
}

// key[v] = ord_key(centred_logit(l_v, lmax, 1 / T)) for every class; counts
// finite and +inf keys. lmax finite; kMul as in centred_finite.
template <bool kMul, typename Load>
__attribute__((always_inline)) inline KeyStats row_keys_loop(Load load, int64_t V, float lmax,
                                                             double inv_t, uint32_t* key) {
  KeyStats st;
  constexpr int64_t kChunk = int64_t{1} << 30;  // 32-bit counters cannot wrap
  for (int64_t c0 = 0; c0 < V; c0 += kChunk) {
    const int64_t c1 = std::min(V, c0 + kChunk);
    uint32_t fin = 0, inf = 0, nan = 0;
    for (int64_t v = c0; v < c1; ++v) {
      const float l = load(v);
      const float x = centred_finite<kMul>(l, lmax, inv_t);
      const uint32_t k = ord_key_bits(f2u(x));
      key[v] = k;
      fin += k > kKeyNegInf;
      inf += k == kKeyPosInf;
      nan |= x != x;
    }
    st.n_fin += fin;
    st.n_inf += inf;
    st.nan = st.nan || nan != 0;
  }
  return st;
}

// Contiguous rows (cpu/sample_simd.cpp, cloned for AVX2 on x86-64).
KeyStats row_keys_f32(const float* row, int64_t V, float lmax, double inv_t, uint32_t* key);
KeyStats row_keys_bf16(const c10::BFloat16* row, int64_t V, float lmax, double inv_t, uint32_t* key);
KeyStats row_keys_f16(const c10::Half* row, int64_t V, float lmax, double inv_t, uint32_t* key);
// The largest of row[0, n) (contiguous), NaN ignored; -inf for none.
float range_max_f32(const float* row, int64_t n);
float range_max_bf16(const c10::BFloat16* row, int64_t n);
float range_max_f16(const c10::Half* row, int64_t n);
// bmax[i] = max of key over classes [i B, (i + 1) B).
void block_max(const uint32_t* key, int64_t V, int64_t B, uint32_t* bmax);
// mass[i] = topp_mass(key_float(key[i]), xmax, scale) for i < n.
void topp_masses(const uint32_t* key, int64_t n, float xmax, double scale, uint64_t* mass);

// lo[j], hi[j] = lo64 / hi64 of the Gumbel Philox words (sub-stream 0) of
// element el[j], j < n: gumbel_words() for a batch (cpu/sample_simd.cpp).
void gumbel_words_batch(const SampleParams& p, const uint64_t* el, int64_t n, uint64_t* lo,
                        uint64_t* hi);

inline KeyStats row_keys_contig(const float* row, int64_t V, float lmax, double inv_t,
                                uint32_t* key) {
  return row_keys_f32(row, V, lmax, inv_t, key);
}
inline KeyStats row_keys_contig(const c10::BFloat16* row, int64_t V, float lmax, double inv_t,
                                uint32_t* key) {
  return row_keys_bf16(row, V, lmax, inv_t, key);
}
inline KeyStats row_keys_contig(const c10::Half* row, int64_t V, float lmax, double inv_t,
                                uint32_t* key) {
  return row_keys_f16(row, V, lmax, inv_t, key);
}
inline float range_max_contig(const float* row, int64_t n) { return range_max_f32(row, n); }
inline float range_max_contig(const c10::BFloat16* row, int64_t n) { return range_max_bf16(row, n); }
inline float range_max_contig(const c10::Half* row, int64_t n) { return range_max_f16(row, n); }

// The largest of row[v0, v1) (NaN ignored, -inf for none).
template <typename T>
float range_max(const T* row, int64_t v0, int64_t v1, int64_t stride) {
  if (v1 <= v0) return -INFINITY;
  if (stride == 1) return range_max_contig(row + v0, v1 - v0);
  float m = -INFINITY;
  for (int64_t v = v0; v < v1; ++v) {
    const float l = static_cast<float>(row[v * stride]);
    m = l > m ? l : m;
  }
  return m;
}

// lmax of sample.h: the largest candidate logit (the excluded class left
// out, NaN ignored: a NaN row is rejected by the pass that follows).
template <typename T>
float row_max(const T* row, int64_t V, int64_t stride, int64_t exclude) {
  if (exclude < 0 || exclude >= V) return range_max(row, 0, V, stride);
  return std::max(range_max(row, 0, exclude, stride), range_max(row, exclude + 1, V, stride));
}

// Keys of a row whose lmax is +inf: +inf classes get the +inf key, the
// others -inf (centred_logit), NaN stays NaN for the caller to see.
template <typename T>
KeyStats row_keys_inf(const T* row, int64_t V, int64_t stride, uint32_t* key) {
  KeyStats st;
  for (int64_t v = 0; v < V; ++v) {
    const float x = centred_logit(static_cast<float>(row[v * stride]), INFINITY, 1.0);
    key[v] = ord_key_bits(f2u(x));
    st.n_fin += key[v] > kKeyNegInf;
    st.n_inf += key[v] == kKeyPosInf;
    st.nan = st.nan || x != x;
  }
  return st;
}

template <typename T>
KeyStats row_keys(const T* row, int64_t V, int64_t stride, float lmax, double inv_t,
                  uint32_t* key) {
  if (lmax == INFINITY) return row_keys_inf(row, V, stride, key);
  if (stride == 1) return row_keys_contig(row, V, lmax, inv_t, key);
  const auto load = [=](int64_t v) { return static_cast<float>(row[v * stride]); };
  return inv_t == 1.0 ? row_keys_loop<false>(load, V, lmax, inv_t, key)
                      : row_keys_loop<true>(load, V, lmax, inv_t, key);
}

// Block maxima; with B == 1 the keys themselves.
inline const uint32_t* block_keys(const RowScratch& s, int64_t B) {
  return B == 1 ? s.vkey.data() : s.bmax.data();
}

// Block size: small enough that there are >= 4k blocks (a tight bound for
// top-k), at most 64 classes.
inline int64_t select_block(int64_t V, int64_t k) {
  int64_t B = 64;
  while (B > 1 && (V + B - 1) / B < 4 * k) B /= 2;
  return B;
}

// The k-th largest of a[0, n) (1 <= k <= n); destroys a[]. Radix select
// (cpu/sample_simd.cpp).
uint32_t kth_largest(uint32_t* a, int64_t n, int64_t k);

// The k-th largest of vkey[0, V) (1 <= k <= number of blocks); uses s.key.
inline uint32_t topk_threshold(RowScratch& s, int64_t V, int64_t B, int64_t k) {
  const int64_t M = (V + B - 1) / B;
  uint32_t* tmp = s.key.data();
  const uint32_t* key = s.vkey.data();
  const uint32_t* bmax = block_keys(s, B);
  std::copy(bmax, bmax + M, tmp);
  const uint32_t lo = kth_largest(tmp, M, k);  // <= the k-th largest key
  if (B == 1) return lo;
  int64_t c = 0;
  for (int64_t i = 0; i < M; ++i) {
    if (bmax[i] < lo) continue;
    const int64_t e = std::min(V, (i + 1) * B);
    for (int64_t v = i * B; v < e; ++v) {
      tmp[c] = key[v];
      c += key[v] >= lo;
    }
  }
  return kth_largest(tmp, c, k);
}

// Mass per digit of key[0, n) in this pass. Integer sums are exact, so four
// interleaved histograms (shorter store-to-load chains where neighbours share
// a digit, as most do in the first pass) give the same totals; short lists
// skip clearing the other three.
inline void mass_histogram(const uint32_t* key, const uint64_t* mass, int64_t n, int pass,
                           uint64_t* hist) {
  if (n < 1024) {
    std::fill(hist, hist + kRadixBuckets, uint64_t{0});
    for (int64_t i = 0; i < n; ++i) hist[radix_digit(key[i], pass)] += mass[i];
    return;
  }
  uint64_t h[4][kRadixBuckets] = {};
  int64_t i = 0;
  for (; i + 3 < n; i += 4)
    for (int q = 0; q < 4; ++q) h[q][radix_digit(key[i + q], pass)] += mass[i + q];
  for (; i < n; ++i) h[0][radix_digit(key[i], pass)] += mass[i];
  for (int b = 0; b < kRadixBuckets; ++b) hist[b] = h[0][b] + h[1][b] + h[2][b] + h[3][b];
}

// Largest key t with mass{key >= t} >= mass_target(total, top_p); destroys
// key[], mass[].
inline uint32_t radix_select_mass(uint32_t* key, uint64_t* mass, int64_t n, double top_p) {
  uint32_t prefix = 0;
  uint64_t above = 0, target = 0;
  for (int pass = 0; pass < kRadixPasses; ++pass) {
    uint64_t hist[kRadixBuckets];
    mass_histogram(key, mass, n, pass, hist);
    if (pass == 0) {
      uint64_t total = 0;
      for (int b = 0; b < kRadixBuckets; ++b) total += hist[b];
      target = mass_target(total, top_p);
    }
    const int b = pick_bucket_mass(hist, above, target);
    prefix |= static_cast<uint32_t>(b) << radix_shift(pass);
    int64_t j = 0;  // compaction, branch-free (the chosen bucket is often a large share)
    for (int64_t i = 0; i < n; ++i) {
      key[j] = key[i];
      mass[j] = mass[i];
      j += radix_digit(key[i], pass) == static_cast<uint32_t>(b);
    }
    n = j;
  }
  return prefix;
}

// Top-p over the candidates with key >= lo (finite); uses s.key, s.mass. The
// keys are gathered branch-free, then their masses computed in one loop.
inline uint32_t topp_threshold(RowScratch& s, int64_t V, int64_t B, uint32_t lo, float xmax,
                               double top_p) {
  const int64_t M = (V + B - 1) / B;
  const uint32_t* key = s.vkey.data();
  const uint32_t* bmax = block_keys(s, B);
  uint32_t* list = s.key.data();
  int64_t m = 0;
  for (int64_t i = 0; i < M; ++i) {
    if (B > 1 && bmax[i] < lo) continue;
    const int64_t e = std::min(V, (i + 1) * B);
    for (int64_t v = i * B; v < e; ++v) {
      list[m] = key[v];
      m += key[v] >= lo;
    }
  }
  topp_masses(list, m, xmax, mass_scale(V), s.mass.data());
  return radix_select_mass(list, s.mass.data(), m, top_p);
}

// gumbel_bound (sample.h) for each leading-zero count of the noise bits.
struct GumbelBoundTable {
  float b[65];
  GumbelBoundTable() {
    for (int z = 0; z <= 64; ++z) b[z] = dadd(dmul(static_cast<float>(z + 1), 0.6932f), 1e-3f);
  }
};
inline const GumbelBoundTable kGumbelBounds;

// Does offer_bits(b, x, k, .) possibly change b? False only when it would
// return at its bound test (a class that cannot win).
inline bool may_take(const Best& b, float x, uint64_t k) {
  if (b.tier < 0) return true;
  const bool inf = x == INFINITY;
  if (!inf && b.tier == 1) return false;
  if ((inf ? 1 : 0) != b.tier) return true;
  const float bound = kGumbelBounds.b[clz64(k)];
  return !((inf ? bound : dadd(x, bound)) <= b.score);
}

// Gumbel-max in batches: classes are offered in ascending order; the Philox
// words of the pairs they touch are drawn a batch at a time
// (gumbel_words_batch). Whether a class may win is judged against the best at
// the batch's start, which only offers more classes than a class-by-class
// test would: offer_bits rejects them, so the result is the same.
struct GumbelBatch {
  static constexpr int kMax = 64;  // classes per batch
  int n = 0, pairs = 0;
  int64_t v[kMax];
  float x[kMax];
  int slot[kMax];  // index of the class's pair in el/lo/hi
  uint64_t el[kMax], lo[kMax], hi[kMax];

  // Adds class cls (scaled logit xv); flushes first when full.
  void add(Best& b, int64_t cls, float xv, const SampleParams& p, uint64_t row, uint64_t half) {
    if (n == kMax) flush(b, p);
    const uint64_t e = row * half + static_cast<uint64_t>(cls / 2);
    if (pairs == 0 || el[pairs - 1] != e) el[pairs++] = e;
    v[n] = cls;
    x[n] = xv;
    slot[n++] = pairs - 1;
  }
  void flush(Best& b, const SampleParams& p) {
    gumbel_words_batch(p, el, pairs, lo, hi);
    for (int i = 0; i < n; ++i) {
      const uint64_t k = (v[i] & 1) ? hi[slot[i]] : lo[slot[i]];
      if (may_take(b, x[i], k)) offer_bits(b, x[i], k, v[i]);
    }
    n = pairs = 0;
  }
};

// Gumbel-max over the classes with key >= thr (thr > ord_key(-inf)), in
// ascending class order. The kept class ids are first gathered branch-free
// into s.key (a kept / not-kept branch per class mispredicts often when a
// large share of the row is kept); uses s.key.
inline int64_t score_kept(RowScratch& s, int64_t V, int64_t B, uint32_t thr,
                          const SampleParams& p, uint64_t row) {
  const uint64_t half = pairs_per_row(V);
  const int64_t M = (V + B - 1) / B;
  const uint32_t* key = s.vkey.data();
  const uint32_t* bmax = block_keys(s, B);
  uint32_t* kept = s.key.data();  // class ids: a vocabulary has < 2^32 classes
  int64_t n = 0;
  for (int64_t i = 0; i < M; ++i) {
    if (B > 1 && bmax[i] < thr) continue;  // B == 1: the test below suffices
    const int64_t e = std::min(V, (i + 1) * B);
    for (int64_t v = i * B; v < e; ++v) {
      kept[n] = static_cast<uint32_t>(v);
      n += key[v] >= thr;
    }
  }
  Best b = best_none();
  GumbelBatch g;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t v = kept[j];
    const float x = key_float(key[v]);
    if (may_win(b, x)) g.add(b, v, x, p, row, half);
  }
  g.flush(b, p);
  return b.index;
}

// Can some class of x[0, n) (no NaN) pass may_win(b, .)? Branch-free per
// tier so that the loops vectorize.
inline bool chunk_may_win(const Best& b, const float* x, int n) {
  int any = 0;
  if (b.tier < 0) {
    for (int i = 0; i < n; ++i) any |= x[i] > -INFINITY;
  } else if (b.tier == 0) {
    for (int i = 0; i < n; ++i) any |= dadd(x[i], kGumbelBound) > b.score;  // +inf passes
  } else {
    for (int i = 0; i < n; ++i) any |= x[i] == INFINITY;
  }
  return any != 0;
}

// One pass, no selection: Gumbel-max over all candidates, kChunk classes at a
// time: centred logits, then the Philox words of the chunk's pairs in one batch
// (skipped when no class of the chunk may win), then offer_bits for the
// classes whose noise bound lets them win (usually very few). kInf: lmax is
// +inf (centred_logit's special case); kMul as in centred_finite.
template <bool kInf, bool kMul, typename T>
int64_t plain_scan(const T* row, int64_t V, int64_t stride, const SampleParams& p, uint64_t r,
                   float lmax) {
  constexpr int kChunk = 64;
  const uint64_t half = pairs_per_row(V);
  Best b = best_none();
  float x[kChunk];
  uint64_t el[kChunk / 2], lo[kChunk / 2], hi[kChunk / 2];
  for (int64_t v0 = 0; v0 < V; v0 += kChunk) {
    const int n = static_cast<int>(std::min<int64_t>(kChunk, V - v0));
    const int ex = p.exclude >= v0 && p.exclude < v0 + n ? static_cast<int>(p.exclude - v0) : -1;
    int nan = 0;
    for (int i = 0; i < n; ++i) {
      const float l = static_cast<float>(row[(v0 + i) * stride]);
      const float xi =
          kInf ? centred_logit(l, lmax, 1.0) : centred_finite<kMul>(l, lmax, p.inv_temperature);
      nan |= (l != l) & (i != ex);
      x[i] = i == ex ? -INFINITY : xi;
    }
    if (nan) return -1;
    if (!chunk_may_win(b, x, n)) continue;
    const int pairs = (n + 1) / 2;
    for (int q = 0; q < pairs; ++q) el[q] = r * half + static_cast<uint64_t>(v0 / 2 + q);
    gumbel_words_batch(p, el, pairs, lo, hi);
    for (int i = 0; i < n; ++i) {
      const uint64_t k = (i & 1) ? hi[i >> 1] : lo[i >> 1];
      // tier 0 (the usual case): a finite class passes only if its bound
      // beats the best; offer_bits then re-tests with the exact rules
      const bool take = b.tier == 0 ? dadd(x[i], kGumbelBounds.b[clz64(k)]) > b.score
                                    : x[i] > -INFINITY && may_take(b, x[i], k);
      if (take) offer_bits(b, x[i], k, v0 + i);
    }
  }
  return b.index;
}

template <typename T>
int64_t sample_row_plain(const T* row, int64_t V, int64_t stride, const SampleParams& p,
                         uint64_t r) {
  const float lmax = row_max(row, V, stride, p.exclude);
  if (lmax == -INFINITY) return -1;  // no candidate above -inf (or only NaN ones)
  if (lmax == INFINITY) return plain_scan<true, false>(row, V, stride, p, r, lmax);
  return p.inv_temperature == 1.0 ? plain_scan<false, false>(row, V, stride, p, r, lmax)
                                  : plain_scan<false, true>(row, V, stride, p, r, lmax);
}

// Keys of the row (centred on lmax) into s.vkey with the excluded class set
// to key 0 (below every candidate); returns false for an invalid row (NaN among the
// candidates, or no finite candidate).
template <typename T>
bool load_keys(const T* row, int64_t V, int64_t stride, const SampleParams& p, RowScratch& s,
               KeyStats& st) {
  uint32_t* key = s.vkey.data();
  const float lmax = row_max(row, V, stride, p.exclude);
  if (lmax == -INFINITY) return false;  // no candidate above -inf
  st = row_keys(row, V, stride, lmax, p.inv_temperature, key);
  const bool has_ex = p.exclude >= 0 && p.exclude < V;
  if (st.nan) {
    for (int64_t v = 0; v < V; ++v) {
      const float x = key_float(key[v]);
      if (x != x && v != p.exclude) return false;
    }
  }
  if (has_ex) {
    const uint32_t ke = key[p.exclude];
    st.n_fin -= ke > kKeyNegInf;
    st.n_inf -= ke == kKeyPosInf;
    key[p.exclude] = 0;
  }
  return st.n_fin > 0;
}

// Top-k / top-p row: keys, block maxima, threshold, Gumbel-max over the kept.
template <typename T>
int64_t sample_row_select(const T* row, int64_t V, int64_t stride, const SampleParams& p,
                          uint64_t r, RowScratch& s) {
  s.reserve(V);
  KeyStats st;
  if (!load_keys(row, V, stride, p, s, st)) return -1;
  const bool top_k = p.top_k > 0 && p.top_k < st.n_fin;
  const int64_t B = select_block(V, top_k ? p.top_k : 1);
  const int64_t M = (V + B - 1) / B;
  if (B > 1) block_max(s.vkey.data(), V, B, s.bmax.data());
  uint32_t thr = kKeyNegInf + 1;  // every finite candidate
  if (st.n_inf > 0) {
    thr = kKeyPosInf;
  } else {
    if (top_k) thr = std::max(thr, topk_threshold(s, V, B, p.top_k));
    if (p.top_p < 1.0) {
      const uint32_t kmax = *std::max_element(block_keys(s, B), block_keys(s, B) + M);
      thr = topp_threshold(s, V, B, thr, key_float(kmax), p.top_p);
    }
  }
  thr = std::max(thr, kKeyNegInf + 1);  // never -inf classes or the excluded one
  return score_kept(s, V, B, thr, p, r);
}

// The row sampler: returns the class id, or -1 for an invalid row.
template <typename T>
int64_t sample_row_cpu(const T* row, int64_t V, int64_t stride, const SampleParams& p,
                       uint64_t r, RowScratch& s) {
  if (!needs_select(p, V)) return sample_row_plain(row, V, stride, p, r);
  return sample_row_select(row, V, stride, p, r, s);
}

}  // namespace dmmd
