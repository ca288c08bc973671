// Host-side argument checks shared by the CPU and CUDA op entry points.
// Messages name the argument, what was expected and what was given.
#pragma once
#include <ATen/ATen.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

namespace dmmd {

// A double in the shortest form that reads back as the same value (so
// 1.0000001 is not printed as 1), for messages.
inline std::string repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[40];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

inline void check_dtype_in(const at::Tensor& t, const char* name,
                           std::initializer_list<at::ScalarType> allowed) {
  for (auto s : allowed)
    if (t.scalar_type() == s) return;
  std::string list;
  for (auto s : allowed) list += std::string(list.empty() ? "" : ", ") + c10::toString(s);
  TORCH_CHECK(false, name, ": expected dtype in {", list, "}, got ", t.scalar_type());
}

inline void check_same_device(const at::Tensor& a, const char* an, const at::Tensor& b,
                              const char* bn) {
  TORCH_CHECK(a.device() == b.device(), bn, ": expected device ", a.device(), " (the device of ",
              an, "), got ", b.device());
}

inline void check_process(int64_t process) {
  TORCH_CHECK(process == 0 || process == 1, "process: expected 0 (masked) or 1 (uniform), got ",
              process);
}

// Per-row (shape [B] with B = x.size(0)), per-token (same shape as x) or scalar.
// Returns true when the tensor is per-token.
inline bool check_rate_shape(const at::Tensor& rate, const char* name, const at::Tensor& x) {
  if (rate.dim() == 0) return false;
  if (rate.sizes() == x.sizes()) return true;
  TORCH_CHECK(rate.dim() == 1 && x.dim() >= 1 && rate.size(0) == x.size(0), name,
              ": expected a scalar, shape [", (x.dim() ? x.size(0) : 0), "] (per row) or ",
              x.sizes(), " (per token), got ", rate.sizes());
  return false;
}

// Token ids in [0, hi). On CUDA this synchronizes (one aminmax); callers gate it
// behind `validate` so a CUDA-graph capture can skip it.
inline void check_token_range(const at::Tensor& t, const char* name, int64_t hi) {
  if (t.numel() == 0) return;
  auto mm = at::aminmax(t);
  const int64_t lo_v = std::get<0>(mm).item<int64_t>();
  const int64_t hi_v = std::get<1>(mm).item<int64_t>();
  TORCH_CHECK(lo_v >= 0 && hi_v < hi, name, ": token ids must lie in [0, ", hi, "), got values in [",
              lo_v, ", ", hi_v, "]");
}

// Rates in [0, 1] (NaN rejected).
inline void check_unit_interval(const at::Tensor& r, const char* name) {
  if (r.numel() == 0) return;
  const bool ok = at::logical_and(r >= 0, r <= 1).all().item<bool>();
  if (ok) return;
  TORCH_CHECK(!at::isnan(r).any().item<bool>(), name, ": expected values in [0, 1], got NaN");
  TORCH_CHECK(false, name, ": expected values in [0, 1], got min ", repr(r.min().item<double>()),
              ", max ", repr(r.max().item<double>()));
}

// An id stored in int32 token tensors must fit: int32 tensors cannot hold a
// larger one, it would wrap.
inline void check_fits_int32(const at::Tensor& tokens, const char* tname, int64_t id,
                             const char* name) {
  if (tokens.scalar_type() != at::kInt) return;
  TORCH_CHECK(id <= std::numeric_limits<int32_t>::max(), name, ": expected a value <= 2^31 - 1 "
              "for int32 ", tname, " (it would wrap), got ", id);
}

}  // namespace dmmd
