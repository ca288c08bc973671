// Philox4x32-10 (Salmon et al., SC'11), written out so that the CPU and CUDA
// builds run the very same integer arithmetic.
//
// RNG contract (docs/ARCHITECTURE.md, "Random numbers"):
//   key     = the call's 64-bit seed
//   counter = philox_counter(offset, sub_stream, element)
//           = (element_lo, element_hi, block_lo, 0x80000000 | block_hi),
//             where element is a logical coordinate (flat token index, or
//             row * ceil(V/2) + pair) and block = offset * 4 + sub_stream.
// `offset` counts calls: call `offset` owns the four blocks
// [4 offset, 4 offset + 4), one per sub-stream (an op uses at most
// kSubStreamsPerCall), so two calls with different offsets never share a
// random number. Offsets are < 2^61 (kMaxOffset), so block < 2^63.
// Nothing depends on thread, block or launch geometry, so CPU and CUDA give
// bitwise-identical draws for the same (seed, offset).
//
// A CUDA generator's Philox offset counts 32-bit draws (a multiple of 4); an
// op takes kGeneratorIncrement of them per call and uses the call index
// offset / 4 (rng_cuda.cuh), which leaves its four blocks to itself.
//
// Why the top bit of word w: torch's own Philox users on the same generator
// (curand_init(seed, subsequence, offset) in its CUDA kernels, at::Philox4_32)
// use the same key and the counter (offset/4 + calls, subsequence), i.e.
// (x, y) = a 64-bit offset count and (z, w) = a thread / subsequence index.
// Without the tag our (element, block) could land on exactly those counters
// (element <-> offset/4 + calls, block <-> thread index), and our draws would
// replay the bits of dropout or torch.rand. torch's w is the high word of a
// subsequence (a thread index, far below 2^63), and its (x, y) count never
// carries into z, w, so its w always has the top bit clear; ours always has it
// set: the two counter sets are disjoint. This is the one function that
// builds a counter; the CPU SIMD Philox (cpu/philox_simd.h) takes its z, w
// from it, and dmmd_ext/reference/noise.py (philox_counter) mirrors it.
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

// Sub-streams per call, the largest call offset, and the CUDA generator
// draws an op reserves per call (4 words per block, 4 blocks).
constexpr uint32_t kSubStreamsPerCall = 4;
constexpr uint64_t kMaxOffset = (uint64_t{1} << 61) - 1;
constexpr uint64_t kGeneratorIncrement = 4 * kSubStreamsPerCall;

// The counter of one logical element of one sub-stream of one call (see the
// top of this file). Words x, y depend only on the element and z, w only on
// (offset, sub_stream); the SIMD code relies on that split.
DMMD_HD U32x4 philox_counter(uint64_t offset, uint32_t sub_stream, uint64_t element) {
  const uint64_t block = offset * kSubStreamsPerCall + sub_stream;  // < 2^63
  return U32x4{static_cast<uint32_t>(element), static_cast<uint32_t>(element >> 32),
               static_cast<uint32_t>(block),
               0x80000000u | static_cast<uint32_t>(block >> 32)};
}

// The four words for one logical element of one sub-stream of one call.
DMMD_HD U32x4 philox_draw(uint64_t seed, uint64_t offset, uint32_t sub_stream,
                          uint64_t element) {
  return philox4x32_10(philox_counter(offset, sub_stream, element),
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

}  // namespace dmmd
