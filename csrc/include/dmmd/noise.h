// From Philox bits to the random quantities the kernels use. All transforms
// are device-agnostic and deterministic (detmath.h), so CPU and CUDA agree
// bitwise. The Python reference (dmmd_ext/reference/noise.py) states the same
// transforms in float64.
#pragma once
#include "detmath.h"
#include "philox.h"

namespace dmmd {

DMMD_HD uint64_t lo64(U32x4 r) { return (static_cast<uint64_t>(r.y) << 32) | r.x; }
DMMD_HD uint64_t hi64(U32x4 r) { return (static_cast<uint64_t>(r.w) << 32) | r.z; }

// Exp(1) from 64 random bits k, with full float relative precision in both
// tails. v = (k + 1/2) 2^-64 is never 0 or 1; E = -log(1 - v). For v < 1/2
// use log1p(-v) (tiny E for tiny v); otherwise 1 - v = (~k + 1/2) 2^-64 is
// formed exactly from the complement bits (large E). E lies in
// [2^-65, 45.1], so a Gumbel -log(E) reaches 45.05 instead of float32's
// 24-bit ceiling of 16.6.
DMMD_HD float exponential_from_bits(uint64_t k) {
  constexpr float kTwoPowMinus64 = 5.42101086242752217e-20f;
  if ((k >> 63) == 0) {
    const float v = dmul(dadd(static_cast<float>(static_cast<int64_t>(k)), 0.5f),
                         kTwoPowMinus64);
    return -det_log1p(-v);
  }
  const float w = dmul(dadd(static_cast<float>(static_cast<int64_t>(~k)), 0.5f),
                       kTwoPowMinus64);
  return -det_log(w);
}

DMMD_HD float gumbel_from_bits(uint64_t k) { return -det_log(exponential_from_bits(k)); }

// Uniform in (0, 1) with 53-bit resolution, for Bernoulli decisions.
DMMD_HD double uniform_from_bits(uint64_t k) {
  return (static_cast<double>(k >> 11) + 0.5) * 1.1102230246251565e-16;  // 2^-53
}

// Uniform integer in [0, n): the high word of the 128-bit product k * n
// (bias below 2^-64 * n).
DMMD_HD int64_t uniform_int_from_bits(uint64_t k, uint64_t n) {
#if defined(__CUDA_ARCH__)
  return static_cast<int64_t>(__umul64hi(k, n));
#else
  return static_cast<int64_t>((static_cast<unsigned __int128>(k) * n) >> 64);
#endif
}

}  // namespace dmmd
