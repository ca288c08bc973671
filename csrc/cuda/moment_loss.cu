// CUDA kernels of the fused logit-moment losses; same per-row math as
// cpu/moment_loss.cpp (include/dmmd/moment_loss.h), same memory contract:
//   generator forward : reads S, T, A once (+ 5 passes over T for the nucleus
//                       when top_p < 1 and delta > 0); writes loss [N], stats [N, 8].
//   generator backward: reads S, T, A, stats once; writes dS [N, V].
//   auxiliary forward : reads A, T (+ S for soft targets) once (+ nucleus);
//                       writes loss [N], stats [N, 7].
//   auxiliary backward: reads the same once; writes dA [N, V].
// Rows with weight 0 read only their weight (gradient row written as 0).
//
// A row is handled by a group of G threads: a warp (G = 32, four rows per
// block) for V <= 2048, a 512-thread block otherwise. Each thread keeps an
// online-softmax accumulator over 16-byte vectors (8 bf16/fp16, 4 fp32, 2 fp64;
// the row's unaligned head and its tail go element by element), the group
// merges them with warp shuffles (+ shared memory across warps). The nucleus
// uses a shared-memory histogram per group (radix select, 4 passes for float)
// of fixed-point masses (moment_loss.h, nucleus_mass) added with 64-bit
// integer shared-memory atomics (native; float/double atomicAdd on shared
// memory is a compare-and-swap loop): integer sums do not depend on the order
// of the atomics, so the threshold, hence the loss, is run-to-run
// deterministic. CPU and CUDA still differ in their exp (fast exp vs
// __expf), so their losses agree to rounding, not bitwise.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "runtime.cuh"
#include "dmmd/moment_loss.h"
#include "dmmd/moment_loss_host.h"

