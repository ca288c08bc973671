// block.h: the state of the emulated thread block, and how messages name it.
//
// One Block is in flight at a time (launches are serialized); each emulated
// CUDA thread is a Thread with its fiber context, its wait state and its
// part in a pending warp operation.
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <source_location>
#include <string>
#include <vector>

#include "config.h"
#include "fiber.h"
#include "types.h"

#pragma GCC visibility push(hidden)  // one emulator per module (simt.h)

namespace simt::detail {

// An intrinsic and its call site, for messages.
struct Site {
  const char* op = "";
  const char* file = "";
  unsigned line = 0;
};

inline Site site_of(const char* op, const std::source_location& loc) {
  return {op, loc.file_name(), unsigned(loc.line())};
}

inline bool same_place(const Site& a, const Site& b) {
  return a.line == b.line && (a.file == b.file || !std::strcmp(a.file, b.file));
}

enum class State : uint8_t { Ready, AtSync, AtWarp, AtConverge, Exited };

enum class WarpOp : uint8_t { Sync, Shfl, Vote, Match, Reduce };

// What a lane brings to a warp operation. `variant` is the shuffle mode, the
// vote, match or reduction kind.
struct WarpArgs {
  WarpOp op = WarpOp::Sync;
  uint8_t variant = 0;
  int width = 32;
  uint32_t mask = 0;
  int arg = 0;
  uint64_t value = 0;
};

struct Thread {
  fiber::Context ctx;
  uint3 idx{0, 0, 0};
  uint32_t tid = 0;  // linear index in the block
  State state = State::Ready;
  Site site;           // where it waits
  WarpArgs warp;       // its pending warp operation
  uint64_t result = 0; // what a warp operation or __activemask returns to it
};

// A warp operation being filled: the lanes of `mask` arrive one by one.
// Lanes with disjoint masks may fill several at once.
struct WarpGroup {
  uint32_t mask = 0, arrived = 0;
  WarpOp op = WarpOp::Sync;
  uint8_t variant = 0;
  Site site;
};

struct Warp {
  uint32_t exists = 0;  // lanes the block has (the last warp may be partial)
  uint32_t live = 0;    // lanes that have not exited
  uint32_t n_groups = 0;
  std::array<WarpGroup, 32> groups;
};

// The __syncthreads being filled, and the predicate results of the last one.
struct BlockSync {
  uint32_t arrived = 0, first_tid = 0;
  Site site;
  int any = 0, all = 1, count = 0;
};
struct SyncResult {
  int any = 0, all = 1, count = 0;
};

struct Block {
  // Per launch.
  Options opt;
  Site launch;
  void (*body)(const void*) = nullptr;
  const void* params = nullptr;
  std::mt19937_64 rng;
  uint32_t n = 0;
  std::vector<Thread> threads;
  std::vector<Warp> warps;
  std::vector<uint32_t> order;
  fiber::Stacks stacks;
  fiber::Context launcher;  // the launching OS thread's context
  // Per block.
  uint32_t alive = 0, converging = 0;
  size_t next = 0;  // where the scan of `order` resumes
  BlockSync sync;
  SyncResult released;
  Thread* current = nullptr;
  std::string error;
};

inline Block g_block;  // the one launch in flight (g_launch_mutex)
inline uint3 g_thread_idx{0, 0, 0}, g_block_idx{0, 0, 0};
inline dim3 g_block_dim, g_grid_dim;
inline std::mutex g_launch_mutex;
inline thread_local bool t_launching = false;

// ---------------------------------------------------------------- messages

inline std::string str(uint3 v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}

inline std::string at(const Site& s) {
  return std::string(s.op) + " (" + s.file + ":" + std::to_string(s.line) + ")";
}

inline std::string hex(uint32_t m) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", m);
  return buf;
}

// The indices i < n for which in(i), as ranges: "0-15,20".
template <typename In>
std::string ranges_where(uint32_t n, In in) {
  std::string s;
  for (uint32_t i = 0; i < n;) {
    if (!in(i)) {
      ++i;
      continue;
    }
    uint32_t j = i;
    while (j + 1 < n && in(j + 1)) ++j;
    s += (s.empty() ? "" : ",") + std::to_string(i) + (j > i ? "-" + std::to_string(j) : "");
    i = j + 1;
  }
  return s;
}

inline std::string ranges(uint32_t mask) {
  return ranges_where(32, [mask](uint32_t l) { return (mask >> l & 1u) != 0; });
}

inline std::string block_name() { return "block " + str(g_block_idx); }

inline std::string thread_name(const Thread& t) {
  return "thread " + std::to_string(t.tid) + " " + str(t.idx) + " of " + block_name();
}

inline std::string lane_name(const Thread& t) {
  return "lane " + std::to_string(t.tid % 32) + " of warp " + std::to_string(t.tid / 32) +
         " in " + block_name();
}

// The text of a simt::Error: "simt: <what> [kernel launched at file:line]".
inline std::string decorate(const std::string& what) {
  std::string s = "simt: " + what;
  const Site& l = g_block.launch;
  if (l.line)
    s += " [kernel launched at " + std::string(l.file) + ":" + std::to_string(l.line) + "]";
  return s;
}

inline std::string exited_threads(const Block& b) {
  return ranges_where(b.n, [&](uint32_t i) { return b.threads[i].state == State::Exited; });
}

// ", waiting for lanes ...": the lanes that a waiting lane's warp operation lacks.
inline std::string missing_lanes(const Block& b, const Thread& t) {
  const Warp& w = b.warps[t.tid / 32];
  for (uint32_t g = 0; g < w.n_groups; ++g)
    if (w.groups[g].mask == t.warp.mask)
      return ", waiting for lanes " + ranges(w.groups[g].mask & ~w.groups[g].arrived);
  return "";
}

// The waiting threads of a stuck block, consecutive ones with the same wait
// together: "threads 0-15 at __syncthreads (k.cu:12); threads 16-31 at ...".
inline std::string waiting_threads(const Block& b) {
  auto same_wait = [](const Thread& t, const Thread& u) {
    if (u.state != t.state || !same_place(u.site, t.site)) return false;
    return t.state != State::AtWarp || (u.tid / 32 == t.tid / 32 && u.warp.mask == t.warp.mask);
  };
  std::string s;
  int shown = 0;
  for (uint32_t i = 0, j; i < b.n; i = j) {
    const Thread& t = b.threads[i];
    for (j = i + 1; j < b.n && same_wait(t, b.threads[j]);) ++j;
    if (t.state != State::AtSync && t.state != State::AtWarp) continue;
    if (shown++ == 8) return s + "; ...";
    s += (s.empty() ? "threads " : "; threads ") + std::to_string(i) +
         (j - 1 > i ? "-" + std::to_string(j - 1) : "") + " at " + at(t.site);
    if (t.state == State::AtWarp) s += " with mask " + hex(t.warp.mask) + missing_lanes(b, t);
  }
  return s;
}

}  // namespace simt::detail

#pragma GCC visibility pop
