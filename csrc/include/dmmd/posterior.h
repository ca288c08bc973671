// One ancestral step z_t -> z_s ~ q(z_s | z_t, x) for one position, given the
// clean token x already drawn by the row sampler (sample.h), device-agnostic.
//   masked : unmasked z_t stays (x = z_t); a masked z_t becomes x with
//            probability (a_s - a_t) / (1 - a_t) (probability 1 when a_s = 1),
//            else stays MASK.
//   uniform: q(c) ~ (A [c = z_t] + (1 - A)/K) (B [c = x] + (1 - B)/K) with
//            A = a_t / a_s (A = 1 when a_s = 0, the identity step), B = a_s,
//            sampled as a mixture: point mass at z_t with weight
//            A(1 - B)/K + AB[z_t = x], point mass at x with weight (1 - A)B/K,
//            uniform over [0, K) with total weight (1 - A)(1 - B)/K.
// Draws: Philox sub-stream kStreamPosteriorMove, element = flat position;
// words 0-1 give a 53-bit uniform for the decision / component, words 2-3
// the uniform token. A position whose x is -1 (invalid logits row) gets
// z_s = -1. Double arithmetic goes through the add64/mul64 helpers of
// detmath.h so that nvcc cannot contract it into FMAs (CPU/CUDA bitwise agreement).
#pragma once
#include "noise.h"

namespace dmmd {

// Masked process, at a position with z_t == MASK.
DMMD_HD int64_t masked_reveal(int64_t x, int64_t mask_id, double a_t, double a_s, uint64_t seed,
                              uint64_t offset, uint64_t element) {
  if (x < 0) return -1;
  if (a_s >= 1.0) return x;
  const U32x4 r = philox_draw(seed, offset, kStreamPosteriorMove, element);
  const double reveal = div64(sub64(a_s, a_t), sub64(1.0, a_t));
  return uniform_from_bits(lo64(r)) < reveal ? x : mask_id;
}

struct MixtureWeights {
  double at_z, at_x, uniform;  // unnormalized
};

DMMD_HD MixtureWeights uniform_mixture(bool z_is_x, double a_t, double a_s, int64_t K) {
  const double A = a_s > 0.0 ? div64(a_t, a_s) : 1.0;
  const double B = a_s;
  const double u = div64(1.0, static_cast<double>(K));
  const double nA = sub64(1.0, A), nB = sub64(1.0, B);
  double wz = mul64(mul64(A, nB), u);
  if (z_is_x) wz = add64(wz, mul64(A, B));
  return {wz, mul64(mul64(nA, B), u), mul64(mul64(nA, nB), u)};
}

// Uniform process, every position.
DMMD_HD int64_t uniform_move(int64_t z, int64_t x, double a_t, double a_s, int64_t K,
                             uint64_t seed, uint64_t offset, uint64_t element) {
  if (x < 0) return -1;
  const MixtureWeights w = uniform_mixture(z == x, a_t, a_s, K);
  const U32x4 r = philox_draw(seed, offset, kStreamPosteriorMove, element);
  const double total = add64(add64(w.at_z, w.at_x), w.uniform);
  const double U = mul64(uniform_from_bits(lo64(r)), total);
  if (U < w.at_z) return z;
  if (U < add64(w.at_z, w.at_x)) return x;
  return uniform_int_from_bits(hi64(r), static_cast<uint64_t>(K));
}

}  // namespace dmmd