namespace dmmd {
namespace {

struct DevExp {
  __device__ __forceinline__ float operator()(float x) const { return __expf(x); }
  __device__ __forceinline__ double operator()(double x) const { return exp(x); }
};

// ---- loads: N consecutive elements (N = 1 or one 16-byte vector) as acc_t
template <int N, typename scalar_t, typename acc_t>
__device__ __forceinline__ void load_n(const scalar_t* p, acc_t (&out)[N]) {
  if constexpr (N == 1) {
    out[0] = static_cast<acc_t>(p[0]);
  } else {
    static_assert(N * sizeof(scalar_t) == 16, "one 16-byte vector");
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
    scalar_t v[N];
    memcpy(v, &raw, 16);
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = static_cast<acc_t>(v[i]);
  }
}
template <int N, typename scalar_t, typename acc_t>
__device__ __forceinline__ void store_n(scalar_t* p, const acc_t (&in)[N]) {
  if constexpr (N == 1) {
    p[0] = static_cast<scalar_t>(in[0]);
  } else {
    scalar_t v[N];
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] = static_cast<scalar_t>(in[i]);
    uint4 raw;
    memcpy(&raw, v, 16);
    *reinterpret_cast<uint4*>(p) = raw;
  }
}
template <int N, typename acc_t>
__device__ __forceinline__ acc_t max_n(const acc_t (&x)[N]) {
  acc_t m = x[0];
#pragma unroll
  for (int i = 1; i < N; ++i) m = max_keep(m, x[i]);
  return m;
}

// How a row splits into [0, head) scalar, vectors, [tail, V) scalar. Vectors
// need every pointer of the row at the same offset from a 16-byte boundary.
template <typename scalar_t>
struct RowSplit {
  static constexpr int kVec = 16 / sizeof(scalar_t);
  int64_t head, nvec, tail;
  __device__ RowSplit(int64_t V, const void* p0, const void* p1, const void* p2, const void* p3) {
    const uintptr_t a0 = reinterpret_cast<uintptr_t>(p0);
    auto aligned_like_p0 = [a0](const void* p) {
      return p == nullptr || (reinterpret_cast<uintptr_t>(p) - a0) % 16 == 0;
    };
    const bool same = aligned_like_p0(p1) && aligned_like_p0(p2) && aligned_like_p0(p3);
    head = same ? ((16 - a0 % 16) % 16) / sizeof(scalar_t) : V;
    head = head < V ? head : V;
    nvec = (V - head) / kVec;
    tail = head + nvec * kVec;
  }
  // f<N>(j) for every batch: N = kVec at aligned j, N = 1 elsewhere.
  template <typename F>
  __device__ __forceinline__ void for_each(int64_t V, int tid, int G, F&& f) const {
    for (int64_t j = tid; j < head; j += G) f.template operator()<1>(j);
    for (int64_t v = tid; v < nvec; v += G) f.template operator()<kVec>(head + v * kVec);
    for (int64_t j = tail + tid; j < V; j += G) f.template operator()<1>(j);
  }
};

// ---- group reductions of accumulator structs (all fields acc_t, merge())
template <typename Acc, typename acc_t>
__device__ __forceinline__ Acc shfl_down(const Acc& a, int offset) {
  constexpr int n = sizeof(Acc) / sizeof(acc_t);
  acc_t f[n];
  memcpy(f, &a, sizeof(Acc));
#pragma unroll
  for (int i = 0; i < n; ++i) f[i] = __shfl_down_sync(0xffffffffu, f[i], offset);
  Acc r;
  memcpy(&r, f, sizeof(Acc));
  return r;
}

// Result valid in every thread of the group. scratch: >= G/32 Accs of shared
// memory owned by the group (unused for G = 32).
template <int G, typename acc_t, typename Acc>
__device__ Acc group_reduce(Acc a, Acc* scratch) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) a.merge(shfl_down<Acc, acc_t>(a, off));
  const int lane = threadIdx.x % 32;
  if constexpr (G == 32) {
    constexpr int n = sizeof(Acc) / sizeof(acc_t);
    acc_t f[n];
    memcpy(f, &a, sizeof(Acc));
#pragma unroll
    for (int i = 0; i < n; ++i) f[i] = __shfl_sync(0xffffffffu, f[i], 0);
    memcpy(&a, f, sizeof(Acc));
    return a;
  } else {
    const int warp = threadIdx.x / 32;
    __syncthreads();  // scratch may still be read from a previous reduction
    if (lane == 0) scratch[warp] = a;
    __syncthreads();
    Acc r = scratch[0];
    for (int w = 1; w < G / 32; ++w) r.merge(scratch[w]);
    return r;
  }
}

template <int G>
__device__ __forceinline__ void group_sync() {
  if constexpr (G == 32)
    __syncwarp();
  else
    __syncthreads();
}

