// simt.h: compiles CUDA device code as host C++ (g++ >= 12, C++20) and runs
// its kernels on the CPU, so that CI without a GPU executes every kernel.
//
// Each CUDA thread of a block is a fiber; barriers and warp operations are
// the points where fibers switch (scheduler.h, warp.h). What can go wrong on
// a GPU without being seen there is made visible: shared memory is poisoned
// before each block, the resume order of threads is selectable (SIMT_ORDER)
// so that a missing barrier changes the result, and misuse of barriers and
// warp masks throws simt::Error with the file:line of the intrinsics.
//
//   config.h      build switches and environment knobs
//   types.h       dim3, uint3, int4, float2, ..., cudaStream_t, cudaError_t
//   fiber.h       context switch (x86-64 assembly or ucontext), fiber stacks
//   shared.h      __shared__, and poisoned shared memory for every block
//                 (link with -Wl,-T,csrc/simt/shared.ld)
//   block.h       the state of a block's threads and warps, message texts
//   scheduler.h   scheduling, __syncthreads, errors, the grid loop
//   warp.h        __syncwarp, shuffles, votes, match, reduce, __activemask
//   launch.h      simt::launch(kernel, grid, block, smem, stream, args...),
//                 simt::Launch(kernel, grid, block, smem, stream)(args...)
//   builtins.h    keywords, threadIdx & co, the scheduling intrinsics
//   intrinsics.h  atomics, _rn arithmetic, conversions, bits, fast math
//
// Build with -std=c++20 -ffp-contract=off. The emulator's functions and state
// have hidden visibility: each shared library that includes it has its own
// (and poisons its own shared memory), whatever else the process loads.
//
// Not emulated: dynamic (extern) shared memory, cudaMemcpyToSymbol
// (__constant__ is a plain global), inline PTX, grid-wide sync and cooperative
// groups, texture memory, blocks that wait for each other, preemption (a
// spin-wait needs __nanosleep to yield).
#pragma once

#include "block.h"
#include "builtins.h"
#include "config.h"
#include "fiber.h"
#include "intrinsics.h"
#include "launch.h"
#include "scheduler.h"
#include "shared.h"
#include "types.h"
#include "warp.h"
