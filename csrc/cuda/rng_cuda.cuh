// Philox state for a CUDA op. With an explicit seed it is (seed, offset);
// otherwise the CUDA generator's philox_cuda_state, advanced by `increment`
// 32-bit draws, which stays correct under CUDA-graph capture and replay
// (the kernel unpacks it on the device).
#pragma once
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/PhiloxUtils.cuh>
#include <ATen/core/Generator.h>

#include <mutex>
#include <optional>

namespace dmmd {

inline at::PhiloxCudaState philox_state_cuda(const std::optional<at::Generator>& gen,
                                             std::optional<int64_t> seed, int64_t offset,
                                             uint64_t increment) {
  TORCH_CHECK(offset >= 0, "offset: expected a non-negative integer, got ", offset);
  if (seed.has_value())
    return at::PhiloxCudaState(static_cast<uint64_t>(*seed), static_cast<uint64_t>(offset));
  auto* g = at::get_generator_or_default<at::CUDAGeneratorImpl>(
      gen, at::cuda::detail::getDefaultCUDAGenerator());
  std::lock_guard<std::mutex> lock(g->mutex_);
  return g->philox_cuda_state(increment);
}

}  // namespace dmmd