// ---- the nucleus: shared histograms of one group
__device__ __forceinline__ void atomic_min_key(uint32_t* p, uint32_t v) { atomicMin(p, v); }
__device__ __forceinline__ void atomic_max_key(uint32_t* p, uint32_t v) { atomicMax(p, v); }
__device__ __forceinline__ void atomic_min_key(uint64_t* p, uint64_t v) {
  atomicMin(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
}
__device__ __forceinline__ void atomic_max_key(uint64_t* p, uint64_t v) {
  atomicMax(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
}

template <typename acc_t>
struct RadixShared {
  uint64_t mass[kRadixBuckets];  // fixed point (nucleus_mass)
  key_t<acc_t> lo[kRadixBuckets], hi[kRadixBuckets];
  key_t<acc_t> prefix;
  int done;
};

// Not inlined: the radix passes and the kernels' loss loops then get their own
// register allocations (inlined, ptxas capped the half/bf16 kernels at 64
// registers and spilled up to 80 bytes; now 0-4).
template <int G, typename scalar_t, typename acc_t>
__device__ __noinline__ acc_t nucleus_threshold(const scalar_t* T, int64_t V,
                                                const RowSplit<scalar_t>& rs, acc_t inv_tau,
                                                double top_p, RadixShared<acc_t>& sh,
                                                LseAcc<acc_t>* scratch, int tid) {
  using U = key_t<acc_t>;
  DevExp ex;
  LseAcc<acc_t> lse;  // max of T, sum of exp((T - max) / tau)
  lse.k = inv_tau;
  rs.for_each(V, tid, G, [&]<int N>(int64_t j) {
    acc_t x[N];
    load_n<N>(T + j, x);
    lse.rescale(max_n(x));
    const acc_t h = shift_of(lse.m);
#pragma unroll
    for (int i = 0; i < N; ++i) lse.s += ex((x[i] - h) * inv_tau);
  });
  lse = group_reduce<G, acc_t>(lse, scratch);
  // lse.s only screens the row: NaN or +inf in T makes it NaN (the loss is NaN)
  if (lse.m == neg_inf<acc_t>() || !(lse.s > acc_t(0)) || !isfinite(lse.s))
    return neg_inf<acc_t>();
  const acc_t h = shift_of(lse.m);
  const double scale = mass_scale(V);
  uint64_t above = 0, target = 0;  // thread 0's
  if (tid == 0) sh.prefix = 0, sh.done = 0;
  for (int pass = 0; pass < radix_passes<acc_t>(); ++pass) {
    for (int d = tid; d < kRadixBuckets; d += G) sh.mass[d] = 0, sh.lo[d] = ~U(0), sh.hi[d] = 0;
    group_sync<G>();
    const U prefix = sh.prefix, pmask = radix_prefix_mask<acc_t>(pass);
    rs.for_each(V, tid, G, [&]<int N>(int64_t j) {
      acc_t x[N];
      load_n<N>(T + j, x);
#pragma unroll
      for (int i = 0; i < N; ++i) {
        const U k = float_key(x[i]);
        if ((k & pmask) != prefix) continue;
        const int d = radix_digit<acc_t>(k, pass);
        atomicAdd(reinterpret_cast<unsigned long long*>(&sh.mass[d]),
                  static_cast<unsigned long long>(nucleus_mass(ex((x[i] - h) * inv_tau), scale)));
        atomic_min_key(&sh.lo[d], k);
        atomic_max_key(&sh.hi[d], k);
      }
    });
    group_sync<G>();
    if (tid == 0) {
      if (pass == 0) {
        uint64_t total = 0;
        for (int b = 0; b < kRadixBuckets; ++b) total += sh.mass[b];
        target = mass_target(total, top_p);
      }
      const int d = radix_choose(sh.mass, target, above);
      if (sh.lo[d] == sh.hi[d]) {  // one distinct key left: the threshold
        sh.prefix = sh.lo[d];
        sh.done = 1;
      } else {
        sh.prefix = prefix | (U(d) << radix_shift<acc_t>(pass));
      }
    }
    group_sync<G>();
    if (sh.done) break;
  }
  const acc_t thr = from_key<acc_t>(sh.prefix);
  group_sync<G>();  // sh is reused by the group's next row
  return thr;
}

// Per-group shared memory (trivially constructible, as __shared__ requires):
// the radix histograms and room for one accumulator per warp.
template <typename acc_t>
struct GroupShared {
  RadixShared<acc_t> radix;
  alignas(16) unsigned char scratch[16 * sizeof(AuxAcc<acc_t>)];
  template <typename Acc>
  __device__ Acc* as() {
    static_assert(sizeof(Acc) <= sizeof(AuxAcc<acc_t>), "scratch too small");
    return reinterpret_cast<Acc*>(scratch);
  }
};

struct Params {
  int64_t N, V;
  double inv_tau, top_p, delta;
  bool nucleus;
};

// ---- generator forward
template <int G, int kBlock, typename scalar_t>
__global__ void __launch_bounds__(kBlock)
    gen_forward_kernel(const scalar_t* __restrict__ S, const scalar_t* __restrict__ T,
                       const scalar_t* __restrict__ A, int64_t ss, int64_t ts, int64_t as,
                       const at::opmath_type<scalar_t>* __restrict__ w, Params p,
                       at::opmath_type<scalar_t>* __restrict__ loss,
                       at::opmath_type<scalar_t>* __restrict__ stats) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int R = kBlock / G;
  __shared__ GroupShared<acc_t> shared[R];
  const int grp = threadIdx.x / G, tid = threadIdx.x % G;
  GroupShared<acc_t>& sh = shared[grp];
  const acc_t inv_tau = acc_t(p.inv_tau), delta = acc_t(p.delta);
  const DevExp ex;
  for (int64_t r = int64_t(blockIdx.x) * R + grp; r < p.N; r += int64_t(gridDim.x) * R) {
    acc_t* st = stats + r * kGenStats;
    const acc_t wr = w[r];
    if (wr == acc_t(0)) {
      if (tid < kGenStats) st[tid] = 0;
      if (tid == 0) loss[r] = 0;
      continue;
    }
    const scalar_t *Sr = S + r * ss, *Tr = T + r * ts, *Ar = A + r * as;
    const RowSplit<scalar_t> rs(p.V, Sr, Tr, Ar, nullptr);
    const acc_t thr = p.nucleus ? nucleus_threshold<G>(Tr, p.V, RowSplit<scalar_t>(p.V, Tr, nullptr, nullptr, nullptr),
                                                       inv_tau, p.top_p, sh.radix,
                                                       sh.template as<LseAcc<acc_t>>(), tid)
                                : neg_inf<acc_t>();
    GenAcc<acc_t> acc;
    acc.k = inv_tau;
    rs.for_each(p.V, tid, G, [&]<int N>(int64_t j) {
      acc_t xs[N], xa[N], xt[N];
      load_n<N>(Sr + j, xs);
      load_n<N>(Ar + j, xa);
      load_n<N>(Tr + j, xt);
      acc.rescale(max_n(xs), max_n(xa), max_n(xt));
      const acc_t hS = acc.hS(), hA = acc.hA(), hT = acc.hT();
#pragma unroll
      for (int i = 0; i < N; ++i) {
        const acc_t tc = sharpen_centred(xt[i], hT, inv_tau, thr, delta);
        gen_add(acc.sS, acc.sA, acc.sT, acc.u, xs[i], xa[i], tc, hS, hA, acc_t(0), ex);
      }
    });
    acc = group_reduce<G, acc_t>(acc, sh.template as<GenAcc<acc_t>>());
    if (tid == 0) {
      const acc_t md = acc.mean_d();
      acc.store(st);
      st[kGenThr] = thr;
      st[kGenMeanD] = md;
      loss[r] = wr * md;
    }
  }
}

// ---- generator backward
template <int G, int kBlock, typename scalar_t>
__global__ void __launch_bounds__(kBlock)
    gen_backward_kernel(const at::opmath_type<scalar_t>* __restrict__ g,
                        const scalar_t* __restrict__ S, const scalar_t* __restrict__ T,
                        const scalar_t* __restrict__ A, int64_t ss, int64_t ts, int64_t as,
                        const at::opmath_type<scalar_t>* __restrict__ w,
                        const at::opmath_type<scalar_t>* __restrict__ stats, Params p,
                        scalar_t* __restrict__ dS) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int R = kBlock / G;
  const int grp = threadIdx.x / G, tid = threadIdx.x % G;
  const acc_t inv_tau = acc_t(p.inv_tau), delta = acc_t(p.delta);
  const DevExp ex;
  for (int64_t r = int64_t(blockIdx.x) * R + grp; r < p.N; r += int64_t(gridDim.x) * R) {
    scalar_t* out = dS + r * p.V;
    const acc_t wr = w[r];
    const scalar_t *Sr = S + r * ss, *Tr = T + r * ts, *Ar = A + r * as;
    const RowSplit<scalar_t> rs(p.V, out, Sr, Tr, Ar);
    if (wr == acc_t(0)) {
      rs.for_each(p.V, tid, G, [&]<int N>(int64_t j) {
        acc_t z[N] = {};
        store_n<N>(out + j, z);
      });
      continue;
    }
    acc_t st[kGenStats];
#pragma unroll
    for (int k = 0; k < kGenStats; ++k) st[k] = stats[r * kGenStats + k];
    const acc_t gw = g[r] * wr;
    rs.for_each(p.V, tid, G, [&]<int N>(int64_t j) {
      acc_t xs[N], xa[N], xt[N];
      load_n<N>(Sr + j, xs);
      load_n<N>(Ar + j, xa);
      load_n<N>(Tr + j, xt);
#pragma unroll
      for (int i = 0; i < N; ++i)
        xs[i] = gen_grad(xs[i], xa[i],
                         sharpen_centred(xt[i], st[kGenHT], inv_tau, st[kGenThr], delta), gw, st,
                         ex);
      store_n<N>(out + j, xs);
    });
  }
}

