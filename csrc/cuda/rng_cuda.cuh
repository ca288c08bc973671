// Philox state for a CUDA op. With an explicit seed it is (seed, offset);
// otherwise the generator's state (runtime.cuh: the CUDA generator's
// philox_cuda_state, advanced by `increment` 32-bit draws, which stays
// correct under CUDA-graph capture and replay).
#pragma once
#include "runtime.cuh"

namespace dmmd {

inline at::PhiloxCudaState philox_state_cuda(const std::optional<at::Generator>& gen,
                                             std::optional<int64_t> seed, int64_t offset,
                                             uint64_t increment) {
  TORCH_CHECK(offset >= 0, "offset: expected a non-negative integer, got ", offset);
  if (seed.has_value())
    return at::PhiloxCudaState(static_cast<uint64_t>(*seed), static_cast<uint64_t>(offset));
  return generator_philox_state(gen, increment);
}

}  // namespace dmmd
