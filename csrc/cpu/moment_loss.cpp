// CPU kernels of the fused logit-moment losses (generator and auxiliary loss
// of D-MMD, with the sharpened teacher). Per-row math: include/dmmd/moment_loss.h.
//
// Memory contract, per row of [N, V] logits (rows with weight 0 read nothing
// but their weight: loss 0, statistics 0, gradient row 0):
//   generator forward : reads S, T, A once (T twice more when the nucleus is
//                       needed: top_p < 1 and delta > 0, plus V uint32 keys of
//                       per-thread scratch, reused across rows); writes loss [N]
//                       and stats [N, 8] = (shift and log-sum of S, A, T~,
//                       nucleus threshold, sum_j p_j d_j).
//   generator backward: reads S, T, A and stats once, writes dS [N, V].
//   auxiliary forward : reads A, T (and S for soft targets) once (+ nucleus
//                       passes); writes loss [N] and stats [N, 7] = (shift
//                       and log-sum of A, T~, S, threshold).
//   auxiliary backward: reads the same once, writes dA [N, V].
// Rows run in parallel (at::parallel_for); within a row, chunks of kChunk
// elements are converted to float in a stack buffer, their maxima raise the
// online-softmax state once per chunk, then a lane loop the compiler
// vectorizes accumulates with fixed shifts. x86-64 builds clone the hot loops
// for AVX-512 and AVX2/FMA (target_clones) and pick at load time. The nucleus
// histograms hold fixed-point integer masses (moment_loss.h, nucleus_mass), so
// the threshold does not depend on the order of the classes.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "clones.h"
#include "dmmd/moment_loss.h"
#include "dmmd/moment_loss_host.h"