// ---- auxiliary forward (soft: Y = the student's logits; hard: ids)
template <int G, int kBlock, typename scalar_t>
__global__ void __launch_bounds__(kBlock)
    aux_forward_kernel(const scalar_t* __restrict__ A, const scalar_t* __restrict__ T,
                       const scalar_t* __restrict__ Y, const int64_t* __restrict__ ids,
                       int64_t as, int64_t ts, int64_t ys,
                       const at::opmath_type<scalar_t>* __restrict__ w, Params p,
                       at::opmath_type<scalar_t>* __restrict__ loss,
                       at::opmath_type<scalar_t>* __restrict__ stats) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int R = kBlock / G;
  __shared__ GroupShared<acc_t> shared[R];
  const int grp = threadIdx.x / G, tid = threadIdx.x % G;
  GroupShared<acc_t>& sh = shared[grp];
  const acc_t inv_tau = acc_t(p.inv_tau), delta = acc_t(p.delta);
  const DevExp ex;
  const bool soft = Y != nullptr;
  for (int64_t r = int64_t(blockIdx.x) * R + grp; r < p.N; r += int64_t(gridDim.x) * R) {
    acc_t* st = stats + r * kAuxStats;
    const acc_t wr = w[r];
    if (wr == acc_t(0)) {
      if (tid < kAuxStats) st[tid] = 0;
      if (tid == 0) loss[r] = 0;
      continue;
    }
    const scalar_t *Ar = A + r * as, *Tr = T + r * ts;
    const scalar_t* Yr = soft ? Y + r * ys : nullptr;
    const RowSplit<scalar_t> rs(p.V, Ar, Tr, Yr, nullptr);
    const acc_t thr = p.nucleus ? nucleus_threshold<G>(Tr, p.V, RowSplit<scalar_t>(p.V, Tr, nullptr, nullptr, nullptr),
                                                       inv_tau, p.top_p, sh.radix,
                                                       sh.template as<LseAcc<acc_t>>(), tid)
                                : neg_inf<acc_t>();
    AuxAcc<acc_t> acc;
    acc.k = inv_tau;
    rs.for_each(p.V, tid, G, [&]<int N>(int64_t j) {
      acc_t xa[N], xt[N], xs[N];
      load_n<N>(Ar + j, xa);
      load_n<N>(Tr + j, xt);
      acc_t ms = neg_inf<acc_t>();
      if (soft) {
        load_n<N>(Yr + j, xs);
        ms = max_n(xs);
      }
      acc.rescale(max_n(xa), max_n(xt), ms);
      const acc_t hA = acc.hA(), hT = acc.hT(), hS = acc.hS();
#pragma unroll
      for (int i = 0; i < N; ++i) {
        const acc_t tc = sharpen_centred(xt[i], hT, inv_tau, thr, delta);
        aux_add(acc.sA, acc.sT, acc.uT, xa[i], tc, hA, acc_t(0), ex);
        if (soft) aux_add_soft(acc.sS, acc.uS, xs[i], xa[i], hS, hA, ex);
      }
    });
    acc = group_reduce<G, acc_t>(acc, sh.template as<AuxAcc<acc_t>>());
    if (tid == 0) {
      const int64_t id = soft ? 0 : ids[r];
      const bool id_ok = soft || (id >= 0 && id < p.V);  // else (validate=False) NaN
      const acc_t a_tgt = soft ? acc_t(0) : id_ok ? static_cast<acc_t>(Ar[id]) : nan_of<acc_t>();
      acc.store(st, soft);
      st[kAuxThr] = thr;
      loss[r] = wr * acc.loss(soft, a_tgt);
    }
  }
}

