// CPU categorical sampling: one draw per row of logits [..., V] by Gumbel-max
// with exact-tail noise, optional temperature, exclusion, top-k and top-p
// (semantics: include/dmmd/sample.h; row sampler: cpu/sample_row.h, shared
// with posterior_step).
//
// Memory contract: reads each unmasked row once (with top-k/top-p, into a
// per-thread scratch of uint32 order keys that the selection then scans);
// rows whose mask is False are not read. Writes int64 [...]. No V-sized noise
// or probability tensor is ever allocated.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "dmmd/sample_host.h"
#include "rng_cpu.h"
#include "sample_row.h"

namespace dmmd {
namespace {

at::Tensor sample_categorical_cpu(const at::Tensor& logits, double temperature, int64_t top_k,
                                  double top_p, const std::optional<at::Tensor>& mask,
                                  int64_t exclude, std::optional<at::Generator> gen,
                                  std::optional<int64_t> seed, int64_t offset) {
  const Rows rows = check_sample_args(logits, temperature, top_k, top_p, mask, exclude);
  const PhiloxArgs rng = philox_args_cpu(gen, seed, offset);
  auto out = at::empty(logits.sizes().slice(0, logits.dim() - 1), logits.options().dtype(at::kLong));
  if (rows.n == 0) return out;
  const SampleParams p = make_params(temperature, top_k, top_p, exclude, rng.seed, rng.offset);
  at::Tensor mk = mask ? mask->contiguous() : at::Tensor();
  const bool* mp = mask ? mk.data_ptr<bool>() : nullptr;
  int64_t* op = out.data_ptr<int64_t>();
  // Grain: enough rows that a task reads about 16k logits.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(rows.v, 1));
  DMMD_DISPATCH_LOGITS(rows.t.scalar_type(), "sample_cpu", [&] {
    const scalar_t* base = rows.t.data_ptr<scalar_t>();
    at::parallel_for(0, rows.n, grain, [&](int64_t b, int64_t e) {
      RowScratch scratch;
      for (int64_t r = b; r < e; ++r) {
        if (mp && !mp[r]) {
          op[r] = -1;
          continue;
        }
        op[r] = sample_row_cpu(base + r * rows.row_stride, rows.v, rows.col_stride, p,
                               static_cast<uint64_t>(r), scratch);
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace dmmd

TORCH_LIBRARY_IMPL(dmmd_ext, CPU, m) {
  m.impl("sample_categorical", &dmmd::sample_categorical_cpu);
}
