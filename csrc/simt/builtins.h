// builtins.h: what CUDA device code sees: the keywords, threadIdx & co, and
// the intrinsics that are scheduling points (barriers, warp operations).
// Each of those records its call site (std::source_location default
// argument) for error messages.
#pragma once

// Before the keyword macros: libstdc++ spells __attribute__((__noinline__)),
// which the __noinline__ macro would break. Later includes of these headers
// are no-ops.
#include <memory>
#include <source_location>

#include "scheduler.h"
#include "shared.h"  // __shared__
#include "types.h"
#include "warp.h"

#pragma GCC visibility push(hidden)  // one emulator per module (simt.h)

// ---------------------------------------------------------------- keywords

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __grid_constant__
#define __managed__
// An ordinary global, written directly from host code (no cudaMemcpyToSymbol).
#define __constant__

// ---------------------------------------------------------------- built-ins

inline const uint3& threadIdx = simt::detail::g_thread_idx;
inline const uint3& blockIdx = simt::detail::g_block_idx;
inline const dim3& blockDim = simt::detail::g_block_dim;
inline const dim3& gridDim = simt::detail::g_grid_dim;
inline constexpr int warpSize = 32;

// ---------------------------------------------------------------- block barriers

using simt_loc = std::source_location;
#define SIMT_HERE simt_loc loc = simt_loc::current()
#define SIMT_SITE(name) ::simt::detail::site_of(name, loc)

inline void __syncthreads(SIMT_HERE) { simt::detail::sync_threads(1, SIMT_SITE("__syncthreads")); }
inline int __syncthreads_or(int pred, SIMT_HERE) {
  return simt::detail::sync_threads(pred, SIMT_SITE("__syncthreads_or")).any;
}
inline int __syncthreads_and(int pred, SIMT_HERE) {
  return simt::detail::sync_threads(pred, SIMT_SITE("__syncthreads_and")).all;
}
inline int __syncthreads_count(int pred, SIMT_HERE) {
  return simt::detail::sync_threads(pred, SIMT_SITE("__syncthreads_count")).count;
}

// ---------------------------------------------------------------- warp operations

inline void __syncwarp(unsigned mask = 0xffffffffu, SIMT_HERE) {
  simt::detail::warp_op({simt::detail::WarpOp::Sync, 0, 32, mask, 0, 0}, SIMT_SITE("__syncwarp"));
}

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize, SIMT_HERE) {
  return simt::detail::shuffle(mask, var, simt::detail::kShflIdx, src_lane, width,
                               SIMT_SITE("__shfl_sync"));
}
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize, SIMT_HERE) {
  return simt::detail::shuffle(mask, var, simt::detail::kShflUp, int(delta), width,
                               SIMT_SITE("__shfl_up_sync"));
}
template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize, SIMT_HERE) {
  return simt::detail::shuffle(mask, var, simt::detail::kShflDown, int(delta), width,
                               SIMT_SITE("__shfl_down_sync"));
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize, SIMT_HERE) {
  return simt::detail::shuffle(mask, var, simt::detail::kShflXor, lane_mask, width,
                               SIMT_SITE("__shfl_xor_sync"));
}

inline unsigned __ballot_sync(unsigned mask, int pred, SIMT_HERE) {
  return simt::detail::vote(mask, pred, simt::detail::kBallot, SIMT_SITE("__ballot_sync"));
}
inline int __any_sync(unsigned mask, int pred, SIMT_HERE) {
  return int(simt::detail::vote(mask, pred, simt::detail::kAny, SIMT_SITE("__any_sync")));
}
inline int __all_sync(unsigned mask, int pred, SIMT_HERE) {
  return int(simt::detail::vote(mask, pred, simt::detail::kAll, SIMT_SITE("__all_sync")));
}
inline unsigned __activemask(SIMT_HERE) {
  return simt::detail::converge(SIMT_SITE("__activemask"));
}

template <typename T>
unsigned __match_any_sync(unsigned mask, T value, SIMT_HERE) {
  return simt::detail::match(mask, value, simt::detail::kMatchAny, SIMT_SITE("__match_any_sync"));
}
template <typename T>
unsigned __match_all_sync(unsigned mask, T value, int* pred, SIMT_HERE) {
  const unsigned r =
      simt::detail::match(mask, value, simt::detail::kMatchAll, SIMT_SITE("__match_all_sync"));
  *pred = r != 0;
  return r;
}

// sm_80 warp reductions, unsigned and signed as CUDA overloads them.
#define SIMT_WARP_REDUCE(name, kind_u, kind_s)                                            \
  inline unsigned name(unsigned mask, unsigned value, SIMT_HERE) {                        \
    return simt::detail::reduce(mask, value, simt::detail::kind_u, SIMT_SITE(#name));     \
  }                                                                                       \
  inline int name(unsigned mask, int value, SIMT_HERE) {                                  \
    const unsigned v = unsigned(value);                                                   \
    return int(simt::detail::reduce(mask, v, simt::detail::kind_s, SIMT_SITE(#name)));    \
  }
SIMT_WARP_REDUCE(__reduce_add_sync, kAdd, kAdd)
SIMT_WARP_REDUCE(__reduce_min_sync, kMinU, kMinS)
SIMT_WARP_REDUCE(__reduce_max_sync, kMaxU, kMaxS)
#undef SIMT_WARP_REDUCE
inline unsigned __reduce_and_sync(unsigned mask, unsigned value, SIMT_HERE) {
  return simt::detail::reduce(mask, value, simt::detail::kAnd, SIMT_SITE("__reduce_and_sync"));
}
inline unsigned __reduce_or_sync(unsigned mask, unsigned value, SIMT_HERE) {
  return simt::detail::reduce(mask, value, simt::detail::kOr, SIMT_SITE("__reduce_or_sync"));
}
inline unsigned __reduce_xor_sync(unsigned mask, unsigned value, SIMT_HERE) {
  return simt::detail::reduce(mask, value, simt::detail::kXor, SIMT_SITE("__reduce_xor_sync"));
}

// ---------------------------------------------------------------- control

// Aborts the launch with an Error (a GPU kernel's launch fails likewise).
[[noreturn]] inline void __trap(SIMT_HERE) {
  const simt::detail::Site site = SIMT_SITE("__trap");
  const simt::detail::Thread& t = simt::detail::running_thread(site);
  simt::detail::fail([&] { return simt::detail::at(site) + " in " + simt::detail::thread_name(t); });
}

// A scheduling point: spin-waits on other threads of the block progress.
inline void __nanosleep(unsigned, SIMT_HERE) {
  simt::detail::yield_thread(SIMT_SITE("__nanosleep"));
}

#undef SIMT_HERE
#undef SIMT_SITE

#pragma GCC visibility pop
