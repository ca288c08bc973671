// Float math that rounds identically on the host and on the device, so that
// Gumbel scores (and hence sampled tokens) agree bitwise between the CPU and
// CUDA kernels. Library logf differs between glibc and CUDA by an ulp; here
// every operation is a single IEEE-rounded add, sub, mul or div, and device
// code uses the _rn intrinsics so that nvcc cannot fuse them into FMAs (the
// CPU build passes -ffp-contract=off for the same reason).
#pragma once
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
