// The CUDA row sampler: one thread block draws one row. Shared by
// sample_categorical (cuda/sample.cu) and posterior_step (cuda/posterior.cu);
// the device-agnostic math (scores, keys, bucket picks) is
// include/dmmd/sample.h, the same code the CPU row sampler runs, so results
// are bitwise identical to the CPU for an explicit (seed, offset), top-p
// included (see the note on mass accumulation below).
//
// Memory contract: reads the row from global memory once for its stats (the
// largest candidate logit lmax, the centre of sample.h's centred logits, and
// NaN), then once more for the Gumbel-max without top-k/top-p, otherwise up
// to 4 radix passes for top-k, up to 4 for top-p and one scoring pass
// (re-reads hit L2 for rows of a few hundred KB). Pairs (v, v+1) are
// loaded together (8-byte fp32 / 4-byte fp16/bf16 loads when the row is
// contiguous and aligned) because one Philox call serves the pair. Shared
// memory: 256 counts + 256 uint64 masses + reduction scratch. Nothing V-sized
// is written.
//
// Top-p masses are the fixed-point integers of sample.h (topp_mass:
// det_exp64, one rounding to 2^-S units), accumulated with 64-bit integer
// shared-memory atomics (native): integer sums do not depend on the order of
// the atomics, so the threshold is run-to-run deterministic and equal to the
// CPU's. Phases hand values to each other through `sh`: a value a phase
// returns is read into a register before its last barrier, because the next
// phase's thread 0 may overwrite the shared copy at once.
#pragma once
#include "runtime.cuh"

#include <cstdint>

#include "dmmd/sample.h"

