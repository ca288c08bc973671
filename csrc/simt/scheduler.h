// scheduler.h: a CUDA thread block as cooperative fibers, its __syncthreads,
// error reporting, and the grid loop behind a launch.
//
// Every emulated thread is a fiber. A fiber runs until it reaches a
// scheduling point (a barrier, a warp operation, __activemask, __nanosleep),
// then switches directly to the next runnable fiber in the block's order
// (SIMT_ORDER). Between two scheduling points a fiber runs alone, so shared
// memory needs no locks and atomics are plain read-modify-writes; a missing
// barrier shows up as a result that changes with the order. Blocks run one
// after another on the launching OS thread; launches are serialized.
//
// Misuse that hangs or corrupts on a GPU (deadlock, __syncthreads in divergent
// code, barriers with exited threads, bad warp masks) ends the launch with a
// simt::Error that names the block, the threads and the file:line of the
// intrinsics involved. Fibers of a failed block are abandoned, not unwound.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <numeric>
#include <string>

#include "block.h"
#include "config.h"
#include "fiber.h"
#include "shared.h"
#include "types.h"

#pragma GCC visibility push(hidden)  // one emulator per module (simt.h)

namespace simt::detail {

// ---------------------------------------------------------------- scheduling

// Next runnable thread in the block's order: the rest of the current pass,
// then one fresh pass (reshuffled in random order).
inline Thread* next_in_order(Block& b) {
  auto scan = [&b](size_t from) -> Thread* {
    for (size_t i = from; i < b.n; ++i)
      if (b.threads[b.order[i]].state == State::Ready) {
        b.next = i + 1;
        return &b.threads[b.order[i]];
      }
    b.next = b.n;
    return nullptr;
  };
  if (Thread* t = scan(b.next)) return t;
  if (b.opt.order == Order::Random) std::shuffle(b.order.begin(), b.order.end(), b.rng);
  return scan(0);
}

// __activemask waiters resume once nothing else can run: each gets the lanes
// of its warp waiting at the same call site, the lanes that would have
// reached it together on a GPU.
inline bool release_converged(Block& b) {
  if (!b.converging) return false;
  for (uint32_t base = 0; base < b.n; base += 32) {
    const uint32_t end = std::min(b.n, base + 32);
    auto waits_with = [&](uint32_t j, const Thread& t) {
      return b.threads[j].state == State::AtConverge && same_place(b.threads[j].site, t.site);
    };
    for (uint32_t i = base; i < end; ++i) {
      if (b.threads[i].state != State::AtConverge) continue;
      uint32_t mask = 0;
      for (uint32_t j = i; j < end; ++j)
        if (waits_with(j, b.threads[i])) mask |= 1u << (j - base);
      for (uint32_t j = i; j < end; ++j)
        if (mask >> (j - base) & 1u) b.threads[j].result = mask, b.threads[j].state = State::Ready;
    }
  }
  b.converging = 0;
  return true;
}

inline Thread* pick_next(Block& b) {
  if (Thread* t = next_in_order(b)) return t;
  return release_converged(b) ? next_in_order(b) : nullptr;
}

// Leaves the running context (thread `self`, or the launcher when null) for
// the next runnable thread, or for the launcher when none is left or an error
// is pending. Returns when `self` is resumed.
SIMT_NO_ASAN inline void switch_away(Thread* self, bool finished) {
  Block& b = g_block;
  Thread* next = b.error.empty() ? pick_next(b) : nullptr;
  if (next == self) return;
  b.current = next;
  if (next) g_thread_idx = next->idx;
  fiber::switch_to(self ? self->ctx : b.launcher, next ? next->ctx : b.launcher, finished);
}

// Ends the running fiber for good after an error; the launcher throws it.
[[noreturn]] SIMT_NO_ASAN inline void abandon_current(Block& b) {
  Thread& t = *b.current;
  t.state = State::Exited;
  b.stacks.mark_dirty(t.tid);
  switch_away(&t, true);
  std::abort();  // never resumed
}

// Reports misuse: thrown at once on the launcher (and outside kernels); on a
// fiber, recorded, and the fiber is abandoned for the launcher to throw.
// message() builds the text here, so that no temporary of it is left in an
// abandoned frame (LeakSanitizer would report it).
template <typename Message>
[[noreturn]] void fail(Message&& message) {
  Block& b = g_block;
  if (!b.current || !t_launching) throw Error(decorate(message()));
  if (b.error.empty()) b.error = decorate(message());
  abandon_current(b);
}

inline Thread& running_thread(const Site& site) {
  Block& b = g_block;
  if (!b.current || !t_launching) throw Error("simt: " + at(site) + " called outside a kernel");
  return *b.current;
}

// The value an undefined read returns (inactive shuffle source, CUB result
// outside thread 0): the poison byte, so that it does not look plausible.
template <typename T>
T undefined_value() {
  T v;
  const int p = g_block.opt.poison;
  std::memset(static_cast<void*>(&v), p < 0 ? 0xFF : p, sizeof(T));
  return v;
}

// A scheduling point that waits for nothing: lets the other threads run
// (spin-waits on shared memory make progress through it).
inline void yield_thread(const Site& site) { switch_away(&running_thread(site), false); }

// ---------------------------------------------------------------- __syncthreads

inline void release_sync(Block& b) {
  for (Thread& t : b.threads)
    if (t.state == State::AtSync) t.state = State::Ready;
  b.released = {b.sync.any, b.sync.all, b.sync.count};
  b.sync = BlockSync{};
}

inline SyncResult sync_threads(int pred, const Site& site) {
  Block& b = g_block;
  Thread& t = running_thread(site);
  if (b.alive < b.n && !b.opt.allow_exited)
    fail([&] {
      return at(site) + " reached by " + thread_name(t) + " after " +
             std::to_string(b.n - b.alive) + " thread(s) exited (threads " + exited_threads(b) +
             "); SIMT_ALLOW_EXITED=1 counts exited threads as arrived";
    });
  BlockSync& s = b.sync;
  if (s.arrived == 0) {
    s.site = site, s.first_tid = t.tid;
  } else if (!same_place(s.site, site)) {
    fail([&] {
      return "threads of " + block_name() + " wait at different barriers: thread " +
             std::to_string(s.first_tid) + " at " + at(s.site) + ", thread " +
             std::to_string(t.tid) + " at " + at(site) + " (a barrier in divergent code)";
    });
  }
  s.any |= pred != 0, s.all &= pred != 0, s.count += pred != 0;
  t.state = State::AtSync, t.site = site;
  if (++s.arrived == b.alive) release_sync(b);
  switch_away(&t, false);
  return b.released;
}

// ---------------------------------------------------------------- thread exit

inline void thread_exited(Block& b, Thread& t) {
  t.state = State::Exited;
  --b.alive;
  Warp& w = b.warps[t.tid / 32];
  const uint32_t bit = 1u << (t.tid % 32);
  w.live &= ~bit;
  for (uint32_t g = 0; g < w.n_groups; ++g)
    if (w.groups[g].mask & bit)
      fail([&] {
        return lane_name(t) + " exited while lanes " + ranges(w.groups[g].arrived) +
               " wait for it at " + at(w.groups[g].site) + " with mask " + hex(w.groups[g].mask);
      });
  if (b.sync.arrived == 0) return;
  if (!b.opt.allow_exited)
    fail([&] {
      return thread_name(t) + " exited while " + std::to_string(b.sync.arrived) +
             " thread(s) wait at " + at(b.sync.site) +
             " (a barrier in divergent code; SIMT_ALLOW_EXITED=1 counts exited threads as "
             "arrived)";
    });
  if (b.sync.arrived == b.alive) release_sync(b);
}

// Every fiber's entry: the kernel, as one thread.
SIMT_NO_ASAN inline void thread_main(void*) {
  fiber::started();
  Block& b = g_block;
  Thread& t = *b.current;
  try {
    b.body(b.params);
  } catch (const std::exception& e) {
    if (b.error.empty()) b.error = decorate(thread_name(t) + " threw: " + e.what());
  } catch (...) {
    if (b.error.empty()) b.error = decorate(thread_name(t) + " threw a non-std exception");
  }
  if (b.error.empty()) thread_exited(b, t);
  t.state = State::Exited;
  switch_away(&t, true);
  std::abort();  // never resumed
}

// ---------------------------------------------------------------- a block

inline void init_block(Block& b, uint3 bid) {
  g_block_idx = bid;
  poison_shared(b.opt.poison);
  b.alive = b.n, b.converging = 0, b.next = b.n;
  b.sync = BlockSync{}, b.released = SyncResult{};
  b.error.clear();
  const dim3 d = g_block_dim;
  for (uint32_t i = 0; i < b.n; ++i) {
    Thread& t = b.threads[i];
    b.stacks.clean_if_dirty(i);
    t.tid = i;
    t.idx = uint3{i % d.x, i / d.x % d.y, i / (d.x * d.y)};
    t.state = State::Ready;
    t.site = Site{};
    t.warp = WarpArgs{};
    fiber::prepare(t.ctx, b.stacks[i], &thread_main, nullptr);
  }
  for (uint32_t w = 0; w < b.warps.size(); ++w) {
    const uint32_t lanes = std::min<uint32_t>(32, b.n - 32 * w);
    b.warps[w].exists = b.warps[w].live = lanes == 32 ? ~0u : (1u << lanes) - 1;
    b.warps[w].n_groups = 0;
  }
}

inline void run_block(Block& b, uint3 bid) {
  init_block(b, bid);
  switch_away(nullptr, false);  // back when the block is done, stuck or failed
  if (b.error.empty() && b.alive == 0) return;
  for (uint32_t i = 0; i < b.n; ++i)
    if (b.threads[i].state != State::Exited) b.stacks.mark_dirty(i);
  if (b.error.empty())
    b.error = decorate("deadlock in " + block_name() + ": no thread can proceed; " +
                       waiting_threads(b));
  throw Error(std::move(b.error));
}

// ---------------------------------------------------------------- a grid

inline void check_config(dim3 grid, dim3 block, size_t smem) {
  const uint64_t n = uint64_t(block.x) * block.y * block.z;
  if (n == 0 || n > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64)
    fail([&] {
      return "invalid block " + str(block) + " (" + std::to_string(n) +
             " threads): 1..1024 threads, x,y <= 1024, z <= 64";
    });
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 ||
      grid.z > 65535)
    fail([&] { return "invalid grid " + str(grid) + ": x in 1..2^31-1, y and z in 1..65535"; });
  if (smem)
    fail([&] {
      return "dynamic shared memory (" + std::to_string(smem) +
             " bytes) is not emulated: use a fixed-size __shared__ array";
    });
}