// ---- auxiliary backward
template <int G, int kBlock, typename scalar_t>
__global__ void __launch_bounds__(kBlock)
    aux_backward_kernel(const at::opmath_type<scalar_t>* __restrict__ g,
                        const scalar_t* __restrict__ A, const scalar_t* __restrict__ T,
                        const scalar_t* __restrict__ Y, const int64_t* __restrict__ ids,
                        int64_t as, int64_t ts, int64_t ys,
                        const at::opmath_type<scalar_t>* __restrict__ w,
                        const at::opmath_type<scalar_t>* __restrict__ stats, Params p,
                        scalar_t* __restrict__ dA) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int R = kBlock / G;
  const int grp = threadIdx.x / G, tid = threadIdx.x % G;
  const acc_t inv_tau = acc_t(p.inv_tau), delta = acc_t(p.delta);
  const DevExp ex;
  const bool soft = Y != nullptr;
  for (int64_t r = int64_t(blockIdx.x) * R + grp; r < p.N; r += int64_t(gridDim.x) * R) {
    scalar_t* out = dA + r * p.V;
    const acc_t wr = w[r];
    const scalar_t *Ar = A + r * as, *Tr = T + r * ts;
    const scalar_t* Yr = soft ? Y + r * ys : nullptr;
    const RowSplit<scalar_t> rs(p.V, out, Ar, Tr, Yr);
    if (wr == acc_t(0)) {
      rs.for_each(p.V, tid, G, [&]<int N>(int64_t j) {
        acc_t z[N] = {};
        store_n<N>(out + j, z);
      });
      continue;
    }
    acc_t st[kAuxStats];
#pragma unroll
    for (int k = 0; k < kAuxStats; ++k) st[k] = stats[r * kAuxStats + k];
    const acc_t gw = g[r] * wr;
    const int64_t id = soft ? -1 : ids[r];
    const acc_t miss = soft || (id >= 0 && id < p.V) ? acc_t(0) : nan_of<acc_t>();
    rs.for_each(p.V, tid, G, [&]<int N>(int64_t j) {
      acc_t xa[N], xt[N], y[N];
      load_n<N>(Ar + j, xa);
      load_n<N>(Tr + j, xt);
      if (soft) {
        load_n<N>(Yr + j, y);
#pragma unroll
        for (int i = 0; i < N; ++i) y[i] = aux_soft_y(y[i], st, ex);
      } else {
#pragma unroll
        for (int i = 0; i < N; ++i) y[i] = (j + i == id) ? acc_t(1) : miss;
      }
#pragma unroll
      for (int i = 0; i < N; ++i)
        xa[i] = aux_grad(xa[i], sharpen_centred(xt[i], st[kAuxHT], inv_tau, st[kAuxThr], delta),
                         y[i], gw, st, ex);
      store_n<N>(out + j, xa);
    });
  }
}

