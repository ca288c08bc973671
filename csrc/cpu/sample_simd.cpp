// The data-parallel loops of the CPU row sampler (cpu/sample_row.h):
//   - order keys of a contiguous row (scaled logit -> ord_key, with the
//     finite / +inf / NaN counts) and per-block key maxima (top-k/top-p path);
//   - Philox4x32-10 for a batch of elements, 8 at a time in AVX2 registers
//     (32x32 -> 64-bit products from vpmuludq on even and odd lanes).
//
// Memory contract: reads one contiguous row of V logits (fp32/bf16/fp16), V
// keys, or n Philox elements; writes V keys, ceil(V / B) maxima or 2n words
// into caller-owned scratch. x86-64 GCC builds clone the key loops for AVX2
// (target_clones) and pick the Philox kernel with __builtin_cpu_supports, both
// at run time; integer ops and the one IEEE division are exact, so every
// variant writes the same bits as the scalar code (philox.h).
#include "sample_row.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DMMD_PHILOX_AVX2 1
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DMMD_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define DMMD_CPU_CLONES
#endif

namespace dmmd {

template <typename T>
static KeyStats keys_contig(const T* row, int64_t V, float t, uint32_t* key) {
  const auto load = [=](int64_t v) { return static_cast<float>(row[v]); };
  return skip_div_by_one(t) ? row_keys_loop<false>(load, V, t, key)
                            : row_keys_loop<true>(load, V, t, key);
}

DMMD_CPU_CLONES KeyStats row_keys_f32(const float* row, int64_t V, float t, uint32_t* key) {
  return keys_contig(row, V, t, key);
}

DMMD_CPU_CLONES KeyStats row_keys_bf16(const c10::BFloat16* row, int64_t V, float t,
                                       uint32_t* key) {
  return keys_contig(row, V, t, key);
}

DMMD_CPU_CLONES KeyStats row_keys_f16(const c10::Half* row, int64_t V, float t, uint32_t* key) {
  return keys_contig(row, V, t, key);
}

DMMD_CPU_CLONES void block_max(const uint32_t* key, int64_t V, int64_t B, uint32_t* bmax) {
  for (int64_t b0 = 0, i = 0; b0 < V; b0 += B, ++i) {
    const int64_t e = std::min(V, b0 + B);
    uint32_t m = 0;
    for (int64_t v = b0; v < e; ++v) m = key[v] > m ? key[v] : m;
    bmax[i] = m;
  }
}

namespace {

void philox_scalar(const SampleParams& p, const uint64_t* el, int64_t n, uint64_t* lo,
                   uint64_t* hi) {
  for (int64_t j = 0; j < n; ++j) {
    const U32x4 w = philox_draw(p.seed, p.offset, kStreamGumbel, el[j]);
    lo[j] = lo64(w);
    hi[j] = hi64(w);
  }
}

#if defined(DMMD_PHILOX_AVX2)
// (hi, lo) 32-bit halves of a * m for the 8 lanes of a.
__attribute__((target("avx2"))) inline void mulhilo8(__m256i a, __m256i m, __m256i& hi,
                                                     __m256i& lo) {
  const __m256i pe = _mm256_mul_epu32(a, m);                         // lanes 0, 2, 4, 6
  const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);  // lanes 1, 3, 5, 7
  lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
}

__attribute__((target("avx2"))) void philox_avx2(const SampleParams& p, const uint64_t* el,
                                                 int64_t n, uint64_t* lo, uint64_t* hi) {
  const uint64_t block = (p.offset >> 2) + kStreamGumbel;
  const __m256i split = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256i a = _mm256_permutevar8x32_epi32(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(el + j)), split);
    const __m256i b = _mm256_permutevar8x32_epi32(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(el + j + 4)), split);
    __m256i x = _mm256_permute2x128_si256(a, b, 0x20);  // element low words
    __m256i y = _mm256_permute2x128_si256(a, b, 0x31);  // element high words
    __m256i z = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(block)));
    __m256i w = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(block >> 32)));
    uint32_t k0 = static_cast<uint32_t>(p.seed), k1 = static_cast<uint32_t>(p.seed >> 32);
    for (int r = 0; r < 10; ++r) {
      __m256i hi0, lo0, hi1, lo1;
      mulhilo8(x, m0, hi0, lo0);
      mulhilo8(z, m1, hi1, lo1);
      x = _mm256_xor_si256(_mm256_xor_si256(hi1, y), _mm256_set1_epi32(static_cast<int>(k0)));
      y = lo1;
      z = _mm256_xor_si256(_mm256_xor_si256(hi0, w), _mm256_set1_epi32(static_cast<int>(k1)));
      w = lo0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    // Interleave back to 64-bit words: lo64 = y:x, hi64 = w:z.
    const __m256i xy0 = _mm256_unpacklo_epi32(x, y), xy1 = _mm256_unpackhi_epi32(x, y);
    const __m256i zw0 = _mm256_unpacklo_epi32(z, w), zw1 = _mm256_unpackhi_epi32(z, w);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo + j), _mm256_permute2x128_si256(xy0, xy1, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo + j + 4), _mm256_permute2x128_si256(xy0, xy1, 0x31));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi + j), _mm256_permute2x128_si256(zw0, zw1, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi + j + 4), _mm256_permute2x128_si256(zw0, zw1, 0x31));
  }
  philox_scalar(p, el + j, n - j, lo + j, hi + j);
}

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#endif

}  // namespace

void gumbel_words_batch(const SampleParams& p, const uint64_t* el, int64_t n, uint64_t* lo,
                        uint64_t* hi) {
#if defined(DMMD_PHILOX_AVX2)
  if (cpu_has_avx2()) return philox_avx2(p, el, n, lo, hi);
#endif
  philox_scalar(p, el, n, lo, hi);
}

}  // namespace dmmd