inline void setup_launch(Block& b, dim3 grid, dim3 block) {
  b.n = block.x * block.y * block.z;
  b.threads.resize(b.n);
  b.warps.assign((b.n + 31) / 32, Warp{});
  b.order.resize(b.n);
  std::iota(b.order.begin(), b.order.end(), 0u);
  if (b.opt.order == Order::Rev) std::reverse(b.order.begin(), b.order.end());
  b.rng.seed(b.opt.seed);
  b.stacks.reserve(b.n, b.opt.stack_bytes);
  g_grid_dim = grid, g_block_dim = block;
}

// The order blocks run in: x fastest, reversed in reverse order; in random
// order a walk with a random stride coprime to the number of blocks.
struct BlockOrder {
  dim3 grid;
  uint64_t total, start = 0, stride = 1;

  BlockOrder(dim3 g, Block& b) : grid(g), total(uint64_t(g.x) * g.y * g.z) {
    if (b.opt.order != Order::Random) return;
    start = b.rng() % total;
    do stride = 1 + b.rng() % total;
    while (std::gcd(stride, total) != 1);
  }

  uint3 operator[](uint64_t k) const {
    if (g_block.opt.order == Order::Rev) k = total - 1 - k;
    if (g_block.opt.order == Order::Random) k = (start + k * stride) % total;
    return uint3{uint32_t(k % grid.x), uint32_t(k / grid.x % grid.y),
                 uint32_t(k / (uint64_t(grid.x) * grid.y))};
  }
};

struct LaunchScope {
  std::lock_guard<std::mutex> lock{g_launch_mutex};
  LaunchScope() { t_launching = true; }
  ~LaunchScope() {
    t_launching = false;
    g_block.current = nullptr;
    g_block.body = nullptr;
    g_block.launch = Site{};
  }
};

// Runs body(params) as every thread of every block of the grid.
inline void run_grid(dim3 grid, dim3 block, size_t smem, void (*body)(const void*),
                     const void* params, const Site& launch) {
  if (t_launching)
    fail([] { return std::string("a kernel launched a kernel (no dynamic parallelism)"); });
  LaunchScope scope;
  Block& b = g_block;
  b.launch = launch;
  check_config(grid, block, smem);
  b.opt = read_options();
  b.body = body, b.params = params;
  setup_launch(b, grid, block);
  const BlockOrder order(grid, b);
  for (uint64_t k = 0; k < order.total; ++k) run_block(b, order[k]);
}

}  // namespace simt::detail

#pragma GCC visibility pop