// ---- launch: warp per row for small V, 512-thread block per row otherwise
constexpr int64_t kWarpRowMaxV = 2048;
constexpr int kSmallBlock = 128;  // 4 rows per block
constexpr int kLargeBlock = 512;

template <typename Launch>
void launch_rows(int64_t N, int64_t V, Launch&& launch) {
  const auto stream = current_stream();
  const int64_t cap = int64_t(sm_count()) * 64;
  if (V <= kWarpRowMaxV) {
    constexpr int R = kSmallBlock / 32;
    const int64_t blocks = std::min<int64_t>((N + R - 1) / R, cap);
    launch(std::integral_constant<int, 32>{}, std::integral_constant<int, kSmallBlock>{}, blocks,
           stream);
  } else {
    const int64_t blocks = std::min<int64_t>(N, cap);
    launch(std::integral_constant<int, kLargeBlock>{}, std::integral_constant<int, kLargeBlock>{},
           blocks, stream);
  }
  DMMD_LAUNCH_CHECK();
}

Params params_of(const at::Tensor& x, double tau, double top_p, double delta, bool nucleus) {
  return {x.size(0), x.size(1), 1.0 / tau, top_p, delta, nucleus};
}

std::tuple<at::Tensor, at::Tensor> generator_loss_cuda(const at::Tensor& student,
                                                       const at::Tensor& teacher,
                                                       const at::Tensor& aux,
                                                       const at::Tensor& weight, double tau,
                                                       double top_p, double delta) {
  const DeviceGuard guard(student.device());
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
  const Params p = params_of(S, tau, top_p, delta, sh.needs_nucleus());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, S.scalar_type(), "gen_loss_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    launch_rows(p.N, p.V, [&](auto G, auto B, int64_t blocks, cudaStream_t stream) {
      DMMD_LAUNCH(blocks, decltype(B)::value, 0, stream,
                  gen_forward_kernel<decltype(G)::value, decltype(B)::value, scalar_t>)(
          S.const_data_ptr<scalar_t>(), T.const_data_ptr<scalar_t>(), A.const_data_ptr<scalar_t>(),
          S.stride(0), T.stride(0), A.stride(0), w.const_data_ptr<acc_t>(), p,
          loss.data_ptr<acc_t>(), stats.data_ptr<acc_t>());
    });
  });
  return {loss, stats};
}