namespace dmmd {
namespace {

constexpr int kLanes = 16;
constexpr int64_t kChunk = 1024;  // multiple of kLanes

int64_t round_lanes(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

// exp as straight-line code the compiler vectorizes: range reduction
// x = k ln2 + r, |r| <= ln2/2, then exp(r) = 1 + r + r^2 P(r) with P of degree
// 4, a relative-error minimax fit on that interval (max relative error 8e-8 in
// float32 arithmetic over [-87, 0], as for Cephes' degree-5 P: float rounding
// dominates both; scripts/fit_fast_exp.py refits it and checks the source).
// One select: x is raised to -88 (a NaN x passes, and the polynomial keeps it
// NaN); from about -87.7 down the exponent field k + 127 is 0, so the scale,
// and the result, is exactly +0 (-inf must give 0; the arguments are logits
// minus a row maximum or log-sum-exp, so such terms are negligible). k is
// capped at 127 in the integer domain (vpminsd), which only keeps the exponent
// field valid: no caller passes a positive argument. More float selects here
// (an upper clamp, a NaN test), beside the callers' own (gen_grad's p == 0),
// let jump threading turn the loops into branches that GCC left scalar.
inline float fast_exp(float x) {
  const float xc = -88.0f > x ? -88.0f : x;
  const float kf = (xc * 1.44269504f + 12582912.f) - 12582912.f;  // round to nearest
  const float r = (xc - kf * 0.693359375f) + kf * 2.12194440e-4f;
  float p = 1.3814613e-3f;
  p = p * r + 8.36871e-3f;
  p = p * r + 4.166839e-2f;
  p = p * r + 1.6666521e-1f;
  p = p * r + 4.9999994e-1f;
  p = p * (r * r) + r + 1.f;
  const int32_t k = std::min(static_cast<int32_t>(kf), int32_t(127));
  const int32_t bits = (k + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}
struct FastExp {
  float operator()(float x) const { return fast_exp(x); }
  double operator()(double x) const { return std::exp(x); }
};

// ---- chunk loading: logits -> acc_t buffer, padded with -inf to kLanes
template <typename scalar_t, typename acc_t>
DMMD_CPU_CLONES void load(const scalar_t* src, int64_t n, acc_t* dst) {
  for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<acc_t>(src[j]);
  for (int64_t j = n; j < round_lanes(n); ++j) dst[j] = neg_inf<acc_t>();
}
// x[j] = sharpen_centred(x[j], h, k, thr, delta) in place (-inf padding stays -inf).
template <typename acc_t>
DMMD_CPU_CLONES void centre_sharpen(acc_t* x, int64_t n, acc_t h, acc_t k, acc_t thr,
                                    acc_t delta) {
  for (int64_t j = 0; j < n; ++j) x[j] = sharpen_centred(x[j], h, k, thr, delta);
}

// Whether a chunk of n logits can be read where it lies instead of through a
// padded acc_t copy: float32 (float64) rows and a whole number of lane groups.
// The copies were as many sweeps of each chunk as the exps of short pixel rows.
template <typename scalar_t, typename acc_t>
bool in_place(int64_t n) {
  return std::is_same_v<scalar_t, acc_t> && n % kLanes == 0;
}
template <typename scalar_t>
const auto* in_acc(const scalar_t* p) {
  using acc_t = at::opmath_type<scalar_t>;
  if constexpr (std::is_same_v<scalar_t, acc_t>) return p;
  else return static_cast<const acc_t*>(nullptr);  // never used: in_place is false
}

// Three chunk buffers of a row loop, staggered by 64 bytes. Back to back they
// lie kChunk floats (4 KiB) apart, so a load from one and a store to another
// at the same index agree in the low 12 address bits and the load waits on
// the store (4K aliasing): the bfloat16 generator loss ran 1.5x slower than
// the float32 one that reads its rows in place.
template <typename acc_t>
struct ChunkBufs {
  static constexpr int64_t kStride = kChunk + 64 / static_cast<int64_t>(sizeof(acc_t));
  alignas(64) acc_t mem[3 * kStride];
  acc_t* operator[](int i) { return mem + i * kStride; }
};

template <typename scalar_t, typename acc_t>
DMMD_CPU_CLONES void store(const acc_t* src, int64_t n, scalar_t* dst) {
  for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<scalar_t>(src[j]);
}

// ---- lane loops (n a multiple of kLanes)
#if defined(__GNUC__)
// kLanes lanes of acc_t as 32-byte vectors (GCC/clang vector extension): GCC
// does not vectorize a max loop written with scalars (it stays vmaxss), and a
// vector wider than the target's registers is lowered to scalar code (a
// 64-byte vector on AVX2 ran 2.5x slower than the whole exp loop), so the
// lanes are kCount vectors of one AVX2 register each (vmaxps; AVX-512 runs
// the same ymm code).
template <typename acc_t>
struct LaneVec {
  static constexpr int kWidth = 32 / static_cast<int>(sizeof(acc_t));
  static constexpr int kCount = kLanes / kWidth;
  typedef acc_t type __attribute__((vector_size(32)));
};
template <typename acc_t>
DMMD_CPU_CLONES acc_t chunk_max(const acc_t* x, int64_t n) {
  using L = LaneVec<acc_t>;
  using vec = typename L::type;
  vec m[L::kCount];
  for (auto& v : m)
    for (int l = 0; l < L::kWidth; ++l) v[l] = neg_inf<acc_t>();
  for (int64_t j = 0; j < n; j += kLanes)
    for (int c = 0; c < L::kCount; ++c) {
      vec v;
      std::memcpy(&v, x + j + c * L::kWidth, sizeof(vec));
      m[c] = v > m[c] ? v : m[c];  // max_keep lane-wise: a NaN in v is ignored
    }
  acc_t r = neg_inf<acc_t>();  // lanes are never NaN
  for (int c = 0; c < L::kCount; ++c)
    for (int l = 0; l < L::kWidth; ++l) r = max_keep(r, m[c][l]);
  return r;
}
// The maxima of three streams (the generator's S, A, T) in one sweep: on pixel
// rows (V = 256, one chunk per row) three chunk_max calls, each with its own
// serial lane reduction, cost a third as much as the exps.
template <typename acc_t>
DMMD_CPU_CLONES void chunk_max3(const acc_t* x, const acc_t* y, const acc_t* z, int64_t n,
                                acc_t out[3]) {
  using L = LaneVec<acc_t>;
  using vec = typename L::type;
  const acc_t* src[3] = {x, y, z};
  vec m[3][L::kCount];
  for (auto& ms : m)
    for (auto& v : ms)
      for (int l = 0; l < L::kWidth; ++l) v[l] = neg_inf<acc_t>();
  for (int64_t j = 0; j < n; j += kLanes)
    for (int s = 0; s < 3; ++s)
      for (int c = 0; c < L::kCount; ++c) {
        vec v;
        std::memcpy(&v, src[s] + j + c * L::kWidth, sizeof(vec));
        m[s][c] = v > m[s][c] ? v : m[s][c];
      }
  for (int s = 0; s < 3; ++s) {
    vec r = m[s][0];
    for (int c = 1; c < L::kCount; ++c) r = m[s][c] > r ? m[s][c] : r;
    acc_t o = neg_inf<acc_t>();
    for (int l = 0; l < L::kWidth; ++l) o = max_keep(o, r[l]);
    out[s] = o;
  }
}
#else
template <typename acc_t>
acc_t chunk_max(const acc_t* x, int64_t n) {
  acc_t m[kLanes];
  for (int l = 0; l < kLanes; ++l) m[l] = neg_inf<acc_t>();
  for (int64_t j = 0; j < n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) m[l] = max_keep(m[l], x[j + l]);
  acc_t r = m[0];
  for (int l = 1; l < kLanes; ++l) r = max_keep(r, m[l]);
  return r;
}
template <typename acc_t>
void chunk_max3(const acc_t* x, const acc_t* y, const acc_t* z, int64_t n, acc_t out[3]) {
  out[0] = chunk_max(x, n), out[1] = chunk_max(y, n), out[2] = chunk_max(z, n);
}
#endif

template <typename acc_t>
DMMD_CPU_CLONES acc_t chunk_sum_exp(const acc_t* x, int64_t n, acc_t h) {
  acc_t s[kLanes] = {};
  for (int64_t j = 0; j < n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) s[l] += FastExp{}(x[j + l] - h);
  acc_t r = 0;
  for (int l = 0; l < kLanes; ++l) r += s[l];
  return r;
}

// x[j] = exp((x[j] - h) * k).
template <typename acc_t>
DMMD_CPU_CLONES void chunk_exp(acc_t* x, int64_t n, acc_t k, acc_t h) {
  for (int64_t j = 0; j < n; ++j) x[j] = FastExp{}((x[j] - h) * k);
}

// (sS, sA, sT, u) of one chunk at fixed shifts; the teacher's raw logits are
// centred and sharpened here (sharpen_centred with the stream shift hT), not
// in a pass of their own (one fewer sweep of the chunk: short pixel rows are
// bound by such sweeps as much as by the exps).
template <typename acc_t>
DMMD_CPU_CLONES void gen_chunk(const acc_t* s, const acc_t* a, const acc_t* t, int64_t n,
                               acc_t hS, acc_t hA, acc_t hT, acc_t k, acc_t thr, acc_t delta,
                               acc_t out[4]) {
  acc_t sS[kLanes] = {}, sA[kLanes] = {}, sT[kLanes] = {}, u[kLanes] = {};
  for (int64_t j = 0; j < n; j += kLanes)
    for (int l = 0; l < kLanes; ++l)
      gen_add(sS[l], sA[l], sT[l], u[l], s[j + l], a[j + l],
              sharpen_centred(t[j + l], hT, k, thr, delta), hS, hA, acc_t(0), FastExp{});
  for (int k = 0; k < 4; ++k) out[k] = 0;
  for (int l = 0; l < kLanes; ++l) out[0] += sS[l], out[1] += sA[l], out[2] += sT[l], out[3] += u[l];
}

// t: the teacher's raw logits, sharpened here as in gen_chunk.
template <typename acc_t>
DMMD_CPU_CLONES void gen_chunk_grad(const acc_t* s, const acc_t* a, const acc_t* t, int64_t n,
                                    acc_t gw, const acc_t* st, acc_t k, acc_t delta, acc_t* g) {
  const acc_t hT = st[kGenHT], thr = st[kGenThr];
  for (int64_t j = 0; j < n; ++j)
    g[j] = gen_grad(s[j], a[j], sharpen_centred(t[j], hT, k, thr, delta), gw, st, FastExp{});
}

// (sA, sT, uT) of one chunk; with soft targets also (sS, uS), from
// eS = exp(S - hS) the caller computed into `es` (chunk_exp). With the exp
// inlined here GCC left the loop scalar (8x slower): its if-conversion gave up
// on the CFG that jump threading made of fast_exp's selects and uS's select.
struct Identity {
  template <typename T>
  T operator()(T x) const { return x; }
};
template <typename acc_t, bool kSoft>
DMMD_CPU_CLONES void aux_chunk(const acc_t* a, const acc_t* t, const acc_t* es, int64_t n,
                               acc_t hA, acc_t hT, acc_t out[5]) {
  acc_t sA[kLanes] = {}, sT[kLanes] = {}, uT[kLanes] = {}, sS[kLanes] = {}, uS[kLanes] = {};
  for (int64_t j = 0; j < n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      aux_add(sA[l], sT[l], uT[l], a[j + l], t[j + l], hA, hT, FastExp{});
      if (kSoft) aux_add_soft(sS[l], uS[l], es[j + l], a[j + l], acc_t(0), hA, Identity{});
    }
  for (int k = 0; k < 5; ++k) out[k] = 0;
  for (int l = 0; l < kLanes; ++l)
    out[0] += sA[l], out[1] += sT[l], out[2] += uT[l], out[3] += sS[l], out[4] += uS[l];
}

template <typename acc_t>
DMMD_CPU_CLONES void chunk_soft_y(acc_t* s, int64_t n, const acc_t* st) {
  for (int64_t j = 0; j < n; ++j) s[j] = aux_soft_y(s[j], st, FastExp{});
}

// y: softmax(S) (soft) or a one-hot row (hard), computed by the caller.
template <typename acc_t>
DMMD_CPU_CLONES void aux_chunk_grad(const acc_t* a, const acc_t* t, const acc_t* y, int64_t n,
                                    acc_t gw, const acc_t* st, acc_t* g) {
  for (int64_t j = 0; j < n; ++j) g[j] = aux_grad(a[j], t[j], y[j], gw, st, FastExp{});
}

// ---- nucleus threshold of softmax(T / tau) at level top_p (in T's units)
// One radix pass's histogram: fixed-point mass (moment_loss.h, nucleus_mass)
// and key range per digit.
template <typename acc_t>
struct RadixHist {
  using U = key_t<acc_t>;
  uint64_t mass[kRadixBuckets] = {};
  U lo[kRadixBuckets], hi[kRadixBuckets];
  RadixHist() {
    for (int d = 0; d < kRadixBuckets; ++d) lo[d] = ~U(0), hi[d] = 0;
  }
  void add(const U* keys, const acc_t* e, int64_t m, int pass, double scale) {
    for (int64_t i = 0; i < m; ++i) {
      const U k = keys[i];
      const int d = radix_digit<acc_t>(k, pass);
      mass[d] += nucleus_mass(e[i], scale);
      lo[d] = std::min(lo[d], k);
      hi[d] = std::max(hi[d], k);
    }
  }
  uint64_t total() const {
    uint64_t t = 0;
    for (int d = 0; d < kRadixBuckets; ++d) t += mass[d];
    return t;
  }
};

// keys: scratch room for V keys.
template <typename scalar_t, typename acc_t>
acc_t nucleus_threshold(const scalar_t* T, int64_t V, acc_t inv_tau, double top_p,
                        key_t<acc_t>* keys) {
  alignas(64) acc_t buf[kChunk];
  // pass 0: online max of T and sum of exp((T - max) / tau)
  acc_t m = neg_inf<acc_t>(), z = 0;
  for (int64_t c0 = 0; c0 < V; c0 += kChunk) {
    const int64_t n = std::min(kChunk, V - c0), np = round_lanes(n);
    load(T + c0, n, buf);
    const acc_t nm = max_keep(m, chunk_max(buf, np));
    centre_sharpen(buf, np, shift_of(nm), inv_tau, neg_inf<acc_t>(), acc_t(0));
    z = z * rescale_factor_k(m, nm, inv_tau) + chunk_sum_exp(buf, np, acc_t(0));
    m = nm;
  }
  // z only screens the row: NaN or +inf in T makes it NaN (the loss is NaN)
  if (m == neg_inf<acc_t>() || !(z > 0) || !std::isfinite(z)) return neg_inf<acc_t>();
  const acc_t h = shift_of(m);
  const double scale = mass_scale(V);
  // Radix passes over the keys of T, masses exp((T - h) / tau). The first keeps
  // every key in `keys` (V of them, the caller's per-thread scratch); each later
  // one reads only the keys left under the chosen prefix and compacts them in
  // place (order kept, so every sum is the one a pass over T would make).
  // Re-reading and re-filtering all of T in every pass cost twice as much.
  using U = key_t<acc_t>;
  U prefix = 0;
  uint64_t above = 0, target = 0;
  int64_t live = V;
  alignas(64) acc_t e[kChunk];
  for (int pass = 0; pass < radix_passes<acc_t>(); ++pass) {
    RadixHist<acc_t> hist;
    const U pmask = radix_prefix_mask<acc_t>(pass);
    int64_t kept = 0;
    for (int64_t c0 = 0; c0 < live; c0 += kChunk) {
      const int64_t n = std::min(kChunk, live - c0);
      U* k = keys + kept;  // kept <= c0: the writes never pass the reads
      int64_t m = 0;
      if (pass == 0) {
        load(T + c0, n, e);
        for (int64_t j = 0; j < n; ++j) k[j] = float_key(e[j]);
        m = n;
      } else {
        // branch-free: every key is written, the cursor moves only for a match
        // (about half the keys match in the second pass: a branch mispredicts)
        for (int64_t j = 0; j < n; ++j) {
          const U key = keys[c0 + j];
          k[m] = key;
          e[m] = from_key<acc_t>(key);  // T itself (-0.0 read as +0.0: same exp)
          m += (key & pmask) == prefix;
        }
      }
      chunk_exp(e, m, inv_tau, h);
      hist.add(k, e, m, pass, scale);
      kept += m;
    }
    live = kept;
    if (pass == 0) target = mass_target(hist.total(), top_p);
    const int d = radix_choose(hist.mass, target, above);
    // one distinct key left in the chosen bucket: it is the threshold
    if (hist.lo[d] == hist.hi[d]) return from_key<acc_t>(hist.lo[d]);
    prefix |= U(d) << radix_shift<acc_t>(pass);
  }
  return from_key<acc_t>(prefix);
}

template <typename scalar_t, typename acc_t>
acc_t threshold_for(const scalar_t* T, int64_t V, const Sharpen& sh,
                    std::vector<key_t<acc_t>>& keys) {
  if (!sh.needs_nucleus()) return neg_inf<acc_t>();
  keys.resize(V);  // a no-op after a thread's first row
  return nucleus_threshold<scalar_t, acc_t>(T, V, acc_t(1.0 / sh.tau), sh.top_p, keys.data());
}

int64_t grain_rows(int64_t V) { return std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(V, 1)); }

// ---- generator loss
template <typename scalar_t>
void gen_forward_rows(const at::Tensor& S, const at::Tensor& T, const at::Tensor& A,
                      const at::Tensor& w, const Sharpen& sh, at::Tensor& loss, at::Tensor& stats) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = S.size(0), V = S.size(1);
  const scalar_t *sp = S.const_data_ptr<scalar_t>(), *tp = T.const_data_ptr<scalar_t>(),
                 *ap = A.const_data_ptr<scalar_t>();
  const int64_t ss = S.stride(0), ts = T.stride(0), as = A.stride(0);
  const acc_t* wp = w.const_data_ptr<acc_t>();
  acc_t* lp = loss.data_ptr<acc_t>();
  acc_t* stp = stats.data_ptr<acc_t>();
  const acc_t inv_tau = acc_t(1.0 / sh.tau), delta = acc_t(sh.delta);
  at::parallel_for(0, N, grain_rows(V), [&](int64_t r0, int64_t r1) {
    ChunkBufs<acc_t> bufs;
    acc_t *bs = bufs[0], *ba = bufs[1], *bt = bufs[2];
    std::vector<key_t<acc_t>> keys;  // nucleus scratch
    for (int64_t r = r0; r < r1; ++r) {
      acc_t* st = stp + r * kGenStats;
      if (wp[r] == acc_t(0)) {
        lp[r] = 0;
        std::fill(st, st + kGenStats, acc_t(0));
        continue;
      }
      const scalar_t *Sr = sp + r * ss, *Tr = tp + r * ts, *Ar = ap + r * as;
      const acc_t thr = threshold_for<scalar_t, acc_t>(Tr, V, sh, keys);
      GenAcc<acc_t> acc;
      acc.k = inv_tau;
      for (int64_t c0 = 0; c0 < V; c0 += kChunk) {
        const int64_t n = std::min(kChunk, V - c0), np = round_lanes(n);
        const acc_t *s = bs, *a = ba, *t = bt;
        if (in_place<scalar_t, acc_t>(n)) {
          s = in_acc(Sr + c0), a = in_acc(Ar + c0), t = in_acc(Tr + c0);
        } else {
          load(Sr + c0, n, bs);
          load(Ar + c0, n, ba);
          load(Tr + c0, n, bt);
        }
        acc_t mx[3];
        chunk_max3(s, a, t, np, mx);
        acc.rescale(mx[0], mx[1], mx[2]);
        acc_t sums[4];
        gen_chunk(s, a, t, np, acc.hS(), acc.hA(), acc.hT(), inv_tau, thr, delta, sums);
        acc.sS += sums[0], acc.sA += sums[1], acc.sT += sums[2], acc.u += sums[3];
      }
      const acc_t md = acc.mean_d();
      acc.store(st);
      st[kGenThr] = thr;
      st[kGenMeanD] = md;
      lp[r] = wp[r] * md;
    }
  });
}

std::tuple<at::Tensor, at::Tensor> generator_loss_cpu(const at::Tensor& student,
                                                      const at::Tensor& teacher,
                                                      const at::Tensor& aux,
                                                      const at::Tensor& weight, double tau,
                                                      double top_p, double delta) {
  const Sharpen sh = check_sharpen(tau, top_p, delta);
  const at::Tensor S = rows_of(student, "student");
  const at::Tensor T = logits_like(teacher, "teacher", student, "student");
  const at::Tensor A = logits_like(aux, "aux", student, "student");
  const at::Tensor w = check_weight(weight, S, "student");
  const auto opts = S.options().dtype(acc_dtype(S));
  at::Tensor loss = at::empty({S.size(0)}, opts);
  at::Tensor stats = at::empty({S.size(0), kGenStats}, opts);
  if (S.size(0) == 0) return {loss, stats};
  TORCH_CHECK(S.size(1) >= 1, "student: expected V >= 1 classes, got shape ", S.sizes());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, S.scalar_type(), "gen_loss_cpu", [&] {
    gen_forward_rows<scalar_t>(S, T, A, w, sh, loss, stats);
  });
  return {loss, stats};
}

template <typename scalar_t>
void gen_backward_rows(const at::Tensor& g, const at::Tensor& S, const at::Tensor& T,
                       const at::Tensor& A, const at::Tensor& w, const at::Tensor& stats,
                       double tau, double delta, at::Tensor& dS) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = S.size(0), V = S.size(1);
  const scalar_t *sp = S.const_data_ptr<scalar_t>(), *tp = T.const_data_ptr<scalar_t>(),
                 *ap = A.const_data_ptr<scalar_t>();
  const int64_t ss = S.stride(0), ts = T.stride(0), as = A.stride(0);
  const acc_t *wp = w.const_data_ptr<acc_t>(), *gp = g.const_data_ptr<acc_t>(),
              *stp = stats.const_data_ptr<acc_t>();
  scalar_t* dp = dS.data_ptr<scalar_t>();
  const acc_t inv_tau = acc_t(1.0 / tau), dl = acc_t(delta);
  at::parallel_for(0, N, grain_rows(V), [&](int64_t r0, int64_t r1) {
    ChunkBufs<acc_t> bufs;
    acc_t *bs = bufs[0], *ba = bufs[1], *bt = bufs[2];
    for (int64_t r = r0; r < r1; ++r) {
      scalar_t* out = dp + r * V;
      if (wp[r] == acc_t(0)) {
        std::fill(out, out + V, scalar_t(0));
        continue;
      }
      const acc_t* st = stp + r * kGenStats;
      const acc_t gw = gp[r] * wp[r];
      const scalar_t *Sr = sp + r * ss, *Tr = tp + r * ts, *Ar = ap + r * as;
      for (int64_t c0 = 0; c0 < V; c0 += kChunk) {
        const int64_t n = std::min(kChunk, V - c0);
        if constexpr (std::is_same_v<scalar_t, acc_t>) {  // no padding needed here
          gen_chunk_grad(Sr + c0, Ar + c0, Tr + c0, n, gw, st, inv_tau, dl, out + c0);
          continue;
        }
        load(Sr + c0, n, bs);
        load(Ar + c0, n, ba);
        load(Tr + c0, n, bt);
        gen_chunk_grad(bs, ba, bt, n, gw, st, inv_tau, dl, bs);
        store(bs, n, out + c0);
      }
    }
  });
}

