// CUDA forward corruption: one thread per token, same per-token math and
// Philox coordinates as cpu/corrupt.cpp (bitwise-identical results).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "runtime.cuh"
#include "dmmd/corrupt.h"
#include "dmmd/corrupt_host.h"
#include "dmmd/rates.h"
#include "rng_cuda.cuh"

namespace dmmd {
namespace {

template <typename index_t>
__global__ void corrupt_kernel(const index_t* __restrict__ x, index_t* __restrict__ out,
                               const double* __restrict__ alpha, int mode, int64_t row_len,
                               const bool* __restrict__ keep, int64_t n, int64_t process,
                               int64_t mask_id, int64_t vocab_size, at::PhiloxCudaState st) {
  const auto [seed, offset] = unpack_call(st);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = static_cast<index_t>(corrupt_token(x[i], rate_at(alpha, mode, row_len, i),
                                                keep && keep[i], process, mask_id, vocab_size,
                                                seed, offset, static_cast<uint64_t>(i)));
  }
}

at::Tensor corrupt_cuda(const at::Tensor& x0, const at::Tensor& alpha, int64_t process,
                        int64_t mask_id, int64_t vocab_size, const std::optional<at::Tensor>& keep,
                        std::optional<at::Generator> gen, std::optional<int64_t> seed,
                        int64_t offset, bool validate) {
  const DeviceGuard guard(x0.device());
  const Rates a = check_corrupt_args(x0, alpha, process, mask_id, vocab_size, keep,
                                     value_checks(validate));
  auto x = x0.contiguous();
  auto out = at::empty_like(x, at::MemoryFormat::Contiguous);
  const int64_t n = x.numel();
  if (n == 0) return out;
  const at::PhiloxCudaState st = philox_state_cuda(gen, seed, offset);
  at::Tensor kp = keep ? keep->contiguous() : at::Tensor();
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 65535 * 8);
  auto stream = current_stream();
  AT_DISPATCH_INDEX_TYPES(x.scalar_type(), "corrupt_cuda", [&] {
    DMMD_LAUNCH(blocks, threads, 0, stream, corrupt_kernel<index_t>)(
        x.data_ptr<index_t>(), out.data_ptr<index_t>(), a.values.data_ptr<double>(), a.mode,
        a.row_len, keep ? kp.data_ptr<bool>() : nullptr, n, process, mask_id, vocab_size, st);
  });
  DMMD_LAUNCH_CHECK();
  return out;
}

}  // namespace
}  // namespace dmmd

DMMD_CUDA_IMPL(m) { m.impl("corrupt", &dmmd::corrupt_cuda); }
