// Per-row math of the fused logit-moment losses, shared by cpu/moment_loss.cpp
// and cuda/moment_loss.cu (device-agnostic: no host-only or device-only API).
//
// Online softmax (Milakov & Gimelshein 2018): each logit stream keeps a running
// maximum m and a sum s = sum exp(x - shift(m)); shift(-inf) = 0 so that a
// stream that has only seen -inf holds s = 0 without computing -inf - -inf.
// The cross terms of the losses (sum_j p_j (A_j - T~_j), ...) are kept relative
// to the current maxima, so large logits (1e4) never cancel catastrophically;
// raising a maximum shifts them by an exact correction (GenAcc::rescale).
//
// Accumulators are updated in batches: the caller first raises the maxima to
// cover a batch (a CPU chunk or one CUDA vector load), then adds its elements
// with fixed shifts. merge() combines two partial accumulators (CUDA
// reductions, CPU never needs it).
//
// Sharpened teacher: T~_j = T_j / tau - delta * [T_j < thr], thr the nucleus
// threshold in T's own units (-inf: everything inside, the top_p = 1 path).
// The nucleus is {j : T_j >= thr}; equal logits have equal probabilities, so
// every class tied with the threshold is inside. The teacher stream keeps its
// running maximum h in T's own units and forms T~_j - h / tau as
// (T_j - h) / tau - delta [T_j < thr] (sharpen_centred): the maximum is removed
// before the division by tau, so shifting every logit by a constant leaves the
// loss unchanged to the precision of the centred logits (T_j / tau formed
// first would round at the scale of |T_j| / tau), and (T_j - h) / tau <= 0
// never overflows. Its sums rescale by exp((h_old - h_new) / tau).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "common.h"
#include "detmath.h"

namespace dmmd {

// Accumulation type acc_t: float for fp32/bf16/fp16 inputs, double for fp64.
template <typename acc_t>
DMMD_HD acc_t neg_inf() {
  return -std::numeric_limits<acc_t>::infinity();
}
template <typename acc_t>
DMMD_HD acc_t nan_of() {
  return std::numeric_limits<acc_t>::quiet_NaN();
}
DMMD_HD float exp_(float x) { return expf(x); }
DMMD_HD double exp_(double x) { return exp(x); }
DMMD_HD float log_(float x) { return logf(x); }
DMMD_HD double log_(double x) { return log(x); }

// Per-row statistics saved for the backward passes (acc_t columns). Each logit
// stream keeps its shift h = max (0 if none is finite) and log of its sum
// separately: x - h is exact for nearby values, so probabilities keep full
// relative precision even with logits around 1e4.
enum GenStat : int {
  kGenHS = 0, kGenLogSS, kGenHA, kGenLogSA, kGenHT, kGenLogST, kGenThr, kGenMeanD, kGenStats
};
enum AuxStat : int {
  kAuxHA = 0, kAuxLogSA, kAuxHT, kAuxLogST, kAuxHS, kAuxLogSS, kAuxThr, kAuxStats
};

template <typename acc_t>
DMMD_HD acc_t shift_of(acc_t m) {
  return m == neg_inf<acc_t>() ? acc_t(0) : m;
}
template <typename acc_t>
DMMD_HD acc_t max_keep(acc_t a, acc_t b) {  // ignores NaN in b
  return b > a ? b : a;
}
// exp(old shift - new shift) applied to a sum: 0 if the stream saw no finite
// value before (its sum is 0 anyway; avoids 0 * inf).
template <typename acc_t>
DMMD_HD acc_t rescale_factor(acc_t m_old, acc_t m_new) {
  return m_old == neg_inf<acc_t>() ? acc_t(0) : exp_(m_old - shift_of(m_new));
}

// exp((old shift - new shift) * k): rescale_factor for a stream whose
// exponent is (x - shift) * k (the teacher's, k = 1 / tau).
template <typename acc_t>
DMMD_HD acc_t rescale_factor_k(acc_t m_old, acc_t m_new, acc_t k) {
  return m_old == neg_inf<acc_t>() ? acc_t(0) : exp_((m_old - shift_of(m_new)) * k);
}

// T~_j - h / tau for the stream shift h (T's units), k = 1 / tau.
template <typename acc_t>
DMMD_HD acc_t sharpen_centred(acc_t t, acc_t h, acc_t k, acc_t thr, acc_t delta) {
  return (t - h) * k - (t >= thr ? acc_t(0) : delta);
}

// Online log-sum-exp of exp((x - m) * k) (the nucleus's pass over T / tau,
// the maximum m in T's units).
template <typename acc_t>
struct LseAcc {
  acc_t m = neg_inf<acc_t>(), s = 0, k = 1;
  DMMD_HD void rescale(acc_t n) {
    if (!(n > m)) return;
    s *= rescale_factor_k(m, n, k);
    m = n;
  }
  DMMD_HD void merge(LseAcc o) {
    rescale(o.m);
    o.rescale(m);
    s += o.s;
  }
};

// ---- generator loss: L = w * sum_j p_j (log a_j - log t~_j)

// One element's contribution at fixed shifts (hS, hA, hT); `ex` is the exp
// to use (the CPU passes a vectorizable one). 0 * -inf := 0 where p_j = 0.
template <typename acc_t, typename Exp>
DMMD_HD void gen_add(acc_t& sS, acc_t& sA, acc_t& sT, acc_t& u, acc_t s, acc_t a, acc_t t,
                     acc_t hS, acc_t hA, acc_t hT, Exp ex) {
  const acc_t eS = ex(s - hS);
  const acc_t ha = a - hA, ht = t - hT;
  sS += eS;
  sA += ex(ha);
  sT += ex(ht);
  u += eS > acc_t(0) ? eS * (ha - ht) : acc_t(0);
}

// The T stream's maximum mT is in T's own units and its values arrive
// centred: tc_j = T~_j - hT / tau (sharpen_centred with hT = shift_of(mT)).
template <typename acc_t>
struct GenAcc {
  acc_t mS = neg_inf<acc_t>(), mA = neg_inf<acc_t>(), mT = neg_inf<acc_t>();
  acc_t sS = 0, sA = 0, sT = 0;
  acc_t u = 0;  // sum_j exp(S_j - hS) * ((A_j - hA) - tc_j), h = shift_of(m)
  acc_t k = 1;  // 1 / tau

