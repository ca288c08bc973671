// Host-side argument checks and layout for the moment-loss entry points,
// shared by cpu/moment_loss.cpp and cuda/moment_loss.cu.
#pragma once
#include <cmath>

#include "host_checks.h"

namespace dmmd {

// Loss hyper-parameters, checked once: tau in [1e-30, 1e30] (1 / tau is then
// finite in float32, and (T - max) / tau cannot lose a class of
// non-negligible probability to float overflow of T - max), top_p in (0, 1],
// delta finite >= 0.
struct Sharpen {
  double tau, top_p, delta;
  // top_p = 1 or delta = 0 leave the teacher unchanged by the nucleus: no nucleus work.
  bool needs_nucleus() const { return top_p < 1.0 && delta > 0.0; }
};

inline Sharpen check_sharpen(double tau, double top_p, double delta) {
  TORCH_CHECK(tau >= 1e-30 && tau <= 1e30, "tau: expected a value in [1e-30, 1e30], got ",
              repr(tau));
  TORCH_CHECK(top_p > 0 && top_p <= 1, "top_p: expected a value in (0, 1] (1 = off), got ",
              repr(top_p));
  TORCH_CHECK(std::isfinite(delta) && delta >= 0, "delta: expected a finite value >= 0, got ",
              repr(delta));
  return {tau, top_p, delta};
}

// [N, V] logits; the kernels index rows by stride(0) and need stride(1) == 1,
// so only a tensor with a strided last dimension is copied.
inline at::Tensor rows_of(const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.dim() == 2, name, ": expected a 2-D tensor [N, V], got shape ", x.sizes());
  check_dtype_in(x, name, {at::kFloat, at::kBFloat16, at::kHalf, at::kDouble});
  return x.stride(1) == 1 || x.size(1) <= 1 ? x : x.contiguous();
}

inline at::Tensor logits_like(const at::Tensor& x, const char* name, const at::Tensor& ref,
                              const char* ref_name) {
  TORCH_CHECK(x.sizes() == ref.sizes(), name, ": expected shape ", ref.sizes(), " (the shape of ",
              ref_name, "), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == ref.scalar_type(), name, ": expected dtype ", ref.scalar_type(),
              " (the dtype of ", ref_name, "), got ", x.scalar_type());
  check_same_device(ref, ref_name, x, name);
  return rows_of(x, name);
}

// Loss and per-row statistics are float32 (float64 for float64 logits).
inline at::ScalarType acc_dtype(const at::Tensor& logits) {
  return logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// weight: [N], float32 (float64 with float64 logits), same device.
inline at::Tensor check_weight(const at::Tensor& w, const at::Tensor& logits, const char* lname) {
  TORCH_CHECK(w.dim() == 1 && w.size(0) == logits.size(0), "weight: expected shape [",
              logits.size(0), "] (one per row of ", lname, "), got ", w.sizes());
  TORCH_CHECK(w.scalar_type() == acc_dtype(logits), "weight: expected dtype ", acc_dtype(logits),
              " for ", logits.scalar_type(), " logits, got ", w.scalar_type());
  check_same_device(logits, lname, w, "weight");
  return w.contiguous();
}

// Per-row upstream gradient / saved statistics.
inline at::Tensor check_rowvec(const at::Tensor& g, const char* name, const at::Tensor& logits,
                               int64_t cols) {
  const bool ok = cols == 0 ? (g.dim() == 1 && g.size(0) == logits.size(0))
                            : (g.dim() == 2 && g.size(0) == logits.size(0) && g.size(1) == cols);
  TORCH_CHECK(ok, name, ": expected shape [", logits.size(0), cols ? ", " : "",
              cols ? std::to_string(cols) : std::string(), "], got ", g.sizes());
  TORCH_CHECK(g.scalar_type() == acc_dtype(logits), name, ": expected dtype ", acc_dtype(logits),
              ", got ", g.scalar_type());
  check_same_device(logits, "logits", g, name);
  return g.contiguous();
}

// Auxiliary-loss targets: exactly one of ids [N] int64 (hard) or logits
// [N, V] (soft). Returns true for soft targets.
inline bool check_targets(const std::optional<at::Tensor>& ids,
                          const std::optional<at::Tensor>& logits, const at::Tensor& aux,
                          bool validate) {
  TORCH_CHECK(ids.has_value() != logits.has_value(),
              "target: expected exactly one of target_ids (hard) or target_logits (soft), got ",
              ids ? "both" : "neither");
  if (logits) return true;
  TORCH_CHECK(ids->scalar_type() == at::kLong, "target_ids: expected dtype int64, got ",
              ids->scalar_type());
  TORCH_CHECK(ids->dim() == 1 && ids->size(0) == aux.size(0), "target_ids: expected shape [",
              aux.size(0), "], got ", ids->sizes());
  check_same_device(aux, "aux", *ids, "target_ids");
  if (validate) check_token_range(*ids, "target_ids", aux.size(1));
  return false;
}

}  // namespace dmmd