at::Tensor generator_loss_backward_cuda(const at::Tensor& grad_loss, const at::Tensor& student,
                                        const at::Tensor& teacher, const at::Tensor& aux,
                                        const at::Tensor& weight, const at::Tensor& stats,
                                        double tau, double delta) {
  const DeviceGuard guard(student.device());
  check_sharpen(tau, 1.0, delta);
  const at::Tensor S = rows_of(student, "student");
  const at::Tensor T = logits_like(teacher, "teacher", student, "student");
  const at::Tensor A = logits_like(aux, "aux", student, "student");
  const at::Tensor w = check_weight(weight, S, "student");
  const at::Tensor g = check_rowvec(grad_loss, "grad_loss", S, 0);
  const at::Tensor st = check_rowvec(stats, "stats", S, kGenStats);
  at::Tensor dS = at::empty(S.sizes(), S.options().memory_format(at::MemoryFormat::Contiguous));
  if (S.numel() == 0) return dS;
  const Params p = params_of(S, tau, 1.0, delta, false);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, S.scalar_type(), "gen_loss_bwd_cuda",
                                  [&] {
    using acc_t = at::opmath_type<scalar_t>;
    launch_rows(p.N, p.V, [&](auto G, auto B, int64_t blocks, cudaStream_t stream) {
      DMMD_LAUNCH(blocks, decltype(B)::value, 0, stream,
                  gen_backward_kernel<decltype(G)::value, decltype(B)::value, scalar_t>)(
          g.const_data_ptr<acc_t>(), S.const_data_ptr<scalar_t>(), T.const_data_ptr<scalar_t>(),
          A.const_data_ptr<scalar_t>(), S.stride(0), T.stride(0), A.stride(0),
          w.const_data_ptr<acc_t>(), st.const_data_ptr<acc_t>(), p, dS.data_ptr<scalar_t>());
    });
  });
  return dS;
}

struct Targets {
  bool soft;
  at::Tensor ids, logits;
};

Targets targets_of(const std::optional<at::Tensor>& ids, const std::optional<at::Tensor>& logits,
                   const at::Tensor& A, bool validate) {
  if (check_targets(ids, logits, A, validate))
    return {true, at::Tensor(), logits_like(*logits, "target_logits", A, "aux")};
  return {false, ids->contiguous(), at::Tensor()};
}

