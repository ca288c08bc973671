// warp.h: warp-synchronous operations (__syncwarp, shuffles, votes, match,
// reduce) as meetings of the lanes of a mask, and __activemask.
//
// A lane arrives with its mask, operation and value and waits; when the last
// lane of the mask arrives, every lane's result is computed from all their
// values at once and the lanes resume. Computing at release (rather than each
// lane reading the others' values later) keeps a fast lane's next operation
// from overwriting a value that a slow lane has not read yet.
//
// Checked as CUDA requires: the mask contains the calling lane and names no
// exited lane, and its lanes call the same intrinsic with the same mask.
// Lanes beyond a partial last warp are left out of masks, as if absent.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "block.h"
#include "scheduler.h"

#pragma GCC visibility push(hidden)  // one emulator per module (simt.h)

namespace simt::detail {

enum Shfl : uint8_t { kShflIdx, kShflUp, kShflDown, kShflXor };
enum Vote : uint8_t { kBallot, kAny, kAll };
enum Match : uint8_t { kMatchAny, kMatchAll };
enum Reduce : uint8_t { kAdd, kMinU, kMaxU, kMinS, kMaxS, kAnd, kOr, kXor };

// ---------------------------------------------------------------- meeting

inline void check_mask(const Warp& w, const Thread& t, uint32_t mask, const Site& site) {
  if (!(mask >> (t.tid % 32) & 1u))
    fail([&] {
      return at(site) + ": " + lane_name(t) + " calls it with mask " + hex(mask) +
             ", which omits the calling lane";
    });
  if (mask & ~w.live)
    fail([&] {
      return at(site) + ": " + lane_name(t) + " calls it with mask " + hex(mask) +
             ", which names exited lanes " + ranges(mask & ~w.live);
    });
}

[[noreturn]] inline void group_conflict(const Thread& t, const WarpArgs& a, const Site& site,
                                         const WarpGroup& g, const char* what) {
  fail([&] {
    return "lanes of warp " + std::to_string(t.tid / 32) + " in " + block_name() + " " + what +
           ": lane " + std::to_string(t.tid % 32) + " at " + at(site) + " with mask " +
           hex(a.mask) + ", while lanes " + ranges(g.arrived) + " wait at " + at(g.site) +
           " with mask " + hex(g.mask);
  });
}

// The group the calling lane joins: the pending one with its mask, or a new
// one. Groups with overlapping masks may wait side by side (lanes 0-15 at a
// full-mask __syncwarp while lanes 16-31 finish a half-warp shuffle), but a
// lane that a group waits for must not go to an operation that needs a lane
// of that group: neither could ever complete.
inline uint32_t join_group(Warp& w, const Thread& t, const WarpArgs& a, const Site& site) {
  const uint32_t lane = t.tid % 32;
  uint32_t found = w.n_groups;
  for (uint32_t g = 0; g < w.n_groups; ++g) {
    const WarpGroup& G = w.groups[g];
    if (G.mask == a.mask) {
      if (G.op != a.op || G.variant != a.variant)
        group_conflict(t, a, site, G, "meet at different warp operations");
      found = g;
    } else if ((G.mask >> lane & 1u) && (G.arrived & a.mask)) {
      group_conflict(t, a, site, G, "use different masks");
    }
  }
  if (found < w.n_groups) return found;
  w.groups[w.n_groups] = WarpGroup{a.mask, 0, a.op, a.variant, site};
  return w.n_groups++;
}

// ---------------------------------------------------------------- results

// Source lane of a shuffle, by PTX's shfl.sync rules: up, down and xor read
// their own value when the source falls outside the segment (xor may read an
// earlier one); idx wraps within the segment.
inline uint32_t shuffle_source(uint32_t lane, const WarpArgs& a) {
  const uint32_t w = uint32_t(a.width), lo = lane & ~(w - 1), hi = lo + w - 1;
  const uint32_t b = uint32_t(a.arg) & 31u;
  switch (a.variant) {
    case kShflIdx: return lo | (uint32_t(a.arg) & (w - 1));
    case kShflUp: return lane >= lo + b ? lane - b : lane;
    case kShflDown: return lane + b <= hi ? lane + b : lane;
    default: return (lane ^ b) <= hi ? lane ^ b : lane;
  }
}

inline uint32_t reduce_step(uint8_t kind, uint32_t r, uint32_t v) {
  const auto sr = int32_t(r), sv = int32_t(v);
  switch (kind) {
    case kAdd: return r + v;
    case kMinU: return v < r ? v : r;
    case kMaxU: return v > r ? v : r;
    case kMinS: return uint32_t(sv < sr ? sv : sr);
    case kMaxS: return uint32_t(sv > sr ? sv : sr);
    case kAnd: return r & v;
    case kOr: return r | v;
    default: return r ^ v;
  }
}

// Every lane's result of a complete group.
inline void compute_results(Thread* lanes, const WarpGroup& g) {
  const uint32_t m = g.mask;
  auto each_lane = [m](auto&& f) {
    for (uint32_t rest = m; rest; rest &= rest - 1) f(uint32_t(std::countr_zero(rest)));
  };
  auto value = [lanes](uint32_t l) { return lanes[l].warp.value; };
  auto give_all = [&](uint64_t r) { each_lane([&](uint32_t l) { lanes[l].result = r; }); };
  switch (g.op) {
    case WarpOp::Sync: return;
    case WarpOp::Shfl:
      return each_lane([&](uint32_t l) {
        const uint32_t src = shuffle_source(l, lanes[l].warp);
        lanes[l].result = m >> src & 1u ? value(src) : undefined_value<uint64_t>();
      });
    case WarpOp::Vote: {
      uint32_t ballot = 0;
      each_lane([&](uint32_t l) { ballot |= uint32_t(value(l) != 0) << l; });
      if (g.variant == kAny) return give_all(ballot != 0);
      if (g.variant == kAll) return give_all(ballot == m);
      return give_all(ballot);
    }
    case WarpOp::Match:
      return each_lane([&](uint32_t l) {
        uint32_t same = 0;  // the lanes holding this lane's value
        each_lane([&](uint32_t k) { same |= uint32_t(value(k) == value(l)) << k; });
        lanes[l].result = g.variant == kMatchAny ? same : same == m ? m : 0;
      });
    case WarpOp::Reduce: {
      const uint32_t first = uint32_t(std::countr_zero(m));
      uint32_t r = uint32_t(value(first));
      each_lane([&](uint32_t l) {
        if (l != first) r = reduce_step(g.variant, r, uint32_t(value(l)));
      });
      return give_all(r);
    }
  }
}

inline void release_group(Block& b, Warp& w, uint32_t g, uint32_t warp) {
  Thread* lanes = &b.threads[warp * 32];
  compute_results(lanes, w.groups[g]);
  for (uint32_t l = 0; l < 32; ++l)
    if (w.groups[g].mask >> l & 1u) lanes[l].state = State::Ready;
  w.groups[g] = w.groups[--w.n_groups];
}

// The calling lane's part in one warp operation; returns its result.
inline uint64_t warp_op(WarpArgs a, const Site& site) {
  Block& b = g_block;
  Thread& t = running_thread(site);
  const uint32_t warp = t.tid / 32;
  Warp& w = b.warps[warp];
  a.mask &= w.exists;
  check_mask(w, t, a.mask, site);
  const uint32_t g = join_group(w, t, a, site);
  t.warp = a, t.site = site, t.state = State::AtWarp;
  w.groups[g].arrived |= 1u << (t.tid % 32);
  if (w.groups[g].arrived == w.groups[g].mask) release_group(b, w, g, warp);
  switch_away(&t, false);
  return t.result;
}

// ---------------------------------------------------------------- operations

template <typename T>
uint64_t bits_of(const T& v) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8,
                "warp operations move trivially copyable values of at most 8 bytes");
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  return u;
}

