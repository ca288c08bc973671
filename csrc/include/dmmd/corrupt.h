// Forward corruption z_t ~ q(z_t | x0), one token at a time (device-agnostic).
//   masked : z = MASK with probability 1 - a_t, else x0
//   uniform: z = Uniform{0..K-1} with probability 1 - a_t, else x0
// Draws: one Philox block per token (element = flat token index); words 0-1
// decide, words 2-3 pick the replacement token.
#pragma once
#include "noise.h"

namespace dmmd {

// Whether a token is corrupted (probability 1 - a_t) given lo64 of its
// Philox words and 1 - a_t. The CPU kernel draws the words of many tokens at
// once (cpu/philox_simd.h) and applies this branch-free over a block for the
// masked process.
DMMD_HD bool corrupt_moves(uint64_t lo, double one_minus_alpha) {
  return uniform_from_bits(lo) < one_minus_alpha;
}

// The decision for one token given its Philox words (lo64 decides, hi64 picks
// the replacement).
DMMD_HD int64_t corrupt_from_bits(int64_t x0, double alpha, int64_t process, int64_t mask_id,
                                  int64_t vocab_size, uint64_t lo, uint64_t hi) {
  if (!corrupt_moves(lo, 1.0 - alpha)) return x0;
  if (process == kMasked) return mask_id;
  return uniform_int_from_bits(hi, static_cast<uint64_t>(vocab_size));
}

DMMD_HD int64_t corrupt_token(int64_t x0, double alpha, bool keep, int64_t process,
                              int64_t mask_id, int64_t vocab_size, uint64_t seed,
                              uint64_t offset, uint64_t element) {
  if (keep) return x0;
  const U32x4 r = philox_draw(seed, offset, kStreamCorruptDecision, element);
  return corrupt_from_bits(x0, alpha, process, mask_id, vocab_size, lo64(r), hi64(r));
}

}  // namespace dmmd
