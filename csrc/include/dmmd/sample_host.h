// Host-side argument checks for sample_categorical and posterior_step, shared
// by the CPU and CUDA entry points. Messages name the argument, the expected
// and the actual value.
#pragma once
#include <ATen/Dispatch.h>

#include <cmath>

#include "host_checks.h"
#include "sample.h"

// Dispatch over the logits dtypes the samplers accept (no float64 instance).
#define DMMD_DISPATCH_LOGITS(TYPE, NAME, ...)                    \
  AT_DISPATCH_SWITCH(TYPE, NAME, AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__) \
                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)              \
                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))

namespace dmmd {

inline void check_sampling_knobs(double temperature, int64_t top_k, double top_p) {
  TORCH_CHECK(std::isfinite(temperature) && temperature >= 1e-300,
              "temperature: expected a finite value >= 1e-300 (1 / temperature must be a "
              "finite float64), got ", repr(temperature));
  TORCH_CHECK(top_k >= 0, "top_k: expected >= 0 (0 = off), got ", top_k);
  TORCH_CHECK(top_p > 0.0 && top_p <= 1.0, "top_p: expected a value in (0, 1] (1 = off), got ",
              repr(top_p));
}

// logits [..., V] viewed as [N, V] (a view whenever the layout allows it, so
// strided rows are read in place), with its row and class strides.
struct Rows {
  at::Tensor t;  // 2-D [N, V]
  int64_t n, v, row_stride, col_stride;
};

inline Rows as_rows(const at::Tensor& logits) {
  const int64_t V = logits.size(-1);
  const int64_t N = c10::multiply_integers(logits.sizes().slice(0, logits.dim() - 1));
  at::Tensor t = logits.dim() == 1 ? logits.unsqueeze(0) : logits.reshape({N, V});
  return {t, t.size(0), V, t.stride(0), t.stride(1)};
}

inline Rows check_sample_args(const at::Tensor& logits, double temperature, int64_t top_k,
                              double top_p, const std::optional<at::Tensor>& mask,
                              int64_t exclude) {
  TORCH_CHECK(logits.dim() >= 1, "logits: expected a tensor [..., V] with at least 1 dim, got a ",
              logits.dim(), "-dim tensor");
  check_dtype_in(logits, "logits", {at::kFloat, at::kBFloat16, at::kHalf});
  check_sampling_knobs(temperature, top_k, top_p);
  const int64_t V = logits.size(-1);
  const auto lead = logits.sizes().slice(0, logits.dim() - 1);
  TORCH_CHECK(V > 0 || c10::multiply_integers(lead) == 0,
              "logits: expected V = logits.size(-1) >= 1 when there are rows to sample, got V = 0 "
              "with shape ", logits.sizes());
  TORCH_CHECK(exclude >= -1 && exclude < std::max<int64_t>(V, 0),
              "exclude: expected -1 (none) or a class id in [0, ", V, "), got ", exclude);
  if (mask) {
    TORCH_CHECK(mask->scalar_type() == at::kBool, "mask: expected dtype bool, got ",
                mask->scalar_type());
    TORCH_CHECK(mask->sizes() == lead, "mask: expected shape ", lead,
                " (logits.shape[:-1]), got ", mask->sizes());
    check_same_device(logits, "logits", *mask, "mask");
  }
  return as_rows(logits);
}

inline SampleParams make_params(double temperature, int64_t top_k, double top_p, int64_t exclude,
                                uint64_t seed, uint64_t offset) {
  return SampleParams{1.0 / temperature, top_k, top_p, exclude, seed, offset};
}

}  // namespace dmmd