std::tuple<at::Tensor, at::Tensor> auxiliary_loss_cuda(
    const at::Tensor& aux, const at::Tensor& teacher, const std::optional<at::Tensor>& target_ids,
    const std::optional<at::Tensor>& target_logits, const at::Tensor& weight, double tau,
    double top_p, double delta, bool validate) {
  const DeviceGuard guard(aux.device());
  const Sharpen sh = check_sharpen(tau, top_p, delta);
  const at::Tensor A = rows_of(aux, "aux");
  const at::Tensor T = logits_like(teacher, "teacher", aux, "aux");
  const Targets y = targets_of(target_ids, target_logits, A, value_checks(validate));
  const at::Tensor w = check_weight(weight, A, "aux");
  const auto opts = A.options().dtype(acc_dtype(A));
  at::Tensor loss = at::empty({A.size(0)}, opts);
  at::Tensor stats = at::empty({A.size(0), kAuxStats}, opts);
  if (A.size(0) == 0) return {loss, stats};
  TORCH_CHECK(A.size(1) >= 1, "aux: expected V >= 1 classes, got shape ", A.sizes());
  const Params p = params_of(A, tau, top_p, delta, sh.needs_nucleus());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, A.scalar_type(), "aux_loss_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    launch_rows(p.N, p.V, [&](auto G, auto B, int64_t blocks, cudaStream_t stream) {
      DMMD_LAUNCH(blocks, decltype(B)::value, 0, stream,
                  aux_forward_kernel<decltype(G)::value, decltype(B)::value, scalar_t>)(
          A.const_data_ptr<scalar_t>(), T.const_data_ptr<scalar_t>(),
          y.soft ? y.logits.const_data_ptr<scalar_t>() : nullptr,
          y.soft ? nullptr : y.ids.const_data_ptr<int64_t>(), A.stride(0), T.stride(0),
          y.soft ? y.logits.stride(0) : 0, w.const_data_ptr<acc_t>(), p, loss.data_ptr<acc_t>(),
          stats.data_ptr<acc_t>());
    });
  });
  return {loss, stats};
}

at::Tensor auxiliary_loss_backward_cuda(const at::Tensor& grad_loss, const at::Tensor& aux,
                                        const at::Tensor& teacher,
                                        const std::optional<at::Tensor>& target_ids,
                                        const std::optional<at::Tensor>& target_logits,
                                        const at::Tensor& weight, const at::Tensor& stats,
                                        double tau, double delta) {
  const DeviceGuard guard(aux.device());
  check_sharpen(tau, 1.0, delta);
  const at::Tensor A = rows_of(aux, "aux");
  const at::Tensor T = logits_like(teacher, "teacher", aux, "aux");
  const Targets y = targets_of(target_ids, target_logits, A, /*validate=*/false);
  const at::Tensor w = check_weight(weight, A, "aux");
  const at::Tensor g = check_rowvec(grad_loss, "grad_loss", A, 0);
  const at::Tensor st = check_rowvec(stats, "stats", A, kAuxStats);
  at::Tensor dA = at::empty(A.sizes(), A.options().memory_format(at::MemoryFormat::Contiguous));
  if (A.numel() == 0) return dA;
  const Params p = params_of(A, tau, 1.0, delta, false);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, A.scalar_type(), "aux_loss_bwd_cuda",
                                  [&] {
    using acc_t = at::opmath_type<scalar_t>;
    launch_rows(p.N, p.V, [&](auto G, auto B, int64_t blocks, cudaStream_t stream) {
      DMMD_LAUNCH(blocks, decltype(B)::value, 0, stream,
                  aux_backward_kernel<decltype(G)::value, decltype(B)::value, scalar_t>)(
          g.const_data_ptr<acc_t>(), A.const_data_ptr<scalar_t>(), T.const_data_ptr<scalar_t>(),
          y.soft ? y.logits.const_data_ptr<scalar_t>() : nullptr,
          y.soft ? nullptr : y.ids.const_data_ptr<int64_t>(), A.stride(0), T.stride(0),
          y.soft ? y.logits.stride(0) : 0, w.const_data_ptr<acc_t>(), st.const_data_ptr<acc_t>(),
          p, dA.data_ptr<scalar_t>());
    });
  });
  return dA;
}

}  // namespace
}  // namespace dmmd

DMMD_CUDA_IMPL(m) {
  m.impl("moment_generator_loss", &dmmd::generator_loss_cuda);
  m.impl("moment_generator_loss_backward", &dmmd::generator_loss_backward_cuda);
  m.impl("moment_auxiliary_loss", &dmmd::auxiliary_loss_cuda);
  m.impl("moment_auxiliary_loss_backward", &dmmd::auxiliary_loss_backward_cuda);
}
