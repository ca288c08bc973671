// The data-parallel loops of the CPU row sampler (cpu/sample_row.h):
//   - the largest logit of a contiguous range (the centre of the row);
//   - order keys of a contiguous row (centred logit -> ord_key, with the
//     finite / +inf / NaN counts) and per-block key maxima (top-k/top-p path);
//   - the fixed-point top-p masses of a list of keys (topp_masses);
//   - the Gumbel Philox words of a batch of arbitrary pair elements, from the
//     shared gathered-element Philox (cpu/philox_simd.h: AVX-512 or AVX2
//     picked at run time, capped by DMMD_EXT_CPU_ISA; scalar elsewhere).
//
// Memory contract: reads one contiguous row of V logits (fp32/bf16/fp16), V
// keys, or n Philox elements; writes V keys, ceil(V / B) maxima, n masses or
// 2n words into caller-owned scratch. x86-64 GCC builds clone these loops for
// AVX2 (target_clones) at run time; integer ops and single IEEE operations
// (no FMA contraction in this build) round alike in every variant, so each
// writes the same bits as the scalar code (philox.h, detmath.h).
#include <cstring>
#include <type_traits>

#include "clones.h"
#include "philox_simd.h"
#include "sample_row.h"

namespace dmmd {

// always_inline: a helper the clones call is compiled once, for the baseline
// ISA (the AVX2 clones of row_keys_* were calls into SSE2 code).
template <typename T>
__attribute__((always_inline)) inline KeyStats keys_contig(const T* row, int64_t V, float lmax,
                                                          double inv_t, uint32_t* key) {
  const auto load = [=](int64_t v) { return static_cast<float>(row[v]); };
  return inv_t == 1.0 ? row_keys_loop<false>(load, V, lmax, inv_t, key)
                      : row_keys_loop<true>(load, V, lmax, inv_t, key);
}

DMMD_CPU_CLONES_AVX2 KeyStats row_keys_f32(const float* row, int64_t V, float lmax, double inv_t,
                                           uint32_t* key) {
  return keys_contig(row, V, lmax, inv_t, key);
}

DMMD_CPU_CLONES_AVX2 KeyStats row_keys_bf16(const c10::BFloat16* row, int64_t V, float lmax,
                                            double inv_t, uint32_t* key) {
  return keys_contig(row, V, lmax, inv_t, key);
}

DMMD_CPU_CLONES_AVX2 KeyStats row_keys_f16(const c10::Half* row, int64_t V, float lmax, double inv_t,
                                           uint32_t* key) {
  return keys_contig(row, V, lmax, inv_t, key);
}

// Max of a contiguous range, NaN ignored, as an unsigned max of order keys
// (ord_key_bits; NaN mapped to key 0, below every other key). Written with
// 8-lane GCC vectors: GCC turned the scalar loop's selects into branches and
// left it scalar, which made the row max 37% of a top-k call. The sign of a
// zero maximum is lost (keys fold -0 into +0), which changes no centred
// logit's key, score or mass.
typedef uint32_t KeyVec __attribute__((vector_size(32)));
typedef int32_t KeyVecS __attribute__((vector_size(32)));

template <typename T>
__attribute__((always_inline)) inline float max_contig(const T* row, int64_t n) {
  KeyVec m = {};
  int64_t v = 0;
  for (; v + 8 <= n; v += 8) {
    KeyVec u;
    if constexpr (std::is_same_v<T, float>) {
      std::memcpy(&u, row + v, sizeof(u));
    } else {
      float f[8];
      for (int l = 0; l < 8; ++l) f[l] = static_cast<float>(row[v + l]);
      std::memcpy(&u, f, sizeof(u));
    }
    const KeyVec nan = (KeyVec)((u & 0x7fffffffu) > 0x7f800000u);
    u &= ~(KeyVec)(u == 0x80000000u);  // -0.0 -> +0.0
    const KeyVec k = (u ^ ((KeyVec)((KeyVecS)u >> 31) | 0x80000000u)) & ~nan;
    m = k > m ? k : m;
  }
  uint32_t r = 0;
  for (int l = 0; l < 8; ++l) r = m[l] > r ? m[l] : r;
  for (; v < n; ++v) {
    const uint32_t u = f2u(static_cast<float>(row[v]));
    const uint32_t k = (u & 0x7fffffffu) > 0x7f800000u ? 0u : ord_key_bits(u);
    r = k > r ? k : r;
  }
  return r == 0 ? -INFINITY : key_float(r);
}

DMMD_CPU_CLONES_AVX2 float range_max_f32(const float* row, int64_t n) { return max_contig(row, n); }
DMMD_CPU_CLONES_AVX2 float range_max_bf16(const c10::BFloat16* row, int64_t n) {
  return max_contig(row, n);
}
DMMD_CPU_CLONES_AVX2 float range_max_f16(const c10::Half* row, int64_t n) {
  return max_contig(row, n);
}

DMMD_CPU_CLONES_AVX2 void block_max(const uint32_t* key, int64_t V, int64_t B, uint32_t* bmax) {
  for (int64_t b0 = 0, i = 0; b0 < V; b0 += B, ++i) {
    const int64_t e = std::min(V, b0 + B);
    uint32_t m = 0;
    for (int64_t v = b0; v < e; ++v) m = key[v] > m ? key[v] : m;
    bmax[i] = m;
  }
}

// The fixed-point top-p masses of a list of keys: det_exp64 is branch-free
// IEEE double arithmetic and integer bit operations, so GCC vectorizes the
// loop (the CPU build disables FMA contraction: the bits stay those of the
// scalar code and of the CUDA sampler).
DMMD_CPU_CLONES_AVX2 void topp_masses(const uint32_t* key, int64_t n, float xmax, double scale,
                                      uint64_t* mass) {
  for (int64_t i = 0; i < n; ++i) mass[i] = topp_mass(key_float(key[i]), xmax, scale);
}

// Radix select over the range [min, max] of what is left, 8 bits per pass:
// each pass keeps the one bucket holding the k-th largest, so at most 4
// passes, usually 1-2. Two interleaved histograms halve the store-to-load
// chains when neighbours share a bucket (most do in the first pass of a
// logit row).
DMMD_CPU_CLONES_AVX2 uint32_t kth_largest(uint32_t* a, int64_t n, int64_t k) {
  for (;;) {
    uint32_t mn = 0xffffffffu, mx = 0;
    for (int64_t i = 0; i < n; ++i) {
      mn = a[i] < mn ? a[i] : mn;
      mx = a[i] > mx ? a[i] : mx;
    }
    if (mn == mx) return mx;
    int shift = 32 - __builtin_clz(mx - mn) - 8;
    shift = shift < 0 ? 0 : shift;
    uint32_t count[2][256] = {};
    int64_t i = 0;
    for (; i + 1 < n; i += 2) {
      ++count[0][(a[i] - mn) >> shift];
      ++count[1][(a[i + 1] - mn) >> shift];
    }
    if (i < n) ++count[0][(a[i] - mn) >> shift];
    uint32_t b = (mx - mn) >> shift;  // the top non-empty bucket
    for (; b > 0; --b) {
      const int64_t c = int64_t{count[0][b]} + count[1][b];
      if (c >= k) break;
      k -= c;
    }
    int64_t j = 0;
    for (i = 0; i < n; ++i) {
      a[j] = a[i];
      j += ((a[i] - mn) >> shift) == b;
    }
    n = j;
  }
}

void gumbel_words_batch(const SampleParams& p, const uint64_t* el, int64_t n, uint64_t* lo,
                        uint64_t* hi) {
  cpu::philox_gather_fn()(p.seed, p.offset, kStreamGumbel, el, n, lo, hi);
}

}  // namespace dmmd
