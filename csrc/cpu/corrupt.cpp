// CPU forward corruption z_t ~ q(z_t | x0) (math: include/dmmd/corrupt.h,
// shared with cuda/corrupt.cu).
// Reads x0 (int32/int64), alpha (float64 scalar, [B] or x0's shape) and the
// optional bool keep mask; writes one new tensor of x0's dtype and shape;
// saves nothing (no backward).
// Parallel over flat token ranges. Each range is walked in blocks of
// kPhiloxBlock consecutive tokens: the Philox words of a whole block come from
// one SIMD call (cpu/philox_simd.h: AVX-512 or AVX2 picked at run time, scalar
// elsewhere), then a branch-free loop makes the per-token decisions exactly as
// corrupt_token does (corrupt_moves, uniform_int_from_bits). The Philox
// element is still the flat token index, so neither the thread count nor the
// instruction set changes a result, and CPU and CUDA agree bitwise for an
// explicit (seed, offset).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "dmmd/corrupt.h"
#include "clones.h"
#include "dmmd/corrupt_host.h"
#include "move_limit.h"
#include "philox_simd.h"
#include "rng_cpu.h"

namespace dmmd {
namespace {

constexpr int64_t kGrain = 4096;

// moves_below(1 - a_t) (move_limit.h) of consecutive flat tokens: scalar and
// per-row rates fill runs with one limit, computed once per distinct rate (no
// division per token: rates.h's rate_at gives the same rates); per-token rates
// get one each.
class LimitCursor {
 public:
  LimitCursor(const Rates& a, const double* p, int64_t first)
      : p_(p), mode_(a.mode), row_len_(a.row_len), i_(first),
        row_(first / a.row_len), col_(first % a.row_len) {}

  void fill(int64_t* lim, int n) {
    if (mode_ == 2) {
      for (int l = 0; l < n; ++l) lim[l] = moves_below(1.0 - p_[i_++]);
    } else if (mode_ == 0) {
      std::fill(lim, lim + n, limit_of(p_[0]));
    } else {
      for (int l = 0; l < n;) {
        const int run = static_cast<int>(std::min<int64_t>(n - l, row_len_ - col_));
        std::fill(lim + l, lim + l + run, limit_of(p_[row_]));
        l += run;
        col_ += run;
        if (col_ == row_len_) col_ = 0, ++row_;
      }
    }
  }

 private:
  int64_t limit_of(double rate) {
    if (!(rate == rate_)) rate_ = rate, limit_ = moves_below(1.0 - rate);
    return limit_;
  }
  const double* p_;
  int mode_;
  int64_t row_len_, i_, row_, col_;
  double rate_ = std::numeric_limits<double>::quiet_NaN();
  int64_t limit_ = 0;
};

struct CorruptJob {
  Rates rates;
  const double* alpha;
  const bool* keep;  // null: keep nothing
  int64_t process, mask_id, vocab_size;
  PhiloxArgs rng;
};

// Masked-process decisions of n tokens, branch-free so that they vectorize: a
// token's branch on its random draw mispredicts about half the time at
// a_t = 0.5. lim = moves_below(1 - a_t).
template <typename index_t>
DMMD_CPU_CLONES void decide_masked(const index_t* x, const uint64_t* lo, const int64_t* lim,
                                   const bool* keep, int n, index_t mask_id, index_t* out) {
  if (keep) {
    for (int l = 0; l < n; ++l)
      out[l] = (static_cast<int64_t>(lo[l] >> 11) < lim[l]) & !keep[l] ? mask_id : x[l];
  } else {
    for (int l = 0; l < n; ++l)
      out[l] = static_cast<int64_t>(lo[l] >> 11) < lim[l] ? mask_id : x[l];
  }
}

// Uniform-process decisions: every replacement is drawn (a 64x64 -> 128-bit
// multiply) and selected without a branch (scalar: the vectorizer's emulation
// of the wide multiply is slower).
template <typename index_t>
__attribute__((optimize("no-tree-vectorize"))) void decide_uniform(
    const index_t* x, const uint64_t* lo, const uint64_t* hi,
    const int64_t* lim, const bool* keep, int n, uint64_t K, index_t* out) {
  for (int l = 0; l < n; ++l) {
    const bool move = (static_cast<int64_t>(lo[l] >> 11) < lim[l]) & !(keep && keep[l]);
    const index_t z = static_cast<index_t>(uniform_int_from_bits(hi[l], K));
    // a mask select: GCC turns `move ? z : x` back into a branch here
    const index_t m = -static_cast<index_t>(move);
    out[l] = x[l] ^ ((x[l] ^ z) & m);
  }
}

template <typename index_t>
void corrupt_range(const CorruptJob& j, const index_t* xp, index_t* op, int64_t b, int64_t e) {
  const cpu::PhiloxBlockFn draw = cpu::philox_block_fn();
  alignas(64) uint64_t lo[cpu::kPhiloxBlock], hi[cpu::kPhiloxBlock];
  alignas(64) int64_t lim[cpu::kPhiloxBlock];
  LimitCursor limits(j.rates, j.alpha, b);
  for (int64_t s = b; s < e; s += cpu::kPhiloxBlock) {
    const int n = static_cast<int>(std::min<int64_t>(cpu::kPhiloxBlock, e - s));
    draw(j.rng.seed, j.rng.offset, kStreamCorruptDecision, static_cast<uint64_t>(s), lo, hi);
    limits.fill(lim, n);
    const bool* keep = j.keep ? j.keep + s : nullptr;
    if (j.process == kMasked)
      decide_masked(xp + s, lo, lim, keep, n, static_cast<index_t>(j.mask_id), op + s);
    else
      decide_uniform(xp + s, lo, hi, lim, keep, n, static_cast<uint64_t>(j.vocab_size), op + s);
  }
}

at::Tensor corrupt_cpu(const at::Tensor& x0, const at::Tensor& alpha, int64_t process,
                       int64_t mask_id, int64_t vocab_size, const std::optional<at::Tensor>& keep,
                       std::optional<at::Generator> gen, std::optional<int64_t> seed,
                       int64_t offset, bool validate) {
  const Rates a = check_corrupt_args(x0, alpha, process, mask_id, vocab_size, keep, validate);
  const PhiloxArgs rng = philox_args_cpu(gen, seed, offset);
  auto x = x0.contiguous();
  auto out = at::empty_like(x, at::MemoryFormat::Contiguous);
  at::Tensor kp = keep ? keep->contiguous() : at::Tensor();
  const CorruptJob job{a, a.values.data_ptr<double>(), keep ? kp.data_ptr<bool>() : nullptr,
                       process, mask_id, vocab_size, rng};
  AT_DISPATCH_INDEX_TYPES(x.scalar_type(), "corrupt_cpu", [&] {
    const index_t* xp = x.data_ptr<index_t>();
    index_t* op = out.data_ptr<index_t>();
    at::parallel_for(0, x.numel(), kGrain,
                     [&](int64_t b, int64_t e) { corrupt_range(job, xp, op, b, e); });
  });
  return out;
}

}  // namespace
}  // namespace dmmd

TORCH_LIBRARY_IMPL(dmmd_ext, CPU, m) { m.impl("corrupt", &dmmd::corrupt_cpu); }
