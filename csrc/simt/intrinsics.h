// intrinsics.h: CUDA device functions that do not schedule: atomics, IEEE
// arithmetic with explicit rounding, conversions, bit manipulation, the fast
// approximate math, cache-hinted loads and stores, fences.
//
// The _rn arithmetic is one IEEE operation, as on the GPU, provided the
// compiler fuses nothing (build with -ffp-contract=off). The approximate
// functions (__expf, __logf, ...) are composed as the GPU composes them
// (e.g. __expf(x) = ex2.approx.ftz(x * log2 e), subnormals flushed), with an
// exact exp2/log2/sin in place of the GPU's approximate unit: close to, not
// bitwise equal to, the GPU's results.
#pragma once

#include <math.h>  // float overloads and isfinite & co in the global namespace, as CUDA has

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#pragma GCC visibility push(hidden)  // one emulator per module (simt.h)

namespace simt::detail {

template <typename T, typename F>
T read_modify_write(T* p, F f) {
  const T old = *p;
  *p = f(old);
  return old;
}

enum class Rounding { Nearest, Zero, Down, Up };

// Floating point to integer as PTX's cvt: the rounding that the suffix names,
// then saturation to the integer's range and NaN to 0 (a C++ cast is
// undefined there).
template <typename I, Rounding R>
I float_to_int(double x) {
  using L = std::numeric_limits<I>;
  const double r = R == Rounding::Nearest ? std::nearbyint(x)  // ties to even
                   : R == Rounding::Zero  ? std::trunc(x)
                   : R == Rounding::Down  ? std::floor(x)
                                          : std::ceil(x);
  if (r != r) return 0;
  if (r >= std::ldexp(1.0, L::digits)) return L::max();
  if (r <= (L::is_signed ? -std::ldexp(1.0, L::digits) : 0.0)) return L::min();
  return static_cast<I>(r);
}

// The GPU's .ftz: subnormal operands and results become a zero of their sign.
inline float ftz(float x) {
  return std::fabs(x) < std::numeric_limits<float>::min() ? x * 0.0f : x;
}
inline float ex2_approx(float x) { return ftz(std::exp2(ftz(x))); }
inline float lg2_approx(float x) { return std::log2(ftz(x)); }
inline float mul_ftz(float a, float b) { return ftz(ftz(a) * ftz(b)); }

}  // namespace simt::detail

// ---------------------------------------------------------------- atomics
// Plain read-modify-writes: between scheduling points a fiber runs alone and
// blocks run one after another, so nothing interleaves. The overloads are
// CUDA's, so that a call that would not compile for the GPU does not here.

#define SIMT_ATOMIC(name, T, expr)                                               \
  inline T name(T* p, T v) {                                                     \
    return simt::detail::read_modify_write(p, [v](T o) -> T { return expr; });  \
  }
SIMT_ATOMIC(atomicAdd, int, o + v)
SIMT_ATOMIC(atomicAdd, unsigned int, o + v)
SIMT_ATOMIC(atomicAdd, unsigned long long, o + v)
SIMT_ATOMIC(atomicAdd, float, o + v)
SIMT_ATOMIC(atomicAdd, double, o + v)
SIMT_ATOMIC(atomicSub, int, o - v)
SIMT_ATOMIC(atomicSub, unsigned int, o - v)
SIMT_ATOMIC(atomicExch, int, (void(o), v))
SIMT_ATOMIC(atomicExch, unsigned int, (void(o), v))
SIMT_ATOMIC(atomicExch, unsigned long long, (void(o), v))
SIMT_ATOMIC(atomicExch, float, (void(o), v))
SIMT_ATOMIC(atomicMin, int, v < o ? v : o)
SIMT_ATOMIC(atomicMin, unsigned int, v < o ? v : o)
SIMT_ATOMIC(atomicMin, long long, v < o ? v : o)
SIMT_ATOMIC(atomicMin, unsigned long long, v < o ? v : o)
SIMT_ATOMIC(atomicMax, int, v > o ? v : o)
SIMT_ATOMIC(atomicMax, unsigned int, v > o ? v : o)
SIMT_ATOMIC(atomicMax, long long, v > o ? v : o)
SIMT_ATOMIC(atomicMax, unsigned long long, v > o ? v : o)
SIMT_ATOMIC(atomicAnd, int, o & v)
SIMT_ATOMIC(atomicAnd, unsigned int, o & v)
SIMT_ATOMIC(atomicAnd, unsigned long long, o & v)
SIMT_ATOMIC(atomicOr, int, o | v)
SIMT_ATOMIC(atomicOr, unsigned int, o | v)
SIMT_ATOMIC(atomicOr, unsigned long long, o | v)
SIMT_ATOMIC(atomicXor, int, o ^ v)
SIMT_ATOMIC(atomicXor, unsigned int, o ^ v)
SIMT_ATOMIC(atomicXor, unsigned long long, o ^ v)
SIMT_ATOMIC(atomicInc, unsigned int, o >= v ? 0u : o + 1u)
SIMT_ATOMIC(atomicDec, unsigned int, (o == 0u || o > v) ? v : o - 1u)
#undef SIMT_ATOMIC

