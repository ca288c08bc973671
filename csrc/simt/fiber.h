// fiber.h: execution contexts for the emulated CUDA threads, and their stacks.
//
// A Context is a suspended computation; switch_to() saves the running one and
// resumes another on the same OS thread. The x86-64 switch saves the six
// callee-saved registers of the SysV ABI on the old stack and pops them from
// the new one (the FP control words are not switched: kernels never change
// them). Elsewhere, or with SIMT_UCONTEXT=1, glibc's swapcontext does it.
// Switches are annotated for AddressSanitizer, which must know on which stack
// the code runs to unwind it and to keep its fake stacks apart.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "config.h"

#if SIMT_UCONTEXT
#include <ucontext.h>
#endif
#if SIMT_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#pragma GCC visibility push(hidden)  // one emulator per module (simt.h)

namespace simt::fiber {

using Entry = void (*)(void*);

struct Stack {
  unsigned char* lo = nullptr;
  size_t size = 0;
};

struct Context {
#if SIMT_UCONTEXT
  ucontext_t uc;
  Entry entry = nullptr;
  void* arg = nullptr;
#else
  void* sp = nullptr;  // saved stack pointer while suspended
#endif
  // The stack this context runs on, for ASan. The OS thread's own stack is
  // learned on the first switch away from it.
  const void* stack_lo = nullptr;
  size_t stack_size = 0;
};

#if !SIMT_UCONTEXT
// Weak, hidden and in a COMDAT group: every translation unit that includes
// this header emits the same code, the linker keeps one copy per module.
extern "C" void simt_switch_context(void** save_sp, void* load_sp);
extern "C" void simt_context_start();
#if defined(__CET__) && (__CET__ & 1)
#define SIMT_ENDBR "  endbr64\n"
#else
#define SIMT_ENDBR ""
#endif
__asm__(
    ".pushsection .text.simt_switch_context,\"axG\",@progbits,simt_switch_context,comdat\n"
    ".weak simt_switch_context\n"
    ".hidden simt_switch_context\n"
    ".type simt_switch_context,@function\n"
    "simt_switch_context:\n" SIMT_ENDBR
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size simt_switch_context, .-simt_switch_context\n"
    // A new context's first switch "returns" here with the entry in rbx and
    // its argument in r12; rbp = 0 and the undefined return address end
    // every unwinder's walk at this frame.
    ".weak simt_context_start\n"
    ".hidden simt_context_start\n"
    ".type simt_context_start,@function\n"
    "simt_context_start:\n"
    "  .cfi_startproc\n"
    "  .cfi_undefined rip\n"
    "  movq %r12, %rdi\n"
    "  callq *%rbx\n"
    "  ud2\n"
    "  .cfi_endproc\n"
    ".size simt_context_start, .-simt_context_start\n"
    ".popsection\n");
#undef SIMT_ENDBR
#endif

#if SIMT_ASAN
inline Context* g_switched_from = nullptr;  // one switching OS thread at a time
#endif

// Makes `c` run entry(arg) on `s` when it is first switched to. `entry` must
// never return: it ends by switching away for good.
#if SIMT_UCONTEXT
SIMT_NO_ASAN inline void ucontext_entry(unsigned hi, unsigned lo) {
  auto* c = reinterpret_cast<Context*>((uintptr_t(hi) << 32) | lo);
  c->entry(c->arg);
  std::abort();
}

inline void prepare(Context& c, Stack s, Entry entry, void* arg) {
  c.stack_lo = s.lo, c.stack_size = s.size;
  c.entry = entry, c.arg = arg;
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = s.lo;
  c.uc.uc_stack.ss_size = s.size;
  c.uc.uc_link = nullptr;
  // makecontext passes int arguments only: the pointer goes in two halves.
  const auto p = reinterpret_cast<uintptr_t>(&c);
  makecontext(&c.uc, reinterpret_cast<void (*)()>(&ucontext_entry), 2, unsigned(p >> 32),
              unsigned(p & 0xffffffffu));
}
#else
inline void prepare(Context& c, Stack s, Entry entry, void* arg) {
  c.stack_lo = s.lo, c.stack_size = s.size;
  // The frame simt_switch_context pops: r15 r14 r13 r12 rbx rbp, then the
  // return address. Nine words below the 16-aligned top leave rsp 16-aligned
  // after the ret, so the callq in simt_context_start is ABI-aligned.
  auto* top = reinterpret_cast<uintptr_t*>(s.lo + s.size);
  uintptr_t* sp = top - 9;
  for (int i = 0; i < 9; ++i) sp[i] = 0;
  sp[3] = reinterpret_cast<uintptr_t>(arg);    // r12
  sp[4] = reinterpret_cast<uintptr_t>(entry);  // rbx
  sp[6] = reinterpret_cast<uintptr_t>(&simt_context_start);
  c.sp = sp;
}
#endif

// Bookkeeping on arrival in a context, by a switch or at its entry.
SIMT_NO_ASAN inline void landed([[maybe_unused]] void* fake_stack) {
#if SIMT_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, &g_switched_from->stack_lo,
                                  &g_switched_from->stack_size);
#endif
}

