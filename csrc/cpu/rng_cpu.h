// (seed, offset) for a CPU op: explicit values win; otherwise one 64-bit draw
// from the CPU generator becomes the Philox key (offset 0), so the result is a
// pure function of the generator state and the generator advances by one draw.
#pragma once
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>

#include <mutex>
#include <optional>

#include "dmmd/philox.h"

namespace dmmd {

// offset counts calls (philox.h): [0, 2^61).
inline void check_offset(int64_t offset) {
  TORCH_CHECK(offset >= 0 && static_cast<uint64_t>(offset) <= kMaxOffset,
              "offset: expected an integer in [0, 2^61) (it counts calls: each offset owns its "
              "own random numbers), got ", offset);
}

struct PhiloxArgs {
  uint64_t seed;
  uint64_t offset;
};

inline PhiloxArgs philox_args_cpu(const std::optional<at::Generator>& gen,
                                  std::optional<int64_t> seed, int64_t offset) {
  check_offset(offset);
  if (seed.has_value()) return {static_cast<uint64_t>(*seed), static_cast<uint64_t>(offset)};
  auto* g = at::get_generator_or_default<at::CPUGeneratorImpl>(
      gen, at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(g->mutex_);
  return {g->random64(), 0};
}

}  // namespace dmmd
