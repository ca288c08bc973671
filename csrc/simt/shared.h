// shared.h: __shared__ variables, and fresh (poisoned) shared memory for
// every block.
//
// A __shared__ variable is a function-local static: one copy, which the
// threads of the running block share. On a GPU a block's shared memory starts
// undefined, so before each block the emulator fills every __shared__
// variable with the poison byte (SIMT_POISON): a read of shared memory that no
// thread of the block wrote shows up as NaN or -1, not as a plausible value
// left by the previous block.
//
// To find them, __shared__ marks the statics with GCC's `noinit` attribute,
// which places them in .noinit (or .noinit.<name> for the COMDAT statics of
// inline functions and templates with external linkage); shared.ld gathers
// those into one section, simt_shared. A section attribute would be simpler,
// but GCC silently drops it on the statics of template instantiations (GCC PR
// 70435), and every kernel of this project is a template. For .noinit.<name>
// the assembler warns "setting incorrect section type" (-Wa,--no-warn
// silences it); kernels in an anonymous namespace, like the project's, have
// internal linkage and use plain .noinit.
//
// With SIMT_SHARED_SECTION=0 (for ASan builds) __shared__ variables are plain
// statics, so that ASan puts redzones around each; they are not poisoned.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>

#include "config.h"

#if SIMT_SHARED_SECTION
#define __shared__ __attribute__((noinit)) static
#else
#define __shared__ static
#endif

#pragma GCC visibility push(hidden)  // one emulator per module (simt.h)

namespace simt::detail {

#if SIMT_SHARED_SECTION
// Defined by shared.ld around the section.
extern "C" unsigned char __start_simt_shared[] __attribute__((weak));
extern "C" unsigned char __stop_simt_shared[] __attribute__((weak));

// A variable in .noinit, to check that this module was linked with shared.ld
// (weak: one per module, whatever the number of translation units).
__attribute__((weak, noinit)) unsigned char shared_probe;

inline bool shared_section_linked(uintptr_t lo, uintptr_t hi) {
  const auto probe = reinterpret_cast<uintptr_t>(&shared_probe);
  if (lo <= probe && probe < hi) return true;
  static bool warned = false;
  if (!warned)
    std::fprintf(stderr, "simt: __shared__ memory is not poisoned: link with "
                         "-Wl,-T,csrc/simt/shared.ld\n");
  warned = true;
  return false;
}
#endif

inline void poison_shared([[maybe_unused]] int byte) {
#if SIMT_SHARED_SECTION
  if (byte < 0) return;
  auto lo = reinterpret_cast<uintptr_t>(__start_simt_shared);
  auto hi = reinterpret_cast<uintptr_t>(__stop_simt_shared);
  __asm__("" : "+r"(lo), "+r"(hi));  // two symbols: the compiler may not relate them
  if (shared_section_linked(lo, hi)) std::memset(reinterpret_cast<void*>(lo), byte, hi - lo);
#endif
}

}  // namespace simt::detail

#pragma GCC visibility pop
