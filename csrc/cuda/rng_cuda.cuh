// Philox state for a CUDA op. With an explicit seed, the call index `offset`
// (philox.h) is stored as 4 * offset, the generator's unit; otherwise the
// generator's state (runtime.cuh: the CUDA generator's philox_cuda_state,
// advanced by kGeneratorIncrement 32-bit draws, which stays correct under
// CUDA-graph capture and replay). Kernels turn it back into a call index with
// unpack_call.
#pragma once
#include "runtime.cuh"

#include "dmmd/philox.h"

namespace dmmd {

inline at::PhiloxCudaState philox_state_cuda(const std::optional<at::Generator>& gen,
                                             std::optional<int64_t> seed, int64_t offset) {
  TORCH_CHECK(offset >= 0 && static_cast<uint64_t>(offset) <= kMaxOffset,
              "offset: expected an integer in [0, 2^61) (it counts calls: each offset owns its "
              "own random numbers), got ", offset);
  if (seed.has_value())
    return at::PhiloxCudaState(static_cast<uint64_t>(*seed), 4 * static_cast<uint64_t>(offset));
  return generator_philox_state(gen, kGeneratorIncrement);
}

struct PhiloxCall {
  uint64_t seed, offset;  // offset: the call index of philox.h
};

// On the device: the key and call index of a state made by philox_state_cuda.
__device__ __forceinline__ PhiloxCall unpack_call(const at::PhiloxCudaState& st) {
  const auto [seed, offset] = at::cuda::philox::unpack(st);
  return PhiloxCall{seed, offset / 4};
}

}  // namespace dmmd