at::Tensor generator_loss_backward_cpu(const at::Tensor& grad_loss, const at::Tensor& student,
                                       const at::Tensor& teacher, const at::Tensor& aux,
                                       const at::Tensor& weight, const at::Tensor& stats,
                                       double tau, double delta) {
  check_sharpen(tau, 1.0, delta);
  const at::Tensor S = rows_of(student, "student");
  const at::Tensor T = logits_like(teacher, "teacher", student, "student");
  const at::Tensor A = logits_like(aux, "aux", student, "student");
  const at::Tensor w = check_weight(weight, S, "student");
  const at::Tensor g = check_rowvec(grad_loss, "grad_loss", S, 0);
  const at::Tensor st = check_rowvec(stats, "stats", S, kGenStats);
  at::Tensor dS = at::empty(S.sizes(), S.options().memory_format(at::MemoryFormat::Contiguous));
  if (S.numel() == 0) return dS;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, S.scalar_type(), "gen_loss_bwd_cpu",
                                  [&] { gen_backward_rows<scalar_t>(g, S, T, A, w, st, tau, delta, dS); });
  return dS;
}

// ---- auxiliary loss
struct Targets {
  bool soft;
  at::Tensor ids;     // [N] int64 (hard)
  at::Tensor logits;  // [N, V] (soft)
};

