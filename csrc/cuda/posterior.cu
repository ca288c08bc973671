// CUDA ancestral step: one thread block per position (grid-stride); the block
// draws x with the shared row sampler (cuda/sample_row.cuh) where needed and
// thread 0 applies the move of include/dmmd/posterior.h. Same Philox
// coordinates as cpu/posterior.cpp: bitwise-identical results for an
// explicit (seed, offset).
//
// Memory contract: reads z_t, the float64 rates and, for positions that need
// a draw, their logits row (masked: only z_t == MASK; other rows never read);
// writes z_s and x in z_t's dtype. A generator offset advances by 8 (two
// sub-streams: Gumbel, move).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "runtime.cuh"
#include "dmmd/posterior.h"
#include "dmmd/posterior_host.h"
#include "dmmd/rates.h"
#include "rng_cuda.cuh"
#include "sample_row.cuh"

namespace dmmd {
namespace {

struct RateView {
  const double* p;
  int mode;
  int64_t row_len;
};

template <int BLOCK, typename I, typename T>
__global__ void __launch_bounds__(BLOCK, 2)
    posterior_kernel(const I* __restrict__ z, I* __restrict__ zs, I* __restrict__ xs,
                     const T* __restrict__ logits, int64_t n, int64_t K, int64_t row_stride,
                     int64_t col_stride, RateView at_, RateView as_, int64_t process,
                     int64_t mask_id, SampleParams p, at::PhiloxCudaState st) {
  __shared__ RowShared<BLOCK> sh;
  const auto [seed, offset] = unpack_call(st);
  p.seed = seed;
  p.offset = offset;
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const int64_t zi = z[i];
    if (process == kMasked && zi != mask_id) {
      if (threadIdx.x == 0) zs[i] = xs[i] = static_cast<I>(zi);
      continue;
    }
    const int64_t x = sample_row_block<BLOCK>(logits + i * row_stride, K, col_stride, p,
                                              static_cast<uint64_t>(i), sh);
    if (threadIdx.x != 0) continue;
    const double a_t = rate_at(at_.p, at_.mode, at_.row_len, i);
    const double a_s = rate_at(as_.p, as_.mode, as_.row_len, i);
    const uint64_t el = static_cast<uint64_t>(i);
    const int64_t out = process == kMasked
                            ? masked_reveal(x, mask_id, a_t, a_s, seed, offset, el)
                            : uniform_move(zi, x, a_t, a_s, K, seed, offset, el);
    xs[i] = static_cast<I>(x);
    zs[i] = static_cast<I>(out);
  }
}

template <int BLOCK, typename I, typename T>
void launch(const at::Tensor& z, at::Tensor& zs, at::Tensor& xs, const PosteriorArgs& a,
            int64_t process, int64_t mask_id, const SampleParams& p,
            const at::PhiloxCudaState& st) {
  const int64_t n = z.numel();
  const int64_t grid = std::min<int64_t>(n, 65535LL * 32);
  const RateView at_{a.a_t.values.data_ptr<double>(), a.a_t.mode, a.a_t.row_len};
  const RateView as_{a.a_s.values.data_ptr<double>(), a.a_s.mode, a.a_s.row_len};
  DMMD_LAUNCH(grid, BLOCK, 0, current_stream(), posterior_kernel<BLOCK, I, T>)(
      z.data_ptr<I>(), zs.data_ptr<I>(), xs.data_ptr<I>(), a.rows.t.data_ptr<T>(), n, a.rows.v,
      a.rows.row_stride, a.rows.col_stride, at_, as_, process, mask_id, p, st);
  DMMD_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor> posterior_step_cuda(
    const at::Tensor& z_t, const at::Tensor& logits, const at::Tensor& alpha_t,
    const at::Tensor& alpha_s, int64_t process, int64_t mask_id, double temperature,
    int64_t top_k, double top_p, std::optional<at::Generator> gen, std::optional<int64_t> seed,
    int64_t offset, bool validate) {
  const DeviceGuard guard(z_t.device());
  const PosteriorArgs a = check_posterior_args(z_t, logits, alpha_t, alpha_s, process, mask_id,
                                               temperature, top_k, top_p,
                                               value_checks(validate));
  auto z = z_t.contiguous();
  auto zs = at::empty_like(z, at::MemoryFormat::Contiguous);
  auto xs = at::empty_like(z, at::MemoryFormat::Contiguous);
  if (z.numel() == 0) return {zs, xs};
  const at::PhiloxCudaState st = philox_state_cuda(gen, seed, offset);
  const SampleParams p = make_params(temperature, top_k, top_p, a.exclude, 0, 0);
  AT_DISPATCH_INDEX_TYPES(z.scalar_type(), "posterior_cuda", [&] {
    using I = index_t;
    DMMD_DISPATCH_LOGITS(a.rows.t.scalar_type(),
                                    "posterior_cuda", [&] {
      if (row_block_threads(a.rows.v) == 128)
        launch<128, I, scalar_t>(z, zs, xs, a, process, mask_id, p, st);
      else
        launch<512, I, scalar_t>(z, zs, xs, a, process, mask_id, p, st);
    });
  });
  return {zs, xs};
}

}  // namespace
}  // namespace dmmd

DMMD_CUDA_IMPL(m) { m.impl("posterior_step", &dmmd::posterior_step_cuda); }
