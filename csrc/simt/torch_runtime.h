// The torch side of the emulated CUDA build: what csrc/cuda/runtime.cuh takes
// from ATen's CUDA headers under nvcc, for kernels that run through the SIMT
// emulator on CPU tensors. There is one emulated device and one stream.
#pragma once
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>
#include <ATen/cuda/PhiloxCudaState.h>
#include <c10/core/Device.h>

#include <cstdlib>
#include <mutex>
#include <optional>

#include "simt.h"

namespace dmmd {

struct DeviceGuard {
  explicit DeviceGuard(c10::Device) {}
};

inline cudaStream_t current_stream() { return nullptr; }

// Grid sizes derived from the SM count change how rows map to blocks, never a
// result; SIMT_SM_COUNT varies it (default: an H100/H200's 132).
inline int sm_count() {
  static const int n = [] {
    const char* v = std::getenv("SIMT_SM_COUNT");
    const int k = v && *v ? std::atoi(v) : 132;
    return k > 0 ? k : 132;
  }();
  return n;
}

// Nothing is ever captured into a CUDA graph here.
inline bool value_checks(bool validate) { return validate; }

// No CUDA generator exists here: as on the CPU kernels (cpu/rng_cpu.h), one
// 64-bit draw of the CPU generator becomes the key at offset 0, so an
// emulated op with a generator equals the CPU op with the same generator state.
inline at::PhiloxCudaState generator_philox_state(const std::optional<at::Generator>& gen,
                                                  uint64_t /*increment*/) {
  auto* g = at::get_generator_or_default<at::CPUGeneratorImpl>(
      gen, at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(g->mutex_);
  return at::PhiloxCudaState(g->random64(), 0);
}

}  // namespace dmmd
