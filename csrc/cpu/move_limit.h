// corrupt_moves (include/dmmd/corrupt.h) as an integer compare, for the CPU
// corruption loops. uniform_from_bits(lo) depends only on m = lo >> 11 and is
// non-decreasing in m, so {m : uniform_from_bits(lo) < thr} is a prefix
// [0, moves_below(thr)): AVX2 has no 64-bit integer -> double conversion, and
// with the double compare the masked loop stayed scalar. Exact: the boundary
// is found by evaluating the same double expression next to it
// (tests/test_corrupt.py compiles this header and checks it).
#pragma once
#include <algorithm>
#include <cstdint>

#include "dmmd/noise.h"

namespace dmmd {

constexpr int64_t kDraws = int64_t{1} << 53;  // values of m = lo >> 11

inline double uniform_of(int64_t m) { return uniform_from_bits(static_cast<uint64_t>(m) << 11); }

inline int64_t moves_below(double thr) {
  if (!(thr > 0.0)) return 0;  // NaN too: a NaN compare never moves
  if (thr > 1.0) return kDraws;
  int64_t m = std::min(static_cast<int64_t>(thr * 9007199254740992.0), kDraws);  // thr 2^53
  while (m > 0 && !(uniform_of(m - 1) < thr)) --m;
  while (m < kDraws && uniform_of(m) < thr) ++m;
  return m;
}

}  // namespace dmmd