  // Raise the maxima to (at least) the given batch maxima.
  DMMD_HD void rescale(acc_t nS, acc_t nA, acc_t nT) {
    if (!(nS > mS) && !(nA > mA) && !(nT > mT)) return;  // the common case: no new maximum
    nS = max_keep(mS, nS);
    nA = max_keep(mA, nA);
    nT = max_keep(mT, nT);
    const acc_t fS = rescale_factor(mS, nS);
    sS *= fS;
    sA *= rescale_factor(mA, nA);
    sT *= rescale_factor_k(mT, nT, k);
    const acc_t dshift = (shift_of(nA) - shift_of(mA)) - (shift_of(nT) - shift_of(mT)) * k;
    u = sS > acc_t(0) ? u * fS - sS * dshift : acc_t(0);
    mS = nS, mA = nA, mT = nT;
  }
  DMMD_HD acc_t hS() const { return shift_of(mS); }
  DMMD_HD acc_t hA() const { return shift_of(mA); }
  DMMD_HD acc_t hT() const { return shift_of(mT); }
  DMMD_HD void merge(GenAcc o) {
    rescale(o.mS, o.mA, o.mT);
    o.rescale(mS, mA, mT);
    sS += o.sS, sA += o.sA, sT += o.sT, u += o.u;
  }
  // A row with no finite logit in S, A or T~ has no defined loss: NaN.
  DMMD_HD bool defined() const {
    return mS != neg_inf<acc_t>() && mA != neg_inf<acc_t>() && mT != neg_inf<acc_t>();
  }
  DMMD_HD void store(acc_t* st) const {
    st[kGenHS] = hS(), st[kGenLogSS] = log_(sS);
    st[kGenHA] = hA(), st[kGenLogSA] = log_(sA);
    st[kGenHT] = hT(), st[kGenLogST] = log_(sT);
  }
  // sum_j p_j d_j (the unweighted loss).
  DMMD_HD acc_t mean_d() const {
    return defined() ? u / sS - log_(sA) + log_(sT) : nan_of<acc_t>();
  }
};

// dL/dS_j for one element: g w p_j (d_j - mean_d); 0 where p_j = 0. st: the
// row's GenStat columns; tc = sharpen_centred(T_j, st[kGenHT], 1 / tau, ...).
template <typename acc_t, typename Exp>
DMMD_HD acc_t gen_grad(acc_t s, acc_t a, acc_t tc, acc_t gw, const acc_t* st, Exp ex) {
  const acc_t p = ex((s - st[kGenHS]) - st[kGenLogSS]);
  const acc_t d = ((a - st[kGenHA]) - st[kGenLogSA]) - (tc - st[kGenLogST]);
  const acc_t mean_d = st[kGenMeanD];
  const acc_t g = gw * p * (d - mean_d);
  return p == acc_t(0) ? acc_t(0) : g;  // NaN p stays NaN
}

// ---- auxiliary loss: L = -w * sum_j (y_j + t~_j) log a_j
// Soft targets y = softmax(S) use the S stream; hard targets read A[target].
template <typename acc_t, typename Exp>
DMMD_HD void aux_add(acc_t& sA, acc_t& sT, acc_t& uT, acc_t a, acc_t t, acc_t hA, acc_t hT,
                     Exp ex) {
  const acc_t ha = a - hA;
  const acc_t eT = ex(t - hT);
  sA += ex(ha);
  sT += eT;
  uT += eT > acc_t(0) ? eT * ha : acc_t(0);
}
template <typename acc_t, typename Exp>
DMMD_HD void aux_add_soft(acc_t& sS, acc_t& uS, acc_t s, acc_t a, acc_t hS, acc_t hA, Exp ex) {
  const acc_t eS = ex(s - hS);
  sS += eS;
  uS += eS > acc_t(0) ? eS * (a - hA) : acc_t(0);
}

// The T stream as in GenAcc: maximum in T's units, values arrive centred.
template <typename acc_t>
struct AuxAcc {
  acc_t mA = neg_inf<acc_t>(), mT = neg_inf<acc_t>(), mS = neg_inf<acc_t>();
  acc_t sA = 0, sT = 0, sS = 0;
  acc_t uT = 0;  // sum_j exp(tc_j) * (A_j - hA), tc_j = T~_j - hT / tau
  acc_t uS = 0;  // sum_j exp(S_j - hS) * (A_j - hA)   (soft targets only)
  acc_t k = 1;   // 1 / tau