Targets targets_of(const std::optional<at::Tensor>& ids, const std::optional<at::Tensor>& logits,
                   const at::Tensor& A, bool validate) {
  const bool soft = check_targets(ids, logits, A, validate);
  if (soft) return {true, at::Tensor(), logits_like(*logits, "target_logits", A, "aux")};
  return {false, ids->contiguous(), at::Tensor()};
}

template <typename scalar_t>
void aux_forward_rows(const at::Tensor& A, const at::Tensor& T, const Targets& y,
                      const at::Tensor& w, const Sharpen& sh, at::Tensor& loss, at::Tensor& stats) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = A.size(0), V = A.size(1);
  const scalar_t *ap = A.const_data_ptr<scalar_t>(), *tp = T.const_data_ptr<scalar_t>();
  const scalar_t* sp = y.soft ? y.logits.const_data_ptr<scalar_t>() : nullptr;
  const int64_t* ip = y.soft ? nullptr : y.ids.const_data_ptr<int64_t>();
  const int64_t as = A.stride(0), ts = T.stride(0), ss = y.soft ? y.logits.stride(0) : 0;
  const acc_t* wp = w.const_data_ptr<acc_t>();
  acc_t* lp = loss.data_ptr<acc_t>();
  acc_t* stp = stats.data_ptr<acc_t>();
  const acc_t inv_tau = acc_t(1.0 / sh.tau), delta = acc_t(sh.delta);
  at::parallel_for(0, N, grain_rows(V), [&](int64_t r0, int64_t r1) {
    ChunkBufs<acc_t> bufs;
    acc_t *ba = bufs[0], *bt = bufs[1], *bs = bufs[2];
    std::vector<key_t<acc_t>> keys;  // nucleus scratch
    for (int64_t r = r0; r < r1; ++r) {
      acc_t* st = stp + r * kAuxStats;
      if (wp[r] == acc_t(0)) {
        lp[r] = 0;
        std::fill(st, st + kAuxStats, acc_t(0));
        continue;
      }
      const scalar_t *Ar = ap + r * as, *Tr = tp + r * ts;
      const acc_t thr = threshold_for<scalar_t, acc_t>(Tr, V, sh, keys);
      AuxAcc<acc_t> acc;
      acc.k = inv_tau;
      for (int64_t c0 = 0; c0 < V; c0 += kChunk) {
        const int64_t n = std::min(kChunk, V - c0), np = round_lanes(n);
        load(Ar + c0, n, ba);
        load(Tr + c0, n, bt);
        acc_t ms = neg_inf<acc_t>();
        if (y.soft) {
          load(sp + r * ss + c0, n, bs);
          ms = chunk_max(bs, np);
        }
        acc.rescale(chunk_max(ba, np), chunk_max(bt, np), ms);
        centre_sharpen(bt, np, acc.hT(), inv_tau, thr, delta);
        acc_t sums[5];
        if (y.soft) {
          chunk_exp(bs, np, acc_t(1), acc.hS());  // (x - h) * 1 == x - h exactly
          aux_chunk<acc_t, true>(ba, bt, bs, np, acc.hA(), acc_t(0), sums);
        } else {
          aux_chunk<acc_t, false>(ba, bt, nullptr, np, acc.hA(), acc_t(0), sums);
        }
        acc.sA += sums[0], acc.sT += sums[1], acc.uT += sums[2];
        acc.sS += sums[3], acc.uS += sums[4];
      }
      // an id outside [0, V) (only possible with validate=False) gives NaN
      const bool id_ok = y.soft || (ip[r] >= 0 && ip[r] < V);
      const acc_t a_tgt = y.soft ? acc_t(0) : id_ok ? static_cast<acc_t>(Ar[ip[r]]) : nan_of<acc_t>();
      acc.store(st, y.soft);
      st[kAuxThr] = thr;
      lp[r] = wp[r] * acc.loss(y.soft, a_tgt);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> auxiliary_loss_cpu(
    const at::Tensor& aux, const at::Tensor& teacher, const std::optional<at::Tensor>& target_ids,
    const std::optional<at::Tensor>& target_logits, const at::Tensor& weight, double tau,
    double top_p, double delta, bool validate) {
  const Sharpen sh = check_sharpen(tau, top_p, delta);
  const at::Tensor A = rows_of(aux, "aux");
  const at::Tensor T = logits_like(teacher, "teacher", aux, "aux");
  const Targets y = targets_of(target_ids, target_logits, A, validate);
  const at::Tensor w = check_weight(weight, A, "aux");
  const auto opts = A.options().dtype(acc_dtype(A));
  at::Tensor loss = at::empty({A.size(0)}, opts);
  at::Tensor stats = at::empty({A.size(0), kAuxStats}, opts);
  if (A.size(0) == 0) return {loss, stats};
  TORCH_CHECK(A.size(1) >= 1, "aux: expected V >= 1 classes, got shape ", A.sizes());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, A.scalar_type(), "aux_loss_cpu", [&] {
    aux_forward_rows<scalar_t>(A, T, y, w, sh, loss, stats);
  });
  return {loss, stats};
}

template <typename scalar_t>
void aux_backward_rows(const at::Tensor& g, const at::Tensor& A, const at::Tensor& T,
                       const Targets& y, const at::Tensor& w, const at::Tensor& stats, double tau,
                       double delta, at::Tensor& dA) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = A.size(0), V = A.size(1);
  const scalar_t *ap = A.const_data_ptr<scalar_t>(), *tp = T.const_data_ptr<scalar_t>();
  const scalar_t* sp = y.soft ? y.logits.const_data_ptr<scalar_t>() : nullptr;
  const int64_t* ip = y.soft ? nullptr : y.ids.const_data_ptr<int64_t>();
  const int64_t as = A.stride(0), ts = T.stride(0), ss = y.soft ? y.logits.stride(0) : 0;
  const acc_t *wp = w.const_data_ptr<acc_t>(), *gp = g.const_data_ptr<acc_t>(),
              *stp = stats.const_data_ptr<acc_t>();
  scalar_t* dp = dA.data_ptr<scalar_t>();
  const acc_t inv_tau = acc_t(1.0 / tau), dl = acc_t(delta);
  at::parallel_for(0, N, grain_rows(V), [&](int64_t r0, int64_t r1) {
    ChunkBufs<acc_t> bufs;
    acc_t *ba = bufs[0], *bt = bufs[1], *by = bufs[2];
    for (int64_t r = r0; r < r1; ++r) {
      scalar_t* out = dp + r * V;
      if (wp[r] == acc_t(0)) {
        std::fill(out, out + V, scalar_t(0));
        continue;
      }
      const acc_t* st = stp + r * kAuxStats;
      const acc_t gw = gp[r] * wp[r];
      const scalar_t *Ar = ap + r * as, *Tr = tp + r * ts;
      for (int64_t c0 = 0; c0 < V; c0 += kChunk) {
        const int64_t n = std::min(kChunk, V - c0);
        load(Ar + c0, n, ba);
        load(Tr + c0, n, bt);
        centre_sharpen(bt, n, st[kAuxHT], inv_tau, st[kAuxThr], dl);
        if (y.soft) {
          load(sp + r * ss + c0, n, by);
          chunk_soft_y(by, n, st);
        } else {
          const bool id_ok = ip[r] >= 0 && ip[r] < V;
          std::fill(by, by + n, id_ok ? acc_t(0) : nan_of<acc_t>());
          const int64_t k = ip[r] - c0;
          if (k >= 0 && k < n) by[k] = 1;
        }
        aux_chunk_grad(ba, bt, by, n, gw, st, ba);
        store(ba, n, out + c0);
      }
    }
  });
}

at::Tensor auxiliary_loss_backward_cpu(const at::Tensor& grad_loss, const at::Tensor& aux,
                                       const at::Tensor& teacher,
                                       const std::optional<at::Tensor>& target_ids,
                                       const std::optional<at::Tensor>& target_logits,
                                       const at::Tensor& weight, const at::Tensor& stats,
                                       double tau, double delta) {
  check_sharpen(tau, 1.0, delta);
  const at::Tensor A = rows_of(aux, "aux");
  const at::Tensor T = logits_like(teacher, "teacher", aux, "aux");
  const Targets y = targets_of(target_ids, target_logits, A, /*validate=*/false);
  const at::Tensor w = check_weight(weight, A, "aux");
  const at::Tensor g = check_rowvec(grad_loss, "grad_loss", A, 0);
  const at::Tensor st = check_rowvec(stats, "stats", A, kAuxStats);
  at::Tensor dA = at::empty(A.sizes(), A.options().memory_format(at::MemoryFormat::Contiguous));
  if (A.numel() == 0) return dA;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, A.scalar_type(), "aux_loss_bwd_cpu",
                                  [&] { aux_backward_rows<scalar_t>(g, A, T, y, w, st, tau, delta, dA); });
  return dA;
}

}  // namespace
}  // namespace dmmd

TORCH_LIBRARY_IMPL(dmmd_ext, CPU, m) {
  m.impl("moment_generator_loss", &dmmd::generator_loss_cpu);
  m.impl("moment_generator_loss_backward", &dmmd::generator_loss_backward_cpu);
  m.impl("moment_auxiliary_loss", &dmmd::auxiliary_loss_cpu);
  m.impl("moment_auxiliary_loss_backward", &dmmd::auxiliary_loss_backward_cpu);
}
