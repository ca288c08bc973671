// Float math that rounds identically on the host and on the device, so that
// Gumbel scores (and hence sampled tokens) agree bitwise between the CPU and
// CUDA kernels. Library logf differs between glibc and CUDA by an ulp; here
// every operation is a single IEEE-rounded add, sub, mul or div, and device
// code uses the _rn intrinsics so that nvcc cannot fuse them into FMAs (the
// CPU build passes -ffp-contract=off for the same reason).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.h"

namespace dmmd {

#if defined(__CUDA_ARCH__)
DMMD_HD float dadd(float a, float b) { return __fadd_rn(a, b); }
DMMD_HD float dsub(float a, float b) { return __fsub_rn(a, b); }
DMMD_HD float dmul(float a, float b) { return __fmul_rn(a, b); }
DMMD_HD float ddiv(float a, float b) { return __fdiv_rn(a, b); }
DMMD_HD uint32_t f2u(float f) { return __float_as_uint(f); }
DMMD_HD float u2f(uint32_t u) { return __uint_as_float(u); }
#else
DMMD_HD float dadd(float a, float b) { return a + b; }
DMMD_HD float dsub(float a, float b) { return a - b; }
DMMD_HD float dmul(float a, float b) { return a * b; }
DMMD_HD float ddiv(float a, float b) { return a / b; }
DMMD_HD uint32_t f2u(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}
DMMD_HD float u2f(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}
#endif

// The same for double (posterior mixture weights).
#if defined(__CUDA_ARCH__)
DMMD_HD double add64(double a, double b) { return __dadd_rn(a, b); }
DMMD_HD double sub64(double a, double b) { return __dsub_rn(a, b); }
DMMD_HD double mul64(double a, double b) { return __dmul_rn(a, b); }
DMMD_HD double div64(double a, double b) { return __ddiv_rn(a, b); }
#else
DMMD_HD double add64(double a, double b) { return a + b; }
DMMD_HD double sub64(double a, double b) { return a - b; }
DMMD_HD double mul64(double a, double b) { return a * b; }
DMMD_HD double div64(double a, double b) { return a / b; }
#endif

#if defined(__CUDA_ARCH__)
DMMD_HD uint64_t d2u(double d) { return static_cast<uint64_t>(__double_as_longlong(d)); }
DMMD_HD double u2d(uint64_t u) { return __longlong_as_double(static_cast<long long>(u)); }
#else
DMMD_HD uint64_t d2u(double d) {
  uint64_t u;
  std::memcpy(&u, &d, sizeof(u));
  return u;
}
DMMD_HD double u2d(uint64_t u) {
  double d;
  std::memcpy(&d, &u, sizeof(d));
  return d;
}
#endif

// exp in double from single IEEE operations, so the top-p masses (sample.h)
// have the same bits on host and device (< 1 ulp: 0.82 measured against
// mpmath; dmmd_ext/reference/sampling.py states the same operations).
// Cody-Waite: k = nearest integer to x / ln2 (the 1.5 * 2^52 shifter rounds
// and leaves k in the low bits), r + c = x - k ln2 with kLn2Hi * k exact and
// c the rounding error of r; exp(r) = 1 + (r + (r^2 q(r) + c)), q the Taylor
// series 1/2! + r/3! + ... + r^11/13! (truncation < 5e-18 for |r| <= ln2/2);
// 2^k is applied as two exact powers of two, so a subnormal result is rounded
// once. Outside [-746, 710] the result is selected (0, +inf; NaN stays NaN)
// with bit masks after the computation: branch-free, so the CPU loop
// vectorizes (a clamp of x before it let GCC thread a constant path).
DMMD_HD double det_exp64(double x) {
  constexpr double kInvLn2 = 0x1.71547652b82fep+0;
  constexpr double kLn2Hi = 0x1.62e42fee00000p-1;  // 21 trailing zero bits: k * kLn2Hi exact
  constexpr double kLn2Lo = 0x1.a39ef35793c76p-33;
  constexpr double kShift = 0x1.8p52;
  const double t = add64(mul64(x, kInvLn2), kShift);
  const double kd = sub64(t, kShift);
  const uint64_t kb = d2u(t) - d2u(kShift);  // k, two's complement
  const double hi = sub64(x, mul64(kd, kLn2Hi));  // exact (Sterbenz)
  const double lo = mul64(kd, kLn2Lo);
  const double r = sub64(hi, lo);
  const double c = sub64(sub64(hi, r), lo);
  double q = 0x1.6124613a86d09p-33;  // 1/13!
  q = add64(mul64(q, r), 0x1.1eed8eff8d898p-29);
  q = add64(mul64(q, r), 0x1.ae64567f544e4p-26);
  q = add64(mul64(q, r), 0x1.27e4fb7789f5cp-22);
  q = add64(mul64(q, r), 0x1.71de3a556c734p-19);
  q = add64(mul64(q, r), 0x1.a01a01a01a01ap-16);
  q = add64(mul64(q, r), 0x1.a01a01a01a01ap-13);
  q = add64(mul64(q, r), 0x1.6c16c16c16c17p-10);
  q = add64(mul64(q, r), 0x1.1111111111111p-7);
  q = add64(mul64(q, r), 0x1.5555555555555p-5);
  q = add64(mul64(q, r), 0x1.5555555555555p-3);
  q = add64(mul64(q, r), 0.5);  // 1/2!
  const double y = add64(1.0, add64(r, add64(mul64(mul64(r, r), q), c)));
  // k = h1 + h2, h1 = floor(k / 2), in unsigned arithmetic (valid for
  // -1077 <= k <= 1024, i.e. x in [-746, 710]; garbage elsewhere, masked below)
  const uint64_t h1 = ((kb + 2048u) >> 1) - 1024u;
  const uint64_t h2 = kb - h1;
  const double e = mul64(mul64(y, u2d((h1 + 1023u) << 52)), u2d((h2 + 1023u) << 52));
  const uint64_t under = uint64_t{0} - static_cast<uint64_t>(x < -746.0);  // -inf too
  const uint64_t over = uint64_t{0} - static_cast<uint64_t>(x > 710.0);    // +inf too
  const uint64_t nan = uint64_t{0} - static_cast<uint64_t>(x != x);
  uint64_t b = d2u(e) & ~under;                     // +0.0
  b = (b & ~over) | (uint64_t{0x7ff0000000000000} & over);  // +inf
  b = (b & ~nan) | (d2u(x) & nan);
  return u2d(b);
}

// Probability masses as unsigned 64-bit fixed point, m = round(e 2^S) (ties
// to even) for e in [0, 1], with S = mass_scale_bits(V) = min(52, 62 -
// bit_width(V)): a row of V masses sums to at most V 2^S < 2^62, so integer
// sums are exact in any order (CUDA's shared-memory atomics included), and
// e 2^S <= 2^52 is rounded exactly by adding 2^52 (the integer is then the
// low mantissa bits).
DMMD_HD int mass_scale_bits(int64_t V) {
  int w = 0;
  for (uint64_t v = static_cast<uint64_t>(V); v != 0; v >>= 1) ++w;
  return w > 10 ? 62 - w : 52;
}
DMMD_HD double mass_scale(int64_t V) {  // 2^S
  return u2d(static_cast<uint64_t>(1023 + mass_scale_bits(V)) << 52);
}
DMMD_HD uint64_t mass_fixed(double e, double scale) {
  constexpr double kTwo52 = 0x1p52;
  return d2u(add64(mul64(e, scale), kTwo52)) - d2u(kTwo52);
}

// Target of a top-p selection over fixed-point masses with integer total:
// the smallest integer >= top_p * total, i.e. ceil(top_p * double(total))
// (one rounding of the conversion, one of the product), at most total.
DMMD_HD uint64_t mass_target(uint64_t total, double top_p) {
  const double t = ceil(mul64(top_p, static_cast<double>(total)));
  const uint64_t u = static_cast<uint64_t>(t);
  return u < total ? u : total;
}

// One radix pass of a top-p select over integer bucket masses, highest bucket
// first: returns the highest bucket b with above + mass(buckets >= b) >=
// target and adds the mass of the buckets above b to `above`. A bucket of
// mass 0 is never chosen (the cumulative mass cannot cross target there).
// Integer sums are exact, so the chosen bucket's mass is the next pass's
// total and every pass reaches its target; the fallback (the lowest
// non-empty bucket) only guards against misuse.
template <int kBuckets>
DMMD_HD int pick_mass_bucket(const uint64_t* mass, uint64_t& above, uint64_t target) {
  int last = -1;
  uint64_t acc = above;
  for (int b = kBuckets - 1; b >= 0; --b) {
    if (mass[b] == 0) continue;
    if (acc + mass[b] >= target) {
      above = acc;
      return b;
    }
    acc += mass[b];
    last = b;
  }
  if (last < 0) return 0;
  above = acc - mass[last];
  return last;
}

// Natural log, < 1 ulp on positive normal and subnormal floats. Reduction
// x = 2^e * m with m in [sqrt(1/2), sqrt(2)), then the odd series of
// log((1+s)/(1-s)) in s = f / (2 + f) with f = m - 1 (minimax coefficients,
// as in the classic fdlibm single-precision log).
DMMD_HD float det_log(float x) {
  if (!(x > 0.0f)) return x == 0.0f ? -u2f(0x7f800000u) : u2f(0x7fc00000u);
  uint32_t b = f2u(x);
  if (b >= 0x7f800000u) return x;  // +inf (NaN handled above)
  int e = 0;
  if (b < 0x00800000u) {  // subnormal: scale into the normal range
    x = dmul(x, 33554432.0f);  // 2^25
    b = f2u(x);
    e = -25;
  }
  e += static_cast<int>(b >> 23) - 127;
  float m = u2f((b & 0x007fffffu) | 0x3f800000u);  // [1, 2)
  if (m > 1.41421356f) {
    m = dmul(m, 0.5f);
    e += 1;
  }
  const float f = dsub(m, 1.0f);
  const float s = ddiv(f, dadd(2.0f, f));
  const float z = dmul(s, s);
  const float w = dmul(z, z);
  constexpr float kLg1 = 0.66666662693f, kLg2 = 0.40000972152f;
  constexpr float kLg3 = 0.28498786688f, kLg4 = 0.24279078841f;
  const float t1 = dmul(w, dadd(kLg2, dmul(w, kLg4)));
  const float t2 = dmul(z, dadd(kLg1, dmul(w, kLg3)));
  const float r = dadd(t2, t1);
  const float hfsq = dmul(dmul(0.5f, f), f);
  const float de = static_cast<float>(e);
  constexpr float kLn2Hi = 6.9313812256e-01f, kLn2Lo = 9.0580006145e-06f;
  // de * kLn2Hi is exact: kLn2Hi has 16 trailing zero bits and |e| < 2^8.
  const float inner = dadd(dmul(s, dadd(hfsq, r)), dmul(de, kLn2Lo));
  return dsub(dmul(de, kLn2Hi), dsub(dsub(hfsq, inner), f));
}

// log(1 + x) for x > -1, accurate for tiny |x| (Goldberg's correction).
DMMD_HD float det_log1p(float x) {
  const float u = dadd(1.0f, x);
  if (u == 1.0f) return x;
  return dmul(det_log(u), ddiv(x, dsub(u, 1.0f)));
}

}  // namespace dmmd
