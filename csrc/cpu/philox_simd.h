// Philox4x32-10 for many elements at once (CPU only), in two shapes:
//   - a block of kPhiloxBlock consecutive elements first, first + 1, ...
//     (philox_block_fn; used by cpu/corrupt.cpp for flat token indices);
//   - a batch of n arbitrary elements el[0..n) (philox_gather_fn; used by the
//     row sampler, cpu/sample_simd.cpp, for the Gumbel pairs it keeps).
// Output j holds philox_draw(seed, offset, sub_stream, element j)
// (include/dmmd/philox.h) bit for bit: the same integer arithmetic, laid out
// across SIMD lanes. Lanes are element indices, so the contract of philox.h
// (CPU == CUDA for an explicit (seed, offset)) is untouched. Counter words
// x, y are the element's low and high words; z, w depend only on (offset,
// sub_stream) and are broadcast from philox_counter(offset, sub_stream, 0),
// where the layout (with its top bit of w) is defined once. The ten rounds
// are written once per instruction set (philox_lanes_avx512 / _avx2); the two
// shapes differ only in how they fill the element vectors.
//
// The instruction set is chosen at run time, so the wheel stays baseline
// x86-64: AVX-512F, else AVX2, else one scalar philox_draw per element (also
// the only path off x86-64). DMMD_EXT_CPU_ISA=avx2|scalar (read once per
// process) caps the choice for both shapes, so tests can run the narrower
// paths on a wider CPU.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "dmmd/noise.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DMMD_PHILOX_X86 1
#include <immintrin.h>
#else
#define DMMD_PHILOX_X86 0
#endif

namespace dmmd {
namespace cpu {

constexpr int kPhiloxBlock = 64;  // lanes per block call; a multiple of 32

// lo[l] = lo64(draw of element first + l), hi[l] = hi64(...), l < kPhiloxBlock.
using PhiloxBlockFn = void (*)(uint64_t seed, uint64_t offset, uint32_t sub_stream,
                               uint64_t first, uint64_t* lo, uint64_t* hi);
// lo[j] = lo64(draw of element el[j]), hi[j] = hi64(...), j < n (n >= 0).
using PhiloxGatherFn = void (*)(uint64_t seed, uint64_t offset, uint32_t sub_stream,
                                const uint64_t* el, int64_t n, uint64_t* lo, uint64_t* hi);

inline void philox_gather_scalar(uint64_t seed, uint64_t offset, uint32_t sub_stream,
                                 const uint64_t* el, int64_t n, uint64_t* lo, uint64_t* hi) {
  for (int64_t j = 0; j < n; ++j) {
    const U32x4 r = philox_draw(seed, offset, sub_stream, el[j]);
    lo[j] = lo64(r);
    hi[j] = hi64(r);
  }
}

inline void philox_block_scalar(uint64_t seed, uint64_t offset, uint32_t sub_stream,
                                uint64_t first, uint64_t* lo, uint64_t* hi) {
  for (int l = 0; l < kPhiloxBlock; ++l) {
    const U32x4 r = philox_draw(seed, offset, sub_stream, first + static_cast<uint64_t>(l));
    lo[l] = lo64(r);
    hi[l] = hi64(r);
  }
}

#if DMMD_PHILOX_X86
// Layout for both vector paths: each 64-bit lane carries one 32-bit Philox
// word in its low half. vpmuludq multiplies those low halves into the full
// 64-bit product, and a swap of the two halves (vpshufd) brings the product's
// high word down. The upper halves hold leftovers that no result reads, so an
// element index loads as is: its low half is counter word x, and y is the
// index shifted down by 32.
constexpr uint32_t kPhM0 = 0xD2511F53u, kPhM1 = 0xCD9E8D57u;
constexpr uint32_t kPhW0 = 0x9E3779B9u, kPhW1 = 0xBB67AE85u;

// The rounds for kVec vectors of 8 element indices e[v] (independent vectors
// in flight hide the multiply latency); stores lo64/hi64 of lane l of e[v] to
// lo/hi[8 v + l].
template <int kVec>
__attribute__((target("avx512f"), always_inline)) inline void philox_lanes_avx512(
    const __m512i* e, uint32_t cz, uint32_t cw, uint64_t seed, uint64_t* lo, uint64_t* hi) {
  const __m512i m0 = _mm512_set1_epi64(kPhM0), m1 = _mm512_set1_epi64(kPhM1);
  __m512i x[kVec], y[kVec], z[kVec], w[kVec];
  for (int v = 0; v < kVec; ++v) {
    x[v] = e[v];
    y[v] = _mm512_srli_epi64(e[v], 32);
    z[v] = _mm512_set1_epi64(cz);
    w[v] = _mm512_set1_epi64(cw);
  }
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    const __m512i key0 = _mm512_set1_epi32(static_cast<int>(k0));
    const __m512i key1 = _mm512_set1_epi32(static_cast<int>(k1));
    for (int v = 0; v < kVec; ++v) {
      const __m512i p0 = _mm512_mul_epu32(x[v], m0);
      const __m512i p1 = _mm512_mul_epu32(z[v], m1);
      // 0x96 = a ^ b ^ c
      x[v] = _mm512_ternarylogic_epi64(_mm512_shuffle_epi32(p1, _MM_PERM_CDAB), y[v], key0,
                                       0x96);
      z[v] = _mm512_ternarylogic_epi64(_mm512_shuffle_epi32(p0, _MM_PERM_CDAB), w[v], key1,
                                       0x96);
      y[v] = p1;
      w[v] = p0;
    }
    k0 += kPhW0;
    k1 += kPhW1;
  }
  for (int v = 0; v < kVec; ++v) {  // (y << 32) | x and (w << 32) | z
    const __m512i l64 =
        _mm512_mask_blend_epi32(0xAAAA, x[v], _mm512_shuffle_epi32(y[v], _MM_PERM_CDAB));
    const __m512i h64 =
        _mm512_mask_blend_epi32(0xAAAA, z[v], _mm512_shuffle_epi32(w[v], _MM_PERM_CDAB));
    _mm512_storeu_si512(lo + 8 * v, l64);
    _mm512_storeu_si512(hi + 8 * v, h64);
  }
}

// Same for kVec vectors of 4 element indices (2 in flight fill the 16 ymm).
template <int kVec>
__attribute__((target("avx2"), always_inline)) inline void philox_lanes_avx2(
    const __m256i* e, uint32_t cz, uint32_t cw, uint64_t seed, uint64_t* lo, uint64_t* hi) {
  const __m256i m0 = _mm256_set1_epi64x(kPhM0), m1 = _mm256_set1_epi64x(kPhM1);
  __m256i x[kVec], y[kVec], z[kVec], w[kVec];
  for (int v = 0; v < kVec; ++v) {
    x[v] = e[v];
    y[v] = _mm256_srli_epi64(e[v], 32);
    z[v] = _mm256_set1_epi64x(cz);
    w[v] = _mm256_set1_epi64x(cw);
  }
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    const __m256i key0 = _mm256_set1_epi32(static_cast<int>(k0));
    const __m256i key1 = _mm256_set1_epi32(static_cast<int>(k1));
    for (int v = 0; v < kVec; ++v) {
      const __m256i p0 = _mm256_mul_epu32(x[v], m0);
      const __m256i p1 = _mm256_mul_epu32(z[v], m1);
      x[v] = _mm256_xor_si256(_mm256_xor_si256(_mm256_shuffle_epi32(p1, 0xB1), y[v]), key0);
      z[v] = _mm256_xor_si256(_mm256_xor_si256(_mm256_shuffle_epi32(p0, 0xB1), w[v]), key1);
      y[v] = p1;
      w[v] = p0;
    }
    k0 += kPhW0;
    k1 += kPhW1;
  }
  for (int v = 0; v < kVec; ++v) {
    const __m256i l64 = _mm256_blend_epi32(x[v], _mm256_shuffle_epi32(y[v], 0xB1), 0xAA);
    const __m256i h64 = _mm256_blend_epi32(z[v], _mm256_shuffle_epi32(w[v], 0xB1), 0xAA);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo + 4 * v), l64);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi + 4 * v), h64);
  }
}

