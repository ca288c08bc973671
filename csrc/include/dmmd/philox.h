// Philox4x32-10 (Salmon et al., SC'11), written out so that the CPU and CUDA
// builds run the very same integer arithmetic.
//
// RNG contract (docs/ARCHITECTURE.md, "Random numbers"):
//   key     = the call's 64-bit seed
//   counter = (element_lo, element_hi, block_lo, block_hi), where element is a
//             logical coordinate (flat token index, or row * ceil(V/2) + pair)
//             and block = offset / 4 + sub_stream.
// Nothing depends on thread, block or launch geometry, so CPU and CUDA give
// bitwise-identical draws for the same (seed, offset).
#pragma once
#include "common.h"

namespace dmmd {

struct U32x4 {
  uint32_t x, y, z, w;
};

DMMD_HD uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
#if defined(__CUDA_ARCH__)
  *hi = __umulhi(a, b);
  return a * b;
#else
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
#endif
}

DMMD_HD U32x4 philox4x32_10(U32x4 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
#pragma unroll
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo32(kM0, c.x, &hi0);
    const uint32_t lo1 = mulhilo32(kM1, c.z, &hi1);
    c = U32x4{hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
    k0 += kW0;
    k1 += kW1;
  }
  return c;
}

// The four words for one logical element of one sub-stream of one call.
DMMD_HD U32x4 philox_draw(uint64_t seed, uint64_t offset, uint32_t sub_stream,
                          uint64_t element) {
  const uint64_t block = (offset >> 2) + sub_stream;
  const U32x4 ctr{static_cast<uint32_t>(element),
                  static_cast<uint32_t>(element >> 32),
                  static_cast<uint32_t>(block),
                  static_cast<uint32_t>(block >> 32)};
  return philox4x32_10(ctr, static_cast<uint32_t>(seed),
                       static_cast<uint32_t>(seed >> 32));
}

}  // namespace dmmd
