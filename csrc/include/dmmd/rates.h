// Device-agnostic lookup of a per-call, per-row or per-token rate.
#pragma once
#include "common.h"

namespace dmmd {

DMMD_HD double rate_at(const double* p, int mode, int64_t row_len, int64_t i) {
  return mode == 0 ? p[0] : (mode == 1 ? p[i / row_len] : p[i]);
}

}  // namespace dmmd