__attribute__((target("avx512f"))) inline void philox_block_avx512(
    uint64_t seed, uint64_t offset, uint32_t sub_stream, uint64_t first, uint64_t* lo,
    uint64_t* hi) {
  constexpr int kVec = 4;
  const U32x4 zw = philox_counter(offset, sub_stream, 0);  // words z, w
  const __m512i lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
  for (int g = 0; g < kPhiloxBlock; g += 8 * kVec) {
    __m512i e[kVec];
    for (int v = 0; v < kVec; ++v)
      e[v] = _mm512_add_epi64(_mm512_set1_epi64(static_cast<int64_t>(first + g + 8 * v)), lane);
    philox_lanes_avx512<kVec>(e, zw.z, zw.w, seed, lo + g, hi + g);
  }
}

__attribute__((target("avx2"))) inline void philox_block_avx2(uint64_t seed, uint64_t offset,
                                                               uint32_t sub_stream,
                                                               uint64_t first, uint64_t* lo,
                                                               uint64_t* hi) {
  constexpr int kVec = 2;
  const U32x4 zw = philox_counter(offset, sub_stream, 0);  // words z, w
  const __m256i lane = _mm256_set_epi64x(3, 2, 1, 0);
  for (int g = 0; g < kPhiloxBlock; g += 4 * kVec) {
    __m256i e[kVec];
    for (int v = 0; v < kVec; ++v)
      e[v] = _mm256_add_epi64(_mm256_set1_epi64x(static_cast<int64_t>(first + g + 4 * v)), lane);
    philox_lanes_avx2<kVec>(e, zw.z, zw.w, seed, lo + g, hi + g);
  }
}

