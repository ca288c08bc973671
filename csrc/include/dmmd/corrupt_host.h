// Argument checks for corrupt, shared by the CPU and CUDA entry points.
#pragma once
#include "host_checks.h"

namespace dmmd {

// Rates converted to float64, contiguous, with how to index them by flat token.
struct Rates {
  at::Tensor values;  // float64, contiguous; 0-dim, [B] or x.shape
  int64_t row_len;    // tokens per row (x.numel() / x.size(0)); per-row index = i / row_len
  int mode;           // 0 scalar, 1 per row, 2 per token
};

inline Rates make_rates(const at::Tensor& rate, const char* name, const at::Tensor& x) {
  const bool per_token = check_rate_shape(rate, name, x);
  const int64_t rows = x.dim() ? x.size(0) : 1;
  const int64_t row_len = rows > 0 ? std::max<int64_t>(x.numel() / rows, 1) : 1;
  return {rate.to(at::kDouble).contiguous(), row_len, rate.dim() == 0 ? 0 : (per_token ? 2 : 1)};
}

inline Rates check_corrupt_args(const at::Tensor& x0, const at::Tensor& alpha, int64_t process,
                                int64_t mask_id, int64_t vocab_size,
                                const std::optional<at::Tensor>& keep, bool validate) {
  check_dtype_in(x0, "x0", {at::kInt, at::kLong});
  check_dtype_in(alpha, "alpha", {at::kFloat, at::kDouble});
  check_same_device(x0, "x0", alpha, "alpha");
  check_process(process);
  TORCH_CHECK(vocab_size >= 1, "vocab_size: expected >= 1, got ", vocab_size);
  if (process == kMasked) {
    TORCH_CHECK(mask_id >= vocab_size, "mask_id: expected an id >= vocab_size (", vocab_size,
                ") for the masked process, got ", mask_id);
    check_fits_int32(x0, "x0", mask_id, "mask_id");
  } else {
    // uniform draws lie in [0, vocab_size): the largest must fit the dtype
    check_fits_int32(x0, "x0", vocab_size - 1, "vocab_size - 1");
  }
  if (keep) {
    TORCH_CHECK(keep->scalar_type() == at::kBool, "keep: expected bool, got ", keep->scalar_type());
    TORCH_CHECK(keep->sizes() == x0.sizes(), "keep: expected shape ", x0.sizes(), ", got ",
                keep->sizes());
    check_same_device(x0, "x0", *keep, "keep");
  }
  Rates r = make_rates(alpha, "alpha", x0);
  if (validate) {
    check_token_range(x0, "x0", vocab_size);
    check_unit_interval(r.values, "alpha");
  }
  return r;
}

}  // namespace dmmd
