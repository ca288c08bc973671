// CUDA categorical sampling: one thread block per row (grid-stride over
// rows), the shared row sampler of cuda/sample_row.cuh. Same semantics and
// Philox coordinates as cpu/sample.cpp, so an explicit (seed, offset) gives
// bitwise-identical draws (top-p: see sample_row.cuh).
//
// Memory contract: reads each row whose mask is True (see sample_row.cuh for
// the passes), never reads masked-out rows; writes int64 [...]. A generator
// offset advances by 4 (one sub-stream).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "runtime.cuh"
#include "dmmd/sample_host.h"
#include "rng_cuda.cuh"
#include "sample_row.cuh"

namespace dmmd {
namespace {

template <int BLOCK, typename T>
__global__ void __launch_bounds__(BLOCK, 2)
    sample_kernel(const T* __restrict__ logits, int64_t n, int64_t V, int64_t row_stride,
                  int64_t col_stride, const bool* __restrict__ mask, int64_t* __restrict__ out,
                  SampleParams p, at::PhiloxCudaState st) {
  __shared__ RowShared<BLOCK> sh;
  const auto [seed, offset] = unpack_call(st);
  p.seed = seed;
  p.offset = offset;
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    if (mask && !mask[r]) {
      if (threadIdx.x == 0) out[r] = -1;
      continue;
    }
    const int64_t v = sample_row_block<BLOCK>(logits + r * row_stride, V, col_stride, p,
                                              static_cast<uint64_t>(r), sh);
    if (threadIdx.x == 0) out[r] = v;
  }
}

template <int BLOCK, typename T>
void launch(const Rows& rows, const bool* mask, int64_t* out, const SampleParams& p,
            const at::PhiloxCudaState& st) {
  const int64_t grid = std::min<int64_t>(rows.n, 65535LL * 32);
  DMMD_LAUNCH(grid, BLOCK, 0, current_stream(), sample_kernel<BLOCK, T>)(
      rows.t.data_ptr<T>(), rows.n, rows.v, rows.row_stride, rows.col_stride, mask, out, p, st);
  DMMD_LAUNCH_CHECK();
}

at::Tensor sample_categorical_cuda(const at::Tensor& logits, double temperature, int64_t top_k,
                                   double top_p, const std::optional<at::Tensor>& mask,
                                   int64_t exclude, std::optional<at::Generator> gen,
                                   std::optional<int64_t> seed, int64_t offset) {
  const DeviceGuard guard(logits.device());
  const Rows rows = check_sample_args(logits, temperature, top_k, top_p, mask, exclude);
  auto out = at::empty(logits.sizes().slice(0, logits.dim() - 1), logits.options().dtype(at::kLong));
  if (rows.n == 0) return out;
  const at::PhiloxCudaState st = philox_state_cuda(gen, seed, offset);
  const SampleParams p = make_params(temperature, top_k, top_p, exclude, 0, 0);
  at::Tensor mk = mask ? mask->contiguous() : at::Tensor();
  const bool* mp = mask ? mk.data_ptr<bool>() : nullptr;
  DMMD_DISPATCH_LOGITS(rows.t.scalar_type(), "sample_cuda", [&] {
    if (row_block_threads(rows.v) == 128)
      launch<128, scalar_t>(rows, mp, out.data_ptr<int64_t>(), p, st);
    else
      launch<512, scalar_t>(rows, mp, out.data_ptr<int64_t>(), p, st);
  });
  return out;
}

}  // namespace
}  // namespace dmmd

DMMD_CUDA_IMPL(m) {
  m.impl("sample_categorical", &dmmd::sample_categorical_cuda);
}
