// CPU ancestral step of the corruption family: x ~ Cat(sharpened logits) per
// position (the shared row sampler, cpu/sample_row.h), then
// z_s ~ q(z_s | z_t, x) (include/dmmd/posterior.h).
//
// Memory contract: reads z_t, the alphas (as float64) and, per position that
// needs a draw, one row of logits [.., K] (masked process: only positions with
// z_t == MASK; their other rows are never read). Writes z_s and x in z_t's
// dtype. Per-thread O(K) scratch only when top-k/top-p are on.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "dmmd/posterior.h"
#include "dmmd/posterior_host.h"
#include "dmmd/rates.h"
#include "rng_cpu.h"
#include "sample_row.h"

namespace dmmd {
namespace {

template <typename index_t, typename scalar_t>
void posterior_rows(const index_t* z, index_t* zs, index_t* xs, const scalar_t* logits,
                    const Rows& rows, const Rates& at, const Rates& as, int64_t process,
                    int64_t mask_id, const SampleParams& p) {
  const int64_t K = rows.v;
  const double* atp = at.values.data_ptr<double>();
  const double* asp = as.values.data_ptr<double>();
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1));
  at::parallel_for(0, rows.n, grain, [&](int64_t b, int64_t e) {
    RowScratch scratch;
    for (int64_t i = b; i < e; ++i) {
      const int64_t zi = z[i];
      if (process == kMasked && zi != mask_id) {
        zs[i] = xs[i] = static_cast<index_t>(zi);
        continue;
      }
      const int64_t x = sample_row_cpu(logits + i * rows.row_stride, K, rows.col_stride, p,
                                       static_cast<uint64_t>(i), scratch);
      const double a_t = rate_at(atp, at.mode, at.row_len, i);
      const double a_s = rate_at(asp, as.mode, as.row_len, i);
      const uint64_t el = static_cast<uint64_t>(i);
      const int64_t out =
          process == kMasked ? masked_reveal(x, mask_id, a_t, a_s, p.seed, p.offset, el)
                             : uniform_move(zi, x, a_t, a_s, K, p.seed, p.offset, el);
      xs[i] = static_cast<index_t>(x);
      zs[i] = static_cast<index_t>(out);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> posterior_step_cpu(
    const at::Tensor& z_t, const at::Tensor& logits, const at::Tensor& alpha_t,
    const at::Tensor& alpha_s, int64_t process, int64_t mask_id, double temperature,
    int64_t top_k, double top_p, std::optional<at::Generator> gen, std::optional<int64_t> seed,
    int64_t offset, bool validate) {
  const PosteriorArgs a = check_posterior_args(z_t, logits, alpha_t, alpha_s, process, mask_id,
                                               temperature, top_k, top_p, validate);
  const PhiloxArgs rng = philox_args_cpu(gen, seed, offset);
  auto z = z_t.contiguous();
  auto zs = at::empty_like(z, at::MemoryFormat::Contiguous);
  auto xs = at::empty_like(z, at::MemoryFormat::Contiguous);
  if (z.numel() == 0) return {zs, xs};
  const SampleParams p = make_params(temperature, top_k, top_p, a.exclude, rng.seed, rng.offset);
  AT_DISPATCH_INDEX_TYPES(z.scalar_type(), "posterior_cpu", [&] {
    using idx_t = index_t;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, a.rows.t.scalar_type(),
                                    "posterior_cpu", [&] {
      posterior_rows<idx_t, scalar_t>(z.data_ptr<idx_t>(), zs.data_ptr<idx_t>(),
                                      xs.data_ptr<idx_t>(), a.rows.t.data_ptr<scalar_t>(), a.rows,
                                      a.a_t, a.a_s, process, mask_id, p);
    });
  });
  return {zs, xs};
}

}  // namespace
}  // namespace dmmd

TORCH_LIBRARY_IMPL(dmmd_ext, CPU, m) { m.impl("posterior_step", &dmmd::posterior_step_cpu); }
