// Host-side argument checks for posterior_step, shared by the CPU and CUDA
// entry points.
#pragma once
#include "corrupt_host.h"
#include "sample_host.h"

namespace dmmd {

struct PosteriorArgs {
  Rows rows;        // logits as [N, K]
  Rates a_t, a_s;   // indexed by flat position
  int64_t exclude;  // mask_id when logits has that column (masked), else -1
};

// A rate broadcast to z's shape (for the a_s >= a_t check only).
inline at::Tensor rate_like(const Rates& r, const at::Tensor& z) {
  if (r.mode == 0 || r.mode == 2) return r.values.expand(z.sizes());
  std::vector<int64_t> shape(z.dim(), 1);
  shape[0] = z.size(0);
  return r.values.view(shape).expand(z.sizes());
}

inline void check_posterior_tokens(const at::Tensor& z, int64_t process, int64_t mask_id,
                                   int64_t K) {
  if (z.numel() == 0) return;
  at::Tensor body = process == kMasked ? at::where(z == mask_id, at::zeros_like(z), z) : z;
  auto mm = at::aminmax(body);
  const int64_t lo = std::get<0>(mm).item<int64_t>(), hi = std::get<1>(mm).item<int64_t>();
  TORCH_CHECK(lo >= 0 && hi < K, "z_t: token ids must lie in [0, ", K, ")",
              process == kMasked ? " or equal mask_id" : "", ", got values in [", lo, ", ", hi,
              "]", process == kMasked ? " (besides mask_id)" : "");
}

inline PosteriorArgs check_posterior_args(const at::Tensor& z_t, const at::Tensor& logits,
                                          const at::Tensor& alpha_t, const at::Tensor& alpha_s,
                                          int64_t process, int64_t mask_id, double temperature,
                                          int64_t top_k, double top_p, bool validate) {
  check_dtype_in(z_t, "z_t", {at::kInt, at::kLong});
  check_dtype_in(logits, "logits", {at::kFloat, at::kBFloat16, at::kHalf});
  check_dtype_in(alpha_t, "alpha_t", {at::kFloat, at::kDouble});
  check_dtype_in(alpha_s, "alpha_s", {at::kFloat, at::kDouble});
  check_same_device(z_t, "z_t", logits, "logits");
  check_same_device(z_t, "z_t", alpha_t, "alpha_t");
  check_same_device(z_t, "z_t", alpha_s, "alpha_s");
  check_process(process);
  check_sampling_knobs(temperature, top_k, top_p);
  TORCH_CHECK(logits.dim() == z_t.dim() + 1 && logits.sizes().slice(0, z_t.dim()) == z_t.sizes(),
              "logits: expected shape ", z_t.sizes(), " + [K] (z_t's shape plus classes), got ",
              logits.sizes());
  const int64_t K = logits.size(-1);
  TORCH_CHECK(K >= 1 || z_t.numel() == 0, "logits: expected K = logits.size(-1) >= 1, got 0");
  if (process == kMasked) {
    TORCH_CHECK(mask_id >= 0, "mask_id: expected a non-negative id for the masked process, got ",
                mask_id);
    check_fits_int32(z_t, "z_t", mask_id, "mask_id");
  }
  PosteriorArgs a{as_rows(logits), make_rates(alpha_t, "alpha_t", z_t),
                  make_rates(alpha_s, "alpha_s", z_t),
                  process == kMasked && mask_id < K ? mask_id : -1};
  if (validate) {
    check_posterior_tokens(z_t, process, mask_id, K);
    check_unit_interval(a.a_t.values, "alpha_t");
    check_unit_interval(a.a_s.values, "alpha_s");
    if (z_t.numel() > 0) {
      const double gap = (rate_like(a.a_s, z_t) - rate_like(a.a_t, z_t)).min().item<double>();
      TORCH_CHECK(gap >= 0.0, "alpha_s: expected alpha_s >= alpha_t everywhere (s < t), got "
                  "alpha_s - alpha_t as low as ", repr(gap));
    }
  }
  return a;
}

}  // namespace dmmd
