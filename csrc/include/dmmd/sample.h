// Device-agnostic pieces of the categorical row sampler (Gumbel-max with
// exact-tail noise), shared by the CPU row sampler (cpu/sample_row.h) and the
// CUDA one (cuda/sample_row.cuh), which sample_categorical and posterior_step
// both call.
//
// Semantics of one row (documented in docs/ARCHITECTURE.md, "Sampling", and
// stated in dmmd_ext/reference/sampling.py):
//   candidates  = classes v != exclude;
//   invalid row = NaN among the candidates' logits, or no candidate with
//                 l_v > -inf  -> the row returns -1;
//   lmax        = the largest candidate logit;
//   +inf        = if lmax == +inf, the draw is uniform among the classes with
//                 l_v == +inf (score = Gumbel noise alone) and top-k / top-p
//                 are moot;
//   x_v         = (l_v - lmax) * (1 / T) in float64 (1 / T rounded once, on
//                 the host), rounded once to float32: the "centred logit"
//                 (centred_logit), <= 0, exactly 0 at lmax;
//   top-k       = keep x_v >= the k-th largest x (ties at the threshold kept);
//   top-p       = over the kept classes, keep x_v >= x* where x* is the largest
//                 value whose upper set {x >= x*} holds mass >= target (ties
//                 kept); masses are integers m_v = round(det_exp64(x_v) 2^S),
//                 S = min(52, 62 - bit_width(V)), and target = min(total,
//                 ceil(top_p * double(total))) for the integer total of the
//                 kept masses (topp_mass, mass_target: exact integer sums, so
//                 CPU and CUDA agree bitwise);
//   draw        = argmax over kept v of dadd(x_v, g_v), lowest index on ties.
// Centring before scaling is what keeps the draw an exact Gumbel-max draw at
// every scale: l / T formed first rounds away the noise once |l / T| is about
// 1e7 (ties then go to the lowest index), and overflows for tiny T; x_v <= 0
// cannot overflow, and a class whose x_v rounds to -inf has probability below
// e^-1e38 next to the maximum's.
// Noise for (row, v): Philox sub-stream 0, element row * ceil(V/2) + v/2,
// words 0-1 for even v and words 2-3 for odd v (one Philox call per pair).
#pragma once
#include "noise.h"

