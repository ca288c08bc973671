// Everything a .cu file of this project takes from the CUDA runtime and from
// ATen's CUDA side, in one header, so that the same sources build two ways:
//   nvcc (the real kernels, registered for the CUDA dispatch key of dmmd_ext);
//   the host compiler with -DDMMD_SIMT=1 against the SIMT emulator
//   (csrc/simt/), registered for CPU tensors in the dmmd_ext_simt namespace.
// Kernel files use only: DMMD_LAUNCH, DMMD_CUDA_IMPL, dmmd::DeviceGuard,
// dmmd::current_stream(), dmmd::sm_count(), dmmd::value_checks(),
// dmmd::generator_philox_state(), DMMD_LAUNCH_CHECK(), cub::BlockReduce and
// at::cuda::philox::unpack.
#pragma once
#include <ATen/core/Generator.h>

#include <cstdint>
#include <optional>

#if defined(DMMD_SIMT)
#include "torch_runtime.h"  // csrc/simt/: emulated stream, guard, generator, launch
#include "cub/block/block_reduce.cuh"  // csrc/simt/cub: the emulated BlockReduce
#define DMMD_CUDA_NAMESPACE dmmd_ext_simt
#define DMMD_CUDA_KEY CPU
#define DMMD_LAUNCH(grid, block, smem, stream, ...) \
  ::simt::Launch(__VA_ARGS__, grid, block, smem, stream)
#define DMMD_LAUNCH_CHECK() \
  do {                      \
  } while (0)
#else
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/PhiloxUtils.cuh>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <cub/block/block_reduce.cuh>

#include <mutex>
#define DMMD_CUDA_NAMESPACE dmmd_ext
#define DMMD_CUDA_KEY CUDA
// kernel<<<grid, block, smem, stream>>>: the kernel comes last because a
// template-id such as k<128, float> holds a comma.
#define DMMD_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define DMMD_LAUNCH_CHECK() C10_CUDA_KERNEL_LAUNCH_CHECK()

namespace dmmd {

using DeviceGuard = c10::cuda::CUDAGuard;

inline cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream(); }

inline int sm_count() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount; }

// Value checks (validate=True) read device memory back, a sync that CUDA-graph
// capture forbids: they are skipped while the current stream is capturing.
inline bool value_checks(bool validate) {
  return validate &&
         c10::cuda::currentStreamCaptureStatusMayInitCtx() == c10::cuda::CaptureStatus::None;
}

// The CUDA generator's philox_cuda_state, advanced by `increment` 32-bit
// draws; unpacked on the device, which keeps CUDA-graph capture and replay
// correct.
inline at::PhiloxCudaState generator_philox_state(const std::optional<at::Generator>& gen,
                                                  uint64_t increment) {
  auto* g = at::get_generator_or_default<at::CUDAGeneratorImpl>(
      gen, at::cuda::detail::getDefaultCUDAGenerator());
  std::lock_guard<std::mutex> lock(g->mutex_);
  return g->philox_cuda_state(increment);
}

}  // namespace dmmd
#endif

// The CUDA implementations of the ops: TORCH_LIBRARY_IMPL(dmmd_ext, CUDA, m),
// or in the emulated build TORCH_LIBRARY_IMPL(dmmd_ext_simt, CPU, m).
#define DMMD_CUDA_IMPL(m) TORCH_LIBRARY_IMPL(DMMD_CUDA_NAMESPACE, DMMD_CUDA_KEY, m)
