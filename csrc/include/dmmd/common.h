// Shared by CPU (.cpp) and CUDA (.cu) translation units: nothing here may use
// host-only or device-only APIs without a guard on __CUDACC__.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define DMMD_HD __host__ __device__ __forceinline__
#else
#define DMMD_HD inline
#endif

namespace dmmd {

// Process kinds, shared with Python (dmmd_ext/ops/_common.py).
enum Process : int64_t { kMasked = 0, kUniform = 1 };

// Which Philox sub-stream an op uses for which purpose (< 4: a call owns four
// Philox blocks, philox.h), so sub-streams of one call never collide with
// those of another call.
enum SubStream : uint32_t {
  kStreamCorruptDecision = 0,
  kStreamCorruptToken = 1,
  kStreamGumbel = 0,        // categorical sampling: one per vocabulary pair
  kStreamPosteriorGumbel = 0,
  kStreamPosteriorMove = 1, // reveal / mixture component decision
};

}  // namespace dmmd