namespace dmmd {

// Sampling parameters after host-side checks.
struct SampleParams {
  double inv_temperature;  // 1 / T in float64
  int64_t top_k;    // 0 or >= number of classes: off
  double top_p;     // 1: off
  int64_t exclude;  // -1: none
  uint64_t seed;
  uint64_t offset;
};

// The running best of a Gumbel-max scan. tier 1 = a +inf scaled logit (score
// is its noise alone), tier 0 = finite (score = x + g), tier -1 = nothing yet.
struct Best {
  int32_t tier;
  float score;
  int64_t index;
};

DMMD_HD Best best_none() { return Best{-1, 0.0f, -1}; }

DMMD_HD bool better(const Best& a, const Best& b) {
  if (a.tier != b.tier) return a.tier > b.tier;
  if (a.tier < 0) return false;
  if (a.score != b.score) return a.score > b.score;
  return a.index < b.index;  // argmax ties -> lowest index
}

DMMD_HD Best best_of(const Best& a, const Best& b) { return better(b, a) ? b : a; }

DMMD_HD uint64_t pairs_per_row(int64_t V) { return (static_cast<uint64_t>(V) + 1) / 2; }

// Philox words for the pair (v, v+1) of a row, v even.
DMMD_HD U32x4 gumbel_words(const SampleParams& p, uint64_t row, uint64_t half_v, uint64_t pair) {
  return philox_draw(p.seed, p.offset, kStreamGumbel, row * half_v + pair);
}

DMMD_HD float gumbel_of(const U32x4& w, bool odd) {
  return gumbel_from_bits(odd ? hi64(w) : lo64(w));
}

// x = (l - lmax) * (1 / T) (see the top of this file): one float64
// subtraction (exact unless the exponents of l and lmax are more than 29
// apart, and then within 1/32 ulp of l or -lmax, so rounding it to float32
// gives the float32 subtraction's bits) and one multiplication, then one
// rounding to float32; IEEE operations, so CPU, CUDA and the reference agree
// bit for bit. l = -inf gives -inf, NaN stays NaN. Callers handle
// lmax = -inf (an invalid row) before calling.
DMMD_HD float centred_logit(float l, float lmax, double inv_temperature) {
  const float inf = u2f(0x7f800000u);
  if (lmax == inf) return l == inf ? inf : (l != l ? l : -inf);
  return static_cast<float>(mul64(sub64(static_cast<double>(l), static_cast<double>(lmax)),
                                  inv_temperature));
}

// Offer class v with centred logit x (> -inf, kept) and noise g to the scan.
DMMD_HD void offer(Best& b, float x, float g, int64_t v) {
  const bool inf = x == u2f(0x7f800000u);
  const Best c{inf ? 1 : 0, inf ? g : dadd(x, g), v};
  if (better(c, b)) b = c;
}

DMMD_HD int clz64(uint64_t k) {
#if defined(__CUDA_ARCH__)
  return __clzll(static_cast<long long>(k));
#else
  return k == 0 ? 64 : __builtin_clzll(k);
#endif
}

// Upper bound on gumbel_from_bits(k) from the leading zeros of k:
// E = -log(1 - v) >= v = (k + 1/2) 2^-64 >= 2^-(clz(k) + 1), so
// g = -log(E) <= (clz(k) + 1) ln 2; the constant is padded above ln 2 and by
// 1e-3 to cover float rounding of the transform.
DMMD_HD float gumbel_bound(uint64_t k) {
  return dadd(dmul(static_cast<float>(clz64(k) + 1), 0.6932f), 1e-3f);
}

// Offer class v (scaled logit x > -inf, noise bits k) to the scan, skipping
// the two logs of the transform when the bound shows it cannot win (an equal
// score loses too: the scan visits classes in ascending order per thread).
// Pruning only: the outcome equals offer() with the exact noise.
DMMD_HD void offer_bits(Best& b, float x, uint64_t k, int64_t v) {
  const bool inf = x == u2f(0x7f800000u);
  if (b.tier >= 0) {
    if (!inf && b.tier == 1) return;
    const float bound = gumbel_bound(k);
    if ((inf ? 1 : 0) == b.tier && (inf ? bound : dadd(x, bound)) <= b.score) return;
  }
  offer(b, x, gumbel_from_bits(k), v);
}

// A Gumbel draw never exceeds 45.06 (noise.h); a class whose x + 46 cannot
// beat the current finite best (found at a lower index) is skipped without
// drawing its noise. This prunes work only: the result equals scoring every
// class.
constexpr float kGumbelBound = 46.0f;

DMMD_HD bool may_win(const Best& b, float x) {
  return b.tier < 0 || (b.tier == 0 && !(dadd(x, kGumbelBound) <= b.score)) ||
         x == u2f(0x7f800000u);
}

// Monotone map float -> uint32: a < b  <=>  key(a) < key(b) (for non-NaN).
// -0.0 is folded into +0.0 so that key order agrees with float comparison
// (x >= threshold keeps both zeros), as in moment_loss.h's float_key.
DMMD_HD uint32_t ord_key(float f) {
  uint32_t u = f2u(f);
  if (u == 0x80000000u) u = 0u;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

DMMD_HD float key_float(uint32_t k) { return u2f((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k); }

// Radix select, most significant digit first, 8 bits per pass (4 passes).
constexpr int kRadixBits = 8;
constexpr int kRadixBuckets = 1 << kRadixBits;
constexpr int kRadixPasses = 32 / kRadixBits;

DMMD_HD int radix_shift(int pass) { return 32 - kRadixBits * (pass + 1); }
DMMD_HD uint32_t radix_digit(uint32_t key, int pass) {
  return (key >> radix_shift(pass)) & (kRadixBuckets - 1);
}
// Does key share the digits fixed so far (prefix holds digits of passes < pass)?
DMMD_HD bool radix_match(uint32_t key, uint32_t prefix, int pass) {
  if (pass == 0) return true;
  const int s = radix_shift(pass - 1);
  return (key >> s) == (prefix >> s);
}

// Top-k step: counts per bucket of the keys still in play; k = rank wanted
// among them (1 = largest). Returns the bucket holding the k-th largest and
// lowers k by the count of the buckets above it.
template <typename C>
DMMD_HD int pick_bucket_count(const C* count, int64_t& k) {
  for (int b = kRadixBuckets - 1; b >= 0; --b) {
    if (static_cast<int64_t>(count[b]) >= k) return b;
    k -= static_cast<int64_t>(count[b]);
  }
  return 0;  // unreachable when k <= the total
}

// Top-p mass of a kept class (scaled logit x, row maximum xmax) in the fixed
// point of detmath.h: m = round(det_exp64(x - xmax) 2^S), S = mass_scale_bits(V),
// scale = 2^S. x - xmax is one double subtraction; det_exp64 of a value <= 0
// is <= 1, so a row's masses sum to < 2^62 and the sums are exact in any order.
DMMD_HD uint64_t topp_mass(float x, float xmax, double scale) {
  return mass_fixed(det_exp64(sub64(static_cast<double>(x), static_cast<double>(xmax))), scale);
}

// Top-p step over the integer masses of the keys still in play (`above`: the
// mass of the keys above them; target = mass_target(total, top_p)): the
// bucket holding the threshold (detmath.h, pick_mass_bucket).
DMMD_HD int pick_bucket_mass(const uint64_t* mass, uint64_t& above, uint64_t target) {
  return pick_mass_bucket<kRadixBuckets>(mass, above, target);
}

}  // namespace dmmd