namespace dmmd {

struct FloatMax {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

struct BestMax {
  __device__ Best operator()(const Best& a, const Best& b) const { return best_of(a, b); }
};

struct RowStats {
  float lmax;  // largest candidate logit (NaN ignored; -inf: none)
  int nan;     // some candidate is NaN
};

template <int BLOCK>
struct RowShared {
  union {
    typename cub::BlockReduce<Best, BLOCK>::TempStorage best;
    typename cub::BlockReduce<float, BLOCK>::TempStorage f32;
  } red;
  uint32_t count[kRadixBuckets];
  uint64_t mass[kRadixBuckets];  // fixed point (sample.h, topp_mass)
  uint32_t prefix;
  int64_t k;
  uint64_t above, target;
  int64_t result;
  RowStats stats;
};

template <typename T>
struct alignas(2 * sizeof(T)) PairOf {
  T v[2];
};

// Logits v0 and v0 + 1 (the second only if v0 + 1 < V) as floats.
template <typename T>
__device__ __forceinline__ void load_pair(const T* __restrict__ row, int64_t v0, int64_t V,
                                          int64_t stride, bool vec, float& a, float& b) {
  if (vec && v0 + 1 < V) {
    const PairOf<T> p = *reinterpret_cast<const PairOf<T>*>(row + v0);
    a = static_cast<float>(p.v[0]);
    b = static_cast<float>(p.v[1]);
    return;
  }
  a = static_cast<float>(row[v0 * stride]);
  b = v0 + 1 < V ? static_cast<float>(row[(v0 + 1) * stride]) : 0.0f;
}

// Centred logit of class v (sample.h, centred_logit), or -inf for a
// non-candidate (excluded, out of range). lmax > -inf.
__device__ __forceinline__ float cand_x(float l, int64_t v, int64_t V, const SampleParams& p,
                                        float lmax) {
  if (v >= V || v == p.exclude) return -u2f(0x7f800000u);
  return centred_logit(l, lmax, p.inv_temperature);
}

// The row's lmax and whether a candidate is NaN; every thread gets them.
template <int BLOCK, typename T>
__device__ RowStats stats_pass(const T* row, int64_t V, int64_t stride, bool vec,
                               const SampleParams& p, RowShared<BLOCK>& sh) {
  const int64_t half = static_cast<int64_t>(pairs_per_row(V));
  float m = -u2f(0x7f800000u);
  int nan = 0;
  for (int64_t pair = threadIdx.x; pair < half; pair += BLOCK) {
    const int64_t v0 = 2 * pair;
    float l[2];
    load_pair(row, v0, V, stride, vec, l[0], l[1]);
    for (int j = 0; j < 2; ++j) {
      if (v0 + j >= V || v0 + j == p.exclude) continue;
      nan |= l[j] != l[j];
      m = fmaxf(m, l[j]);  // fmaxf ignores NaN
    }
  }
  const int any_nan = __syncthreads_or(nan);
  const float mx = cub::BlockReduce<float, BLOCK>(sh.red.f32).Reduce(m, FloatMax());
  if (threadIdx.x == 0) sh.stats = RowStats{mx, any_nan};
  __syncthreads();
  const RowStats st = sh.stats;
  __syncthreads();  // sh.stats / sh.red are reused by the next phase
  return st;
}

template <int BLOCK, typename T>
__device__ int64_t score_pass(const T* row, int64_t V, int64_t stride, bool vec,
                              const SampleParams& p, uint64_t r, uint32_t thr, float lmax,
                              RowShared<BLOCK>& sh) {
  const uint64_t half = pairs_per_row(V);
  Best b = best_none();
  for (int64_t pair = threadIdx.x; pair < static_cast<int64_t>(half); pair += BLOCK) {
    const int64_t v0 = 2 * pair;
    float l[2];
    load_pair(row, v0, V, stride, vec, l[0], l[1]);
    float x[2];
    bool use[2];
    for (int j = 0; j < 2; ++j) {
      x[j] = cand_x(l[j], v0 + j, V, p, lmax);
      use[j] = x[j] > -u2f(0x7f800000u) && ord_key(x[j]) >= thr && may_win(b, x[j]);
    }
    if (!use[0] && !use[1]) continue;
    const U32x4 w = gumbel_words(p, r, half, static_cast<uint64_t>(pair));
    for (int j = 0; j < 2; ++j)
      if (use[j]) offer_bits(b, x[j], j == 1 ? hi64(w) : lo64(w), v0 + j);
  }
  Best top = cub::BlockReduce<Best, BLOCK>(sh.red.best).Reduce(b, BestMax());
  if (threadIdx.x == 0) sh.result = top.index;
  __syncthreads();
  const int64_t out = sh.result;
  __syncthreads();
  return out;
}

// One radix pass over the keys still in play: counts (top-k) or fixed-point
// masses (top-p, topp_mass for keys >= thr_k; scale = mass_scale(V)).
template <int BLOCK, typename T, bool MASS>
__device__ void radix_pass(const T* row, int64_t V, int64_t stride, bool vec,
                           const SampleParams& p, float lmax, int pass, uint32_t prefix,
                           uint32_t thr_k, double scale, RowShared<BLOCK>& sh) {
  for (int b = threadIdx.x; b < kRadixBuckets; b += BLOCK) {
    sh.count[b] = 0;
    sh.mass[b] = 0;
  }
  __syncthreads();
  const int64_t half = static_cast<int64_t>(pairs_per_row(V));
  for (int64_t pair = threadIdx.x; pair < half; pair += BLOCK) {
    const int64_t v0 = 2 * pair;
    float l[2];
    load_pair(row, v0, V, stride, vec, l[0], l[1]);
    for (int j = 0; j < 2; ++j) {
      const float x = cand_x(l[j], v0 + j, V, p, lmax);
      if (!(x > -u2f(0x7f800000u))) continue;
      const uint32_t key = ord_key(x);
      if (key < thr_k || !radix_match(key, prefix, pass)) continue;
      const uint32_t d = radix_digit(key, pass);
      if (MASS)
        atomicAdd(reinterpret_cast<unsigned long long*>(&sh.mass[d]),
                  static_cast<unsigned long long>(topp_mass(x, 0.0f, scale)));
      else
        atomicAdd(&sh.count[d], 1u);
    }
  }
  __syncthreads();
}

// The top-k threshold key, or 0 (keep every finite class) when the row has
// at most k classes with a centred logit above -inf (pass 0 counts them all).
template <int BLOCK, typename T>
__device__ uint32_t select_top_k(const T* row, int64_t V, int64_t stride, bool vec,
                                 const SampleParams& p, float lmax, RowShared<BLOCK>& sh) {
  if (threadIdx.x == 0) {
    sh.prefix = 0;
    sh.k = p.top_k;
  }
  __syncthreads();
  for (int pass = 0; pass < kRadixPasses; ++pass) {
    radix_pass<BLOCK, T, false>(row, V, stride, vec, p, lmax, pass, sh.prefix, 0u, 0.0, sh);
    if (threadIdx.x == 0) {
      int64_t k = sh.k;
      if (pass == 0) {
        int64_t n_fin = 0;
        for (int b = 0; b < kRadixBuckets; ++b) n_fin += sh.count[b];
        if (n_fin <= k) k = -1;  // top-k is moot
      }
      if (k > 0) {
        const int b = pick_bucket_count(sh.count, k);
        sh.prefix |= static_cast<uint32_t>(b) << radix_shift(pass);
      }
      sh.k = k;
    }
    __syncthreads();
    if (sh.k < 0) break;  // uniform across the block: read after the barrier
  }
  // select_top_p's thread 0 resets sh.prefix next: read it before a barrier
  const uint32_t thr = sh.prefix;
  __syncthreads();
  return thr;
}

template <int BLOCK, typename T>
__device__ uint32_t select_top_p(const T* row, int64_t V, int64_t stride, bool vec,
                                 const SampleParams& p, uint32_t thr_k, float lmax,
                                 RowShared<BLOCK>& sh) {
  if (threadIdx.x == 0) {
    sh.prefix = 0;
    sh.above = 0;
  }
  __syncthreads();
  const double scale = mass_scale(V);
  for (int pass = 0; pass < kRadixPasses; ++pass) {
    radix_pass<BLOCK, T, true>(row, V, stride, vec, p, lmax, pass, sh.prefix, thr_k, scale, sh);
    if (threadIdx.x == 0) {
      if (pass == 0) {
        uint64_t total = 0;
        for (int b = 0; b < kRadixBuckets; ++b) total += sh.mass[b];
        sh.target = mass_target(total, p.top_p);
      }
      uint64_t above = sh.above;
      const int b = pick_bucket_mass(sh.mass, above, sh.target);
      sh.above = above;
      sh.prefix |= static_cast<uint32_t>(b) << radix_shift(pass);
    }
    __syncthreads();
  }
  // hand-over as in select_top_k, so no later phase can race with the read
  const uint32_t thr = sh.prefix;
  __syncthreads();
  return thr;
}

// The row sampler: every thread of the block calls it; every thread gets the
// class id (or -1 for an invalid row).
template <int BLOCK, typename T>
__device__ int64_t sample_row_block(const T* row, int64_t V, int64_t stride,
                                    const SampleParams& p, uint64_t r, RowShared<BLOCK>& sh) {
  const bool vec = stride == 1 && (reinterpret_cast<uintptr_t>(row) % (2 * sizeof(T))) == 0;
  const bool select = (p.top_k > 0 && p.top_k < V) || p.top_p < 1.0;
  const RowStats st = stats_pass<BLOCK>(row, V, stride, vec, p, sh);
  if (st.nan || !(st.lmax > -u2f(0x7f800000u))) return -1;
  uint32_t thr = 0;
  if (select) {
    if (st.lmax == u2f(0x7f800000u)) {
      thr = ord_key(u2f(0x7f800000u));
    } else {
      if (p.top_k > 0 && p.top_k < V) thr = select_top_k<BLOCK>(row, V, stride, vec, p, st.lmax, sh);
      if (p.top_p < 1.0) thr = select_top_p<BLOCK>(row, V, stride, vec, p, thr, st.lmax, sh);
    }
  }
  return score_pass<BLOCK>(row, V, stride, vec, p, r, thr, st.lmax, sh);
}

// Threads per row: small vocabularies get small blocks (more rows in flight).
inline int row_block_threads(int64_t V) { return V <= 2048 ? 128 : 512; }

}  // namespace dmmd
