// CPU forward corruption. Per-token math lives in include/dmmd/corrupt.h,
// shared with cuda/corrupt.cu. Parallel over flat token ranges; the Philox
// element is the flat token index, so thread count never changes a result.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "dmmd/corrupt.h"
#include "dmmd/corrupt_host.h"
#include "dmmd/rates.h"
#include "rng_cpu.h"

namespace dmmd {
namespace {

constexpr int64_t kGrain = 4096;

at::Tensor corrupt_cpu(const at::Tensor& x0, const at::Tensor& alpha, int64_t process,
                       int64_t mask_id, int64_t vocab_size, const std::optional<at::Tensor>& keep,
                       std::optional<at::Generator> gen, std::optional<int64_t> seed,
                       int64_t offset, bool validate) {
  const Rates a = check_corrupt_args(x0, alpha, process, mask_id, vocab_size, keep, validate);
  const PhiloxArgs rng = philox_args_cpu(gen, seed, offset);
  auto x = x0.contiguous();
  auto out = at::empty_like(x, at::MemoryFormat::Contiguous);
  at::Tensor kp = keep ? keep->contiguous() : at::Tensor();
  const bool* kptr = keep ? kp.data_ptr<bool>() : nullptr;
  const double* ap = a.values.data_ptr<double>();
  AT_DISPATCH_INDEX_TYPES(x.scalar_type(), "corrupt_cpu", [&] {
    const index_t* xp = x.data_ptr<index_t>();
    index_t* op = out.data_ptr<index_t>();
    at::parallel_for(0, x.numel(), kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        op[i] = static_cast<index_t>(corrupt_token(
            xp[i], rate_at(ap, a.mode, a.row_len, i), kptr && kptr[i], process, mask_id,
            vocab_size, rng.seed, rng.offset, static_cast<uint64_t>(i)));
    });
  });
  return out;
}

}  // namespace
}  // namespace dmmd

TORCH_LIBRARY_IMPL(dmmd_ext, CPU, m) { m.impl("corrupt", &dmmd::corrupt_cpu); }