#define SIMT_ATOMIC_CAS(T)                                                 \
  inline T atomicCAS(T* p, T compare, T v) {                               \
    auto swap = [&](T o) { return o == compare ? v : o; };                 \
    return simt::detail::read_modify_write(p, swap);                       \
  }
SIMT_ATOMIC_CAS(int)
SIMT_ATOMIC_CAS(unsigned int)
SIMT_ATOMIC_CAS(unsigned long long)
SIMT_ATOMIC_CAS(unsigned short)
#undef SIMT_ATOMIC_CAS

// ---------------------------------------------------------------- IEEE arithmetic

inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __frsqrt_rn(float a) { return float(1.0 / std::sqrt(double(a))); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __drcp_rn(double a) { return 1.0 / a; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float rsqrtf(float a) { return 1.0f / std::sqrt(a); }
inline double rsqrt(double a) { return 1.0 / std::sqrt(a); }

// ---------------------------------------------------------------- reinterpretation

inline unsigned int __float_as_uint(float f) { return std::bit_cast<unsigned int>(f); }
inline int __float_as_int(float f) { return std::bit_cast<int>(f); }
inline float __uint_as_float(unsigned int u) { return std::bit_cast<float>(u); }
inline float __int_as_float(int i) { return std::bit_cast<float>(i); }
inline long long __double_as_longlong(double d) { return std::bit_cast<long long>(d); }
inline double __longlong_as_double(long long i) { return std::bit_cast<double>(i); }
inline int __double2hiint(double d) { return int(std::bit_cast<unsigned long long>(d) >> 32); }
inline int __double2loint(double d) { return int(std::bit_cast<unsigned long long>(d)); }
inline double __hiloint2double(int hi, int lo) {
  const auto bits = static_cast<unsigned long long>(unsigned(hi)) << 32 | unsigned(lo);
  return std::bit_cast<double>(bits);
}

// ---------------------------------------------------------------- conversions

#define SIMT_CVT_ROUNDED(from, F, to, I, suffix, R)                      \
  inline I __##from##2##to##_##suffix(F x) {                             \
    return simt::detail::float_to_int<I, simt::detail::Rounding::R>(x); \
  }
#define SIMT_CVT(from, F, to, I)                \
  SIMT_CVT_ROUNDED(from, F, to, I, rn, Nearest) \
  SIMT_CVT_ROUNDED(from, F, to, I, rz, Zero)    \
  SIMT_CVT_ROUNDED(from, F, to, I, rd, Down)    \
  SIMT_CVT_ROUNDED(from, F, to, I, ru, Up)
SIMT_CVT(float, float, int, int)
SIMT_CVT(float, float, uint, unsigned int)
SIMT_CVT(float, float, ll, long long)
SIMT_CVT(float, float, ull, unsigned long long)
SIMT_CVT(double, double, int, int)
SIMT_CVT(double, double, uint, unsigned int)
SIMT_CVT(double, double, ll, long long)
SIMT_CVT(double, double, ull, unsigned long long)
#undef SIMT_CVT
#undef SIMT_CVT_ROUNDED

// Integer to floating point: C++'s conversions round to nearest even.
inline float __int2float_rn(int x) { return float(x); }
inline float __uint2float_rn(unsigned int x) { return float(x); }
inline float __ll2float_rn(long long x) { return float(x); }
inline float __ull2float_rn(unsigned long long x) { return float(x); }
inline double __int2double_rn(int x) { return double(x); }
inline double __uint2double_rn(unsigned int x) { return double(x); }
inline double __ll2double_rn(long long x) { return double(x); }
inline double __ull2double_rn(unsigned long long x) { return double(x); }
inline float __double2float_rn(double x) { return float(x); }

// ---------------------------------------------------------------- integer intrinsics

inline unsigned int __umulhi(unsigned int a, unsigned int b) {
  return unsigned((uint64_t(a) * b) >> 32);
}
inline int __mulhi(int a, int b) { return int((int64_t(a) * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
inline long long __mul64hi(long long a, long long b) {
  return static_cast<long long>((static_cast<__int128>(a) * b) >> 64);
}
// 24-bit operands (sign-extended for __mul24), low 32 bits of the product.
inline int __mul24(int a, int b) { return int(int64_t(a << 8 >> 8) * (b << 8 >> 8)); }
inline unsigned int __umul24(unsigned int a, unsigned int b) {
  return (a & 0xffffffu) * (b & 0xffffffu);
}
inline int __clz(int x) { return std::countl_zero(unsigned(x)); }
inline int __clzll(long long x) { return std::countl_zero(static_cast<unsigned long long>(x)); }
inline int __popc(unsigned int x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned long long __brevll(unsigned long long x) {
  x = (x >> 1 & 0x5555555555555555ull) | (x & 0x5555555555555555ull) << 1;
  x = (x >> 2 & 0x3333333333333333ull) | (x & 0x3333333333333333ull) << 2;
  x = (x >> 4 & 0x0f0f0f0f0f0f0f0full) | (x & 0x0f0f0f0f0f0f0f0full) << 4;
  return __builtin_bswap64(x);
}
inline unsigned int __brev(unsigned int x) { return unsigned(__brevll(x) >> 32); }
inline unsigned int __byte_perm(unsigned int x, unsigned int y, unsigned int s) {
  const uint64_t bytes = uint64_t(y) << 32 | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) r |= unsigned(bytes >> (8 * (s >> (4 * i) & 7)) & 0xff) << (8 * i);
  return r;
}
inline unsigned int __funnelshift_l(unsigned int lo, unsigned int hi, unsigned int shift) {
  return unsigned((uint64_t(hi) << 32 | lo) << (shift & 31) >> 32);
}
inline unsigned int __funnelshift_lc(unsigned int lo, unsigned int hi, unsigned int shift) {
  return unsigned((uint64_t(hi) << 32 | lo) << (shift < 32 ? shift : 32) >> 32);
}
inline unsigned int __funnelshift_r(unsigned int lo, unsigned int hi, unsigned int shift) {
  return unsigned((uint64_t(hi) << 32 | lo) >> (shift & 31));
}
inline unsigned int __funnelshift_rc(unsigned int lo, unsigned int hi, unsigned int shift) {
  return unsigned((uint64_t(hi) << 32 | lo) >> (shift < 32 ? shift : 32));
}
inline int __hadd(int a, int b) { return int((int64_t(a) + b) >> 1); }
inline int __rhadd(int a, int b) { return int((int64_t(a) + b + 1) >> 1); }
inline unsigned int __uhadd(unsigned int a, unsigned int b) {
  return unsigned((uint64_t(a) + b) >> 1);
}
inline unsigned int __urhadd(unsigned int a, unsigned int b) {
  return unsigned((uint64_t(a) + b + 1) >> 1);
}
inline unsigned int __sad(int x, int y, unsigned int z) {
  return unsigned(x > y ? int64_t(x) - y : int64_t(y) - x) + z;
}
inline unsigned int __usad(unsigned int x, unsigned int y, unsigned int z) {
  return (x > y ? x - y : y - x) + z;
}

// ---------------------------------------------------------------- fast math

inline float __expf(float x) {
  return simt::detail::ex2_approx(simt::detail::mul_ftz(x, 1.44269504f));  // log2 e
}
inline float __exp10f(float x) {
  return simt::detail::ex2_approx(simt::detail::mul_ftz(x, 3.32192809f));  // log2 10
}
inline float __log2f(float x) { return simt::detail::lg2_approx(x); }
inline float __logf(float x) {
  return simt::detail::mul_ftz(simt::detail::lg2_approx(x), 0.693147182f);  // ln 2
}
inline float __log10f(float x) {
  return simt::detail::mul_ftz(simt::detail::lg2_approx(x), 0.301029996f);  // log10 2
}
inline float __powf(float x, float y) {
  return simt::detail::ex2_approx(simt::detail::mul_ftz(y, simt::detail::lg2_approx(x)));
}
inline float __sinf(float x) { return simt::detail::ftz(std::sin(simt::detail::ftz(x))); }
inline float __cosf(float x) { return std::cos(simt::detail::ftz(x)); }
// x * rcp.approx.ftz(y): 0 for 2^126 < |y| < 2^128, where the reciprocal flushes.
inline float __fdividef(float x, float y) {
  return simt::detail::mul_ftz(x, simt::detail::ftz(1.0f / y));
}
inline float __tanf(float x) { return __fdividef(__sinf(x), __cosf(x)); }
inline void __sincosf(float x, float* s, float* c) { *s = __sinf(x), *c = __cosf(x); }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN: 0

// ---------------------------------------------------------------- min / max
// CUDA's global overloads (std::min/max are templates and do not mix types;
// mixed signedness converts to the unsigned type, as CUDA's do).

#define SIMT_MINMAX(R, A, B)                               \
  inline R min(A a, B b) {                                 \
    const R x = static_cast<R>(a), y = static_cast<R>(b); \
    return y < x ? y : x;                                  \
  }                                                        \
  inline R max(A a, B b) {                                 \
    const R x = static_cast<R>(a), y = static_cast<R>(b); \
    return x < y ? y : x;                                  \
  }
SIMT_MINMAX(int, int, int)
SIMT_MINMAX(unsigned int, unsigned int, unsigned int)
SIMT_MINMAX(unsigned int, int, unsigned int)
SIMT_MINMAX(unsigned int, unsigned int, int)
SIMT_MINMAX(long, long, long)
SIMT_MINMAX(unsigned long, unsigned long, unsigned long)
SIMT_MINMAX(unsigned long, long, unsigned long)
SIMT_MINMAX(unsigned long, unsigned long, long)
SIMT_MINMAX(long long, long long, long long)
SIMT_MINMAX(unsigned long long, unsigned long long, unsigned long long)
SIMT_MINMAX(unsigned long long, long long, unsigned long long)
SIMT_MINMAX(unsigned long long, unsigned long long, long long)
#undef SIMT_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double min(double a, float b) { return fmin(a, b); }
inline double max(double a, float b) { return fmax(a, b); }

// ---------------------------------------------------------------- memory

template <typename T> T __ldg(const T* p) { return *p; }
template <typename T> T __ldca(const T* p) { return *p; }
template <typename T> T __ldcg(const T* p) { return *p; }
template <typename T> T __ldcs(const T* p) { return *p; }
template <typename T> T __ldlu(const T* p) { return *p; }
template <typename T> T __ldcv(const T* p) { return *p; }
template <typename T> void __stwb(T* p, T v) { *p = v; }
template <typename T> void __stcg(T* p, T v) { *p = v; }
template <typename T> void __stcs(T* p, T v) { *p = v; }
template <typename T> void __stwt(T* p, T v) { *p = v; }

// Blocks do not run concurrently: fences only keep the compiler's order.
inline void __threadfence_block() { std::atomic_signal_fence(std::memory_order_seq_cst); }
inline void __threadfence() { std::atomic_signal_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { std::atomic_signal_fence(std::memory_order_seq_cst); }

#pragma GCC visibility pop