template <typename T>
T from_bits(uint64_t u) {
  T v;
  std::memcpy(static_cast<void*>(&v), &u, sizeof(T));
  return v;
}

template <typename T>
T shuffle(uint32_t mask, const T& v, uint8_t mode, int arg, int width, const Site& site) {
  if (width < 1 || width > 32 || (width & (width - 1)))
    fail([&] {
      return at(site) + ": width " + std::to_string(width) + " is not a power of 2 in 1..32";
    });
  return from_bits<T>(warp_op({WarpOp::Shfl, mode, width, mask, arg, bits_of(v)}, site));
}

inline uint32_t vote(uint32_t mask, int pred, uint8_t kind, const Site& site) {
  return uint32_t(warp_op({WarpOp::Vote, kind, 32, mask, 0, pred != 0}, site));
}

template <typename T>
uint32_t match(uint32_t mask, const T& v, uint8_t kind, const Site& site) {
  static_assert(std::is_arithmetic_v<T> && (sizeof(T) == 4 || sizeof(T) == 8),
                "__match_*_sync takes 32- or 64-bit values");
  return uint32_t(warp_op({WarpOp::Match, kind, 32, mask, 0, bits_of(v)}, site));
}

inline uint32_t reduce(uint32_t mask, uint32_t v, uint8_t kind, const Site& site) {
  return uint32_t(warp_op({WarpOp::Reduce, kind, 32, mask, 0, v}, site));
}

// __activemask: waits until the block can make no other progress, then
// returns the lanes of its warp waiting at the same __activemask.
inline uint32_t converge(const Site& site) {
  Block& b = g_block;
  Thread& t = running_thread(site);
  t.state = State::AtConverge, t.site = site;
  ++b.converging;
  switch_away(&t, false);
  return uint32_t(t.result);
}

}  // namespace simt::detail

#pragma GCC visibility pop
