// cub::BlockReduce for the SIMT emulator, with CUB's contract: every thread
// of the block calls it with TempStorage in shared memory; the aggregate is
// defined in thread 0 only (other threads get a poison pattern, so code that
// reads it elsewhere shows); reusing TempStorage needs a __syncthreads first.
//
// Thread 0 combines in the order of CUB's default algorithm (warp
// reductions): within each warp a shuffle-down tree with offsets 1, 2, 4, 8,
// 16, op(lower lane, higher lane); then the warp aggregates in warp order.
// For a non-associative op (float sums) the result is then CUB's bit for bit.
#pragma once

#include <cstring>
#include <source_location>
#include <string>
#include <type_traits>

#include "../../simt.h"

namespace cub {

struct Sum {
  template <typename T>
  T operator()(const T& a, const T& b) const { return a + b; }
};
struct Max {
  template <typename T>
  T operator()(const T& a, const T& b) const { return a < b ? b : a; }
};
struct Min {
  template <typename T>
  T operator()(const T& a, const T& b) const { return b < a ? b : a; }
};

enum BlockReduceAlgorithm {
  BLOCK_REDUCE_RAKING_COMMUTATIVE_ONLY,
  BLOCK_REDUCE_RAKING,
  BLOCK_REDUCE_WARP_REDUCTIONS,
};

template <typename T, int BLOCK_DIM_X,
          BlockReduceAlgorithm ALGORITHM = BLOCK_REDUCE_WARP_REDUCTIONS, int BLOCK_DIM_Y = 1,
          int BLOCK_DIM_Z = 1, int LEGACY_PTX_ARCH = 0>
class BlockReduce {
  static constexpr int kThreads = BLOCK_DIM_X * BLOCK_DIM_Y * BLOCK_DIM_Z;
  static_assert(std::is_trivially_copyable_v<T>, "the emulated BlockReduce copies T bytewise");
  using Loc = std::source_location;

 public:
  // One slot per thread (CUB needs less; the size is not part of the API).
  struct TempStorage {
    alignas(T) unsigned char slot[kThreads][sizeof(T)];
  };

  explicit BlockReduce(TempStorage& storage) : storage_(storage) {}
  BlockReduce() : storage_(private_storage()) {}

  template <typename Op>
  T Reduce(T input, Op op, Loc loc = Loc::current()) {
    return reduce(input, op, kThreads, loc);
  }
  template <typename Op>
  T Reduce(T input, Op op, int num_valid, Loc loc = Loc::current()) {
    return reduce(input, op, num_valid, loc);
  }
  template <int N, typename Op>
  T Reduce(T (&inputs)[N], Op op, Loc loc = Loc::current()) {
    T partial = inputs[0];
    for (int i = 1; i < N; ++i) partial = op(partial, inputs[i]);
    return reduce(partial, op, kThreads, loc);
  }
  T Sum(T input, Loc loc = Loc::current()) { return reduce(input, cub::Sum(), kThreads, loc); }
  T Sum(T input, int num_valid, Loc loc = Loc::current()) {
    return reduce(input, cub::Sum(), num_valid, loc);
  }
  template <int N>
  T Sum(T (&inputs)[N], Loc loc = Loc::current()) { return Reduce(inputs, cub::Sum(), loc); }

 private:
  static TempStorage& private_storage() {
    __shared__ TempStorage storage;
    return storage;
  }

  static int linear_tid(const simt::detail::Site& site) {
    if (blockDim.x != unsigned(BLOCK_DIM_X) || blockDim.y != unsigned(BLOCK_DIM_Y) ||
        blockDim.z != unsigned(BLOCK_DIM_Z)) {
      // Plain values: a lambda here must not hold a type of the hidden emulator.
      const char *file = site.file, *op = site.op;
      const unsigned line = site.line;
      simt::detail::fail([=] {
        return simt::detail::at({op, file, line}) + ": BlockReduce for a block of " +
               simt::detail::str(dim3(BLOCK_DIM_X, BLOCK_DIM_Y, BLOCK_DIM_Z)) +
               " used in a block of " + simt::detail::str(blockDim);
      });
    }
    return int(threadIdx.x + BLOCK_DIM_X * (threadIdx.y + BLOCK_DIM_Y * threadIdx.z));
  }

  T load(int i) const {
    T v;
    std::memcpy(static_cast<void*>(&v), storage_.slot[i], sizeof(T));
    return v;
  }

  // Lanes [0, n) of the warp starting at thread `base`, as CUB's shuffle tree.
  template <typename Op>
  T warp_reduce(int base, int n, Op& op) const {
    T v[32];
    for (int l = 0; l < n; ++l) v[l] = load(base + l);
    for (int offset = 1; offset < 32; offset *= 2)
      for (int l = 0; l + offset < n; ++l) v[l] = op(v[l], v[l + offset]);
    return v[0];
  }

  template <typename Op>
  T reduce(T input, Op op, int num_valid, const Loc& loc) {
    const simt::detail::Site site = simt::detail::site_of("cub::BlockReduce", loc);
    const int tid = linear_tid(site);
    std::memcpy(storage_.slot[tid], &input, sizeof(T));
    simt::detail::sync_threads(1, site);
    if (tid != 0 || num_valid < 1) return simt::detail::undefined_value<T>();
    const int n = num_valid < kThreads ? num_valid : kThreads;
    T acc = warp_reduce(0, n < 32 ? n : 32, op);
    for (int base = 32; base < n; base += 32)
      acc = op(acc, warp_reduce(base, n - base < 32 ? n - base : 32, op));
    return acc;
  }

  TempStorage& storage_;
};

}  // namespace cub