// The first call of every entry function.
SIMT_NO_ASAN inline void started() { landed(nullptr); }

// Suspends `from` and resumes `to`. `from_finished`: `from` is never resumed
// (ASan then frees its fake stack).
SIMT_NO_ASAN inline void switch_to(Context& from, Context& to,
                                   [[maybe_unused]] bool from_finished) {
  void* fake_stack = nullptr;
#if SIMT_ASAN
  __sanitizer_start_switch_fiber(from_finished ? nullptr : &fake_stack, to.stack_lo,
                                 to.stack_size);
  g_switched_from = &from;
#endif
#if SIMT_UCONTEXT
  swapcontext(&from.uc, &to.uc);
#else
  simt_switch_context(&from.sp, to.sp);
#endif
  landed(fake_stack);
}

// Stacks for up to n contexts, each above a PROT_NONE guard page (an overflow
// faults instead of corrupting the neighbour), kept from launch to launch.
// Pages are committed as the fibers touch them.
class Stacks {
 public:
  Stacks() = default;
  Stacks(const Stacks&) = delete;
  Stacks& operator=(const Stacks&) = delete;
  ~Stacks() { release(); }

  void reserve(size_t n, size_t bytes) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    bytes = (bytes + page - 1) / page * page;
    if (base_ && n <= n_ && bytes == size_) return;
    release();
    const size_t stride = bytes + page;
    void* p = mmap(nullptr, n * stride, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (p == MAP_FAILED)
      throw Error("simt: cannot map " + std::to_string(n) + " fiber stacks of " +
                  std::to_string(bytes) + " bytes");
    base_ = static_cast<unsigned char*>(p);
    n_ = n, size_ = bytes, page_ = page;
    for (size_t i = 0; i < n; ++i) mprotect(base_ + i * stride, page, PROT_NONE);
    dirty_.assign(n, false);
  }

  Stack operator[](size_t i) const { return {base_ + i * (size_ + page_) + page_, size_}; }

  // A context abandoned mid-call (its block failed) leaves ASan's poisoning
  // of its frames on the stack; clean it before the stack is reused.
  void mark_dirty(size_t i) { dirty_[i] = true; }
  void clean_if_dirty(size_t i) {
    if (!dirty_[i]) return;
    dirty_[i] = false;
#if SIMT_ASAN
    __asan_unpoison_memory_region((*this)[i].lo, size_);
#endif
  }

 private:
  void release() {
    if (!base_) return;
#if SIMT_ASAN
    for (size_t i = 0; i < n_; ++i) clean_if_dirty(i);
#endif
    munmap(base_, n_ * (size_ + page_));
    base_ = nullptr, n_ = 0;
  }

  unsigned char* base_ = nullptr;
  size_t n_ = 0, size_ = 0, page_ = 0;
  std::vector<bool> dirty_;
};

}  // namespace simt::fiber

#pragma GCC visibility pop
