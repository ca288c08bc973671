// config.h: the emulator's compile-time switches and the environment knobs it
// reads at every launch (so a test can change them between two launches).
//
// Compile-time:
//   SIMT_UCONTEXT=1        portable ucontext context switch (the default off
//                          x86-64); x86-64 otherwise uses a 6-register switch
//                          in assembly, some 30x cheaper (glibc's swapcontext
//                          makes a sigprocmask system call per switch).
//   SIMT_SHARED_SECTION=0  __shared__ variables become plain statics, so that
//                          ASan puts redzones around each one (use it with
//                          -fsanitize=address). Default 1: they live in one
//                          linker section, poisoned before every block
//                          (shared.h).
// Environment (read per launch):
//   SIMT_ORDER=seq|rev|random  order in which runnable threads resume (seq)
//   SIMT_SEED=N                seed of the random order (0)
//   SIMT_ALLOW_EXITED=1        exited threads count as arrived at __syncthreads
//   SIMT_POISON=B|none         byte that fills shared memory before each block
//                              (0xFF: NaN floats, -1 integers)
//   SIMT_STACK=N[k|m]          fiber stack size (128k; 512k under ASan)
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__SANITIZE_ADDRESS__)
#define SIMT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIMT_ASAN 1
#endif
#endif
#ifndef SIMT_ASAN
#define SIMT_ASAN 0
#endif

// For the frames a fiber never returns from (its entry and its last switch):
// ASan would leave their redzones poisoned on a stack that the next block's
// fibers reuse, and report the new frames there as overflows.
#if SIMT_ASAN
#define SIMT_NO_ASAN __attribute__((no_sanitize_address))
#else
#define SIMT_NO_ASAN
#endif

#ifndef SIMT_UCONTEXT
#if defined(__x86_64__)
#define SIMT_UCONTEXT 0
#else
#define SIMT_UCONTEXT 1
#endif
#endif
#if !SIMT_UCONTEXT && !defined(__x86_64__)
#error "simt: the assembly context switch is x86-64 only; build with -DSIMT_UCONTEXT=1"
#endif

#ifndef SIMT_SHARED_SECTION
#define SIMT_SHARED_SECTION 1
#endif

namespace simt {

// Everything the emulator reports: bad launch configurations, deadlocks,
// barrier misuse, exceptions thrown by kernel code. Thrown out of the launch.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace simt

#pragma GCC visibility push(hidden)  // one emulator per module (simt.h)

namespace simt {

enum class Order { Seq, Rev, Random };

struct Options {
  Order order = Order::Seq;
  uint64_t seed = 0;
  bool allow_exited = false;
  int poison = 0xFF;  // -1: leave shared memory as the previous block left it
  size_t stack_bytes = 0;
};

namespace detail {

inline const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

[[noreturn]] inline void bad_env(const char* name, const char* value, const char* expected) {
  throw Error(std::string("simt: ") + name + "=" + value + ": expected " + expected);
}

inline uint64_t env_uint(const char* name, uint64_t fallback) {
  const char* v = env(name);
  if (!v) return fallback;
  char* end = nullptr;
  uint64_t x = std::strtoull(v, &end, 0);
  if (*end == 'k' || *end == 'K') x <<= 10, ++end;
  else if (*end == 'm' || *end == 'M') x <<= 20, ++end;
  if (end == v || *end) bad_env(name, v, "an unsigned integer (optionally with k or m)");
  return x;
}

inline Order env_order() {
  const char* v = env("SIMT_ORDER");
  if (!v || !std::strcmp(v, "seq")) return Order::Seq;
  if (!std::strcmp(v, "rev")) return Order::Rev;
  if (!std::strcmp(v, "random")) return Order::Random;
  bad_env("SIMT_ORDER", v, "seq, rev or random");
}

inline int env_poison() {
  const char* v = env("SIMT_POISON");
  if (v && !std::strcmp(v, "none")) return -1;
  const uint64_t b = env_uint("SIMT_POISON", 0xFF);
  if (b > 0xFF) bad_env("SIMT_POISON", v, "a byte value or none");
  return int(b);
}

inline Options read_options() {
  Options o;
  o.order = env_order();
  o.seed = env_uint("SIMT_SEED", 0);
  o.allow_exited = env_uint("SIMT_ALLOW_EXITED", 0) != 0;
  o.poison = env_poison();
  // ASan frames carry redzones: they need the larger default.
  o.stack_bytes = env_uint("SIMT_STACK", SIMT_ASAN ? 512u << 10 : 128u << 10);
  if (o.stack_bytes < (16u << 10)) o.stack_bytes = 16u << 10;
  return o;
}

}  // namespace detail
}  // namespace simt

#pragma GCC visibility pop
