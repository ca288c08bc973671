// The op namespace (schemas: dmmd/schemas.h), the RNG test hooks and the
// Python module stub. Kernels register their implementations next to their
// code: cpu/*.cpp for CPU, cuda/*.cu for CUDA (left out of CPU-only builds).
// Python wrappers, fake kernels and autograd live in dmmd_ext/ops/.
#include <Python.h>
#include <ATen/ATen.h>
#include <torch/library.h>

#include "dmmd/detmath.h"
#include "dmmd/noise.h"
#include "dmmd/schemas.h"

TORCH_LIBRARY(dmmd_ext, m) {
  dmmd::define_kernel_schemas(m);
  // --- test hooks for the RNG contract (this file, CPU only)
  m.def("philox(int seed, int offset, int sub_stream, Tensor elements) -> Tensor");
  m.def("philox_block(Tensor counters, int key) -> Tensor");
  m.def("gumbel_from_bits(Tensor bits) -> Tensor");
  m.def("exponential_from_bits(Tensor bits) -> Tensor");
}

namespace {

// [n] int64 element ids -> [n, 4] int64 Philox words (each in [0, 2^32)):
// dmmd::philox_draw, i.e. the counter of dmmd::philox_counter (philox.h).
at::Tensor philox_hook(int64_t seed, int64_t offset, int64_t sub_stream, const at::Tensor& elements) {
  TORCH_CHECK(elements.scalar_type() == at::kLong, "elements: expected int64, got ",
              elements.scalar_type());
  // The ops' own ranges (rng_cpu.h / rng_cuda.cuh; sub-streams are uint32).
  TORCH_CHECK(offset >= 0 && static_cast<uint64_t>(offset) <= dmmd::kMaxOffset,
              "offset: expected an integer in [0, 2^61), got ", offset);
  TORCH_CHECK(sub_stream >= 0 && sub_stream < int64_t{dmmd::kSubStreamsPerCall},
              "sub_stream: expected an integer in [0, ", dmmd::kSubStreamsPerCall, "), got ",
              sub_stream);
  auto e = elements.contiguous().to(at::kCPU);
  auto out = at::empty({e.numel(), 4}, e.options());
  auto* ep = e.data_ptr<int64_t>();
  auto* op = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < e.numel(); ++i) {
    auto r = dmmd::philox_draw(static_cast<uint64_t>(seed), static_cast<uint64_t>(offset),
                               static_cast<uint32_t>(sub_stream), static_cast<uint64_t>(ep[i]));
    op[4 * i + 0] = r.x;
    op[4 * i + 1] = r.y;
    op[4 * i + 2] = r.z;
    op[4 * i + 3] = r.w;
  }
  return out;
}

// [n, 4] int64 raw counter words -> [n, 4] output words for a 64-bit key (for
// the Random123 known-answer vectors, whose counters no (offset, element) reaches, and
// for torch-style counters (offset / 4, thread) in the disjointness test).
at::Tensor philox_block_hook(const at::Tensor& counters, int64_t key) {
  TORCH_CHECK(counters.scalar_type() == at::kLong && counters.dim() == 2 && counters.size(1) == 4,
              "counters: expected int64 [n, 4], got ", counters.scalar_type(), " ",
              counters.sizes());
  auto c = counters.contiguous().to(at::kCPU);
  auto out = at::empty_like(c);
  auto* cp = c.data_ptr<int64_t>();
  auto* op = out.data_ptr<int64_t>();
  const uint64_t k = static_cast<uint64_t>(key);
  for (int64_t i = 0; i < c.size(0); ++i) {
    const dmmd::U32x4 ctr{static_cast<uint32_t>(cp[4 * i]), static_cast<uint32_t>(cp[4 * i + 1]),
                          static_cast<uint32_t>(cp[4 * i + 2]),
                          static_cast<uint32_t>(cp[4 * i + 3])};
    const auto r = dmmd::philox4x32_10(ctr, static_cast<uint32_t>(k), static_cast<uint32_t>(k >> 32));
    op[4 * i + 0] = r.x;
    op[4 * i + 1] = r.y;
    op[4 * i + 2] = r.z;
    op[4 * i + 3] = r.w;
  }
  return out;
}

template <float (*F)(uint64_t)>
at::Tensor bits_hook(const at::Tensor& bits) {
  TORCH_CHECK(bits.scalar_type() == at::kLong, "bits: expected int64, got ", bits.scalar_type());
  auto b = bits.contiguous().to(at::kCPU);
  auto out = at::empty(b.sizes(), b.options().dtype(at::kFloat));
  auto* bp = b.data_ptr<int64_t>();
  auto* op = out.data_ptr<float>();
  for (int64_t i = 0; i < b.numel(); ++i) op[i] = F(static_cast<uint64_t>(bp[i]));
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dmmd_ext, CompositeExplicitAutograd, m) {
  m.impl("philox", &philox_hook);
  m.impl("philox_block", &philox_block_hook);
  m.impl("gumbel_from_bits", &bits_hook<dmmd::gumbel_from_bits>);
  m.impl("exponential_from_bits", &bits_hook<dmmd::exponential_from_bits>);
}

// Importing dmmd_ext._C runs the static registrations above; the module has
// no Python-level functions of its own.
extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", "dmmd_ext kernels (torch.ops.dmmd_ext)",
                            -1, nullptr};
  return PyModule_Create(&def);
}