  DMMD_HD void rescale(acc_t nA, acc_t nT, acc_t nS) {
    if (!(nA > mA) && !(nT > mT) && !(nS > mS)) return;  // the common case: no new maximum
    nA = max_keep(mA, nA);
    nT = max_keep(mT, nT);
    nS = max_keep(mS, nS);
    const acc_t fT = rescale_factor_k(mT, nT, k), fS = rescale_factor(mS, nS);
    const acc_t dA = shift_of(nA) - shift_of(mA);
    sA *= rescale_factor(mA, nA);
    sT *= fT;
    sS *= fS;
    uT = sT > acc_t(0) ? uT * fT - sT * dA : acc_t(0);
    uS = sS > acc_t(0) ? uS * fS - sS * dA : acc_t(0);
    mA = nA, mT = nT, mS = nS;
  }
  DMMD_HD acc_t hA() const { return shift_of(mA); }
  DMMD_HD acc_t hT() const { return shift_of(mT); }
  DMMD_HD acc_t hS() const { return shift_of(mS); }
  DMMD_HD void merge(AuxAcc o) {
    rescale(o.mA, o.mT, o.mS);
    o.rescale(mA, mT, mS);
    sA += o.sA, sT += o.sT, sS += o.sS, uT += o.uT, uS += o.uS;
  }
  DMMD_HD void store(acc_t* st, bool soft) const {
    st[kAuxHA] = hA(), st[kAuxLogSA] = log_(sA);
    st[kAuxHT] = hT(), st[kAuxLogST] = log_(sT);
    st[kAuxHS] = soft ? hS() : acc_t(0), st[kAuxLogSS] = soft ? log_(sS) : acc_t(0);
  }
  // Unweighted loss -sum_j (y_j + t~_j) log a_j; a_tgt is A[target] (hard
  // targets) and unused for soft ones.
  DMMD_HD acc_t loss(bool soft, acc_t a_tgt) const {
    if (mA == neg_inf<acc_t>() || mT == neg_inf<acc_t>() || (soft && mS == neg_inf<acc_t>()))
      return nan_of<acc_t>();
    const acc_t log_sa = log_(sA);
    const acc_t t_term = uT / sT - log_sa;
    const acc_t y_term = soft ? uS / sS - log_sa : (a_tgt - mA) - log_sa;
    return -(y_term + t_term);
  }
};

// y_j = softmax(S)_j for soft targets.
template <typename acc_t, typename Exp>
DMMD_HD acc_t aux_soft_y(acc_t s, const acc_t* st, Exp ex) {
  return ex((s - st[kAuxHS]) - st[kAuxLogSS]);
}
// dL/dA_j = g w (2 softmax(A)_j - (y_j + t~_j)): y, t~ and softmax(A) each sum
// to one; tc = sharpen_centred(T_j, st[kAuxHT], 1 / tau, ...).
template <typename acc_t, typename Exp>
DMMD_HD acc_t aux_grad(acc_t a, acc_t tc, acc_t y, acc_t gw, const acc_t* st, Exp ex) {
  return gw * (acc_t(2) * ex((a - st[kAuxHA]) - st[kAuxLogSA]) - (y + ex(tc - st[kAuxLogST])));
}

// ---- nucleus selection on the monotone bit pattern of T
// float_key() orders floats as unsigned integers (-0.0 folded into +0.0 so that
// float equality and key equality agree); from_key() inverts it.
template <typename F>
struct KeyOf;
template <>
struct KeyOf<float> {
  using type = uint32_t;
};
template <>
struct KeyOf<double> {
  using type = uint64_t;
};
template <typename F>
using key_t = typename KeyOf<F>::type;

template <typename F>
DMMD_HD key_t<F> float_key(F x) {
  using U = key_t<F>;
  constexpr U sign = U(1) << (8 * sizeof(U) - 1);
  x += F(0);
  U b;
  memcpy(&b, &x, sizeof(U));
  return (b & sign) ? U(~b) : U(b | sign);
}
template <typename F>
DMMD_HD F from_key(key_t<F> k) {
  using U = key_t<F>;
  constexpr U sign = U(1) << (8 * sizeof(U) - 1);
  const U b = (k & sign) ? U(k & ~sign) : U(~k);
  F x;
  memcpy(&x, &b, sizeof(U));
  return x;
}

// Radix select, most significant digit first, 8 bits per pass (4 passes for
// float keys, 8 for double). A pass histograms the probability mass of the
// elements whose key matches the prefix chosen so far (plus their key range,
// to stop once one distinct key is left); the threshold is the largest key K
// with mass(key >= K) >= target. Masses are the sampler's unsigned 64-bit
// fixed point (detmath.h, nucleus_mass): integer sums are exact, so the
// threshold does not depend on the order in which elements are added (CUDA's
// atomics, the CPU's compaction), and target = mass_target(total, top_p) is
// taken from the integer total of the first pass.
constexpr int kRadixBits = 8;
constexpr int kRadixBuckets = 1 << kRadixBits;
template <typename F>
constexpr int radix_passes() {
  return 8 * static_cast<int>(sizeof(F)) / kRadixBits;
}
template <typename F>
DMMD_HD int radix_shift(int pass) {
  return 8 * static_cast<int>(sizeof(F)) - kRadixBits * (pass + 1);
}
template <typename F>
DMMD_HD key_t<F> radix_prefix_mask(int pass) {  // bits fixed before this pass
  return pass == 0 ? key_t<F>(0) : key_t<F>(~key_t<F>(0) << (radix_shift<F>(pass) + kRadixBits));
}
template <typename F>
DMMD_HD int radix_digit(key_t<F> key, int pass) {
  return static_cast<int>((key >> radix_shift<F>(pass)) & (kRadixBuckets - 1));
}

// Mass of one element in the fixed point of detmath.h, m = round(min(e, 1)
// 2^S) (ties to even), scale = mass_scale(V) = 2^S. e = exp((T_j - max) / tau)
// comes from the kernel's own exp (a fast one on CPU, __expf on CUDA), which
// may round slightly above 1 at the maximum: the clamp keeps the row total
// < 2^62. min(e, 1) * 2^S is exact in acc_t; the device rounds it with one
// conversion instruction (no float64 registers in the float kernels), the
// host with mass_fixed: the same integer.
template <typename acc_t>
DMMD_HD uint64_t nucleus_mass(acc_t e, double scale) {
  const acc_t y = (e < acc_t(1) ? e : acc_t(1)) * static_cast<acc_t>(scale);
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(acc_t) == 4)
    return __float2ull_rn(y);
  else
    return __double2ull_rn(y);
#else
  return mass_fixed(static_cast<double>(y), 1.0);
#endif
}

// Picks this pass's digit: the largest d with above + mass(digits >= d) >=
// target, skipping empty buckets (detmath.h, pick_mass_bucket). Updates
// `above` to the mass of the keys above the chosen bucket.
DMMD_HD int radix_choose(const uint64_t* mass, uint64_t target, uint64_t& above) {
  return pick_mass_bucket<kRadixBuckets>(mass, above, target);
}

}  // namespace dmmd