// Gathered shape: full groups of kVec vectors, then the rest as one
// zero-padded group whose spare lanes are computed and dropped. The rounds are
// latency-bound, so a padded group costs about what one vector would (about
// four scalar draws): fewer than kFewScalar left are drawn one by one.
constexpr int64_t kFewScalar = 4;

__attribute__((target("avx512f"))) inline void philox_gather_avx512(
    uint64_t seed, uint64_t offset, uint32_t sub_stream, const uint64_t* el, int64_t n,
    uint64_t* lo, uint64_t* hi) {
  constexpr int kVec = 4, kGroup = 8 * kVec;
  const U32x4 zw = philox_counter(offset, sub_stream, 0);  // words z, w
  int64_t j = 0;
  for (; j + kGroup <= n; j += kGroup) {
    __m512i e[kVec];
    for (int v = 0; v < kVec; ++v) e[v] = _mm512_loadu_si512(el + j + 8 * v);
    philox_lanes_avx512<kVec>(e, zw.z, zw.w, seed, lo + j, hi + j);
  }
  if (n - j < kFewScalar)
    return philox_gather_scalar(seed, offset, sub_stream, el + j, n - j, lo + j, hi + j);
  alignas(64) uint64_t tel[kGroup] = {}, tlo[kGroup], thi[kGroup];
  std::memcpy(tel, el + j, sizeof(uint64_t) * (n - j));
  __m512i e[kVec];
  for (int v = 0; v < kVec; ++v) e[v] = _mm512_load_si512(tel + 8 * v);
  philox_lanes_avx512<kVec>(e, zw.z, zw.w, seed, tlo, thi);
  std::memcpy(lo + j, tlo, sizeof(uint64_t) * (n - j));
  std::memcpy(hi + j, thi, sizeof(uint64_t) * (n - j));
}

__attribute__((target("avx2"))) inline void philox_gather_avx2(
    uint64_t seed, uint64_t offset, uint32_t sub_stream, const uint64_t* el, int64_t n,
    uint64_t* lo, uint64_t* hi) {
  constexpr int kVec = 2, kGroup = 4 * kVec;
  const U32x4 zw = philox_counter(offset, sub_stream, 0);  // words z, w
  int64_t j = 0;
  for (; j + kGroup <= n; j += kGroup) {
    __m256i e[kVec];
    for (int v = 0; v < kVec; ++v)
      e[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(el + j + 4 * v));
    philox_lanes_avx2<kVec>(e, zw.z, zw.w, seed, lo + j, hi + j);
  }
  if (n - j < kFewScalar)
    return philox_gather_scalar(seed, offset, sub_stream, el + j, n - j, lo + j, hi + j);
  alignas(32) uint64_t tel[kGroup] = {}, tlo[kGroup], thi[kGroup];
  std::memcpy(tel, el + j, sizeof(uint64_t) * (n - j));
  __m256i e[kVec];
  for (int v = 0; v < kVec; ++v)
    e[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(tel + 4 * v));
  philox_lanes_avx2<kVec>(e, zw.z, zw.w, seed, tlo, thi);
  std::memcpy(lo + j, tlo, sizeof(uint64_t) * (n - j));
  std::memcpy(hi + j, thi, sizeof(uint64_t) * (n - j));
}
#endif  // DMMD_PHILOX_X86

enum class PhiloxIsa { kScalar, kAvx2, kAvx512 };

// Widest path this CPU runs, capped by DMMD_EXT_CPU_ISA; chosen once.
inline PhiloxIsa philox_isa() {
  static const PhiloxIsa isa = [] {
    const char* cap = std::getenv("DMMD_EXT_CPU_ISA");
    const bool scalar_only = cap && std::strcmp(cap, "scalar") == 0;
    const bool avx2_max = cap && std::strcmp(cap, "avx2") == 0;
#if DMMD_PHILOX_X86
    __builtin_cpu_init();
    if (!scalar_only && !avx2_max && __builtin_cpu_supports("avx512f"))
      return PhiloxIsa::kAvx512;
    if (!scalar_only && __builtin_cpu_supports("avx2")) return PhiloxIsa::kAvx2;
#else
    (void)scalar_only;
    (void)avx2_max;
#endif
    return PhiloxIsa::kScalar;
  }();
  return isa;
}

inline PhiloxBlockFn philox_block_fn() {
  switch (philox_isa()) {
#if DMMD_PHILOX_X86
    case PhiloxIsa::kAvx512: return &philox_block_avx512;
    case PhiloxIsa::kAvx2: return &philox_block_avx2;
#endif
    default: return &philox_block_scalar;
  }
}

inline PhiloxGatherFn philox_gather_fn() {
  switch (philox_isa()) {
#if DMMD_PHILOX_X86
    case PhiloxIsa::kAvx512: return &philox_gather_avx512;
    case PhiloxIsa::kAvx2: return &philox_gather_avx2;
#endif
    default: return &philox_gather_scalar;
  }
}

}  // namespace cpu
}  // namespace dmmd
