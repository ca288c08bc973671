// selftest.cpp: checks of the SIMT emulator, one line per check; exits
// nonzero if any fails. Runs under whatever SIMT_ORDER/SIMT_SEED the
// environment sets (correct kernels must be right in every order); the checks
// about races and error messages set the order they need themselves.
//
//   g++ -std=c++20 -O1 -ffp-contract=off -Icsrc/simt -Wa,--no-warn
//       csrc/simt/selftest.cpp -Wl,-T,csrc/simt/shared.ld -o selftest
//   ./selftest         all checks
//   ./selftest oob     a kernel that writes past a __shared__ array (for ASan)
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "cub/block/block_reduce.cuh"
#include "simt.h"

// The project's launch macro: the kernel expression may contain commas.
#define TEST_LAUNCH(grid, block, smem, stream, ...) \
  ::simt::Launch(__VA_ARGS__, grid, block, smem, stream)

// External linkage, so that its static is a COMDAT object, unlike the kernels'.
inline __device__ unsigned* inline_scratch() {
  __shared__ unsigned scratch[4];
  return scratch;
}

namespace {

int g_failures = 0;

void check(const std::string& name, bool ok, const std::string& detail = "") {
  std::printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", name.c_str(), ok || detail.empty() ? "" : ": ",
              ok ? "" : detail.c_str());
  g_failures += !ok;
}

// Runs f, which must throw simt::Error with every needle in its message.
void check_error(const std::string& name, const std::function<void()>& f,
                 std::vector<std::string> needles) {
  try {
    f();
  } catch (const simt::Error& e) {
    const std::string msg = e.what();
    for (const auto& n : needles)
      if (msg.find(n) == std::string::npos) return check(name, false, "no '" + n + "' in: " + msg);
    std::printf("     %s\n", msg.c_str());
    return check(name, true);
  }
  check(name, false, "no simt::Error thrown");
}

std::string line(int l) { return "selftest.cpp:" + std::to_string(l); }

// Sets an environment variable for a scope, then restores it.
class EnvScope {
 public:
  EnvScope(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) had_ = true, old_ = old;
    setenv(name, value, 1);
  }
  ~EnvScope() { had_ ? setenv(name_, old_.c_str(), 1) : unsetenv(name_); }

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

// ---------------------------------------------------------------- kernels

__global__ void saxpy(int n, float a, const float* x, float* y) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    y[i] = a * x[i] + y[i];
}

template <int K, typename T>
__global__ void scale(T* y, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    y[i] *= T(K);
}

struct Counter {
  int value;
};

// Kernel parameters are per-thread copies: modifying one changes no other.
__global__ void own_copy(Counter c, int* out) {
  c.value += int(threadIdx.x);
  out[threadIdx.x] = c.value;
}

template <int B>
__global__ void block_sum(const int* x, int n, long long* out) {
  __shared__ long long s[B];
  long long v = 0;
  for (int i = threadIdx.x; i < n; i += B) v += x[i];
  s[threadIdx.x] = v;
  __syncthreads();
  for (int k = B / 2; k > 0; k >>= 1) {
    if (int(threadIdx.x) < k) s[threadIdx.x] += s[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}

struct Shuffles {
  double down_sum, xor_sum;
  int idx, up8, xor8, idx8, down16;
  unsigned ballot;
  int any, all, none;
};

__global__ void shuffles(const double* x, Shuffles* out) {
  const int t = threadIdx.x, lane = t % 32;
  Shuffles r;
  double v = x[t], w = x[t];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  for (int m = 1; m < 32; m <<= 1) w += __shfl_xor_sync(0xffffffffu, w, m);
  r.down_sum = v, r.xor_sum = w;
  r.idx = __shfl_sync(0xffffffffu, t * 10, 3);
  r.up8 = __shfl_up_sync(0xffffffffu, lane, 1, 8);
  r.xor8 = __shfl_xor_sync(0xffffffffu, lane, 8, 8);
  r.idx8 = __shfl_sync(0xffffffffu, lane, 3, 8);
  r.down16 = __shfl_down_sync(0xffffffffu, lane, 4, 16);
  r.ballot = __ballot_sync(0xffffffffu, lane % 3 == 0);
  r.any = __any_sync(0xffffffffu, lane == 31);
  r.all = __all_sync(0xffffffffu, lane < 32);
  r.none = __any_sync(0xffffffffu, 0);
  out[t] = r;
}

struct WarpMisc {
  unsigned match32, match64, match_all, match_all_no;
  int pred_all, pred_no;
  unsigned sum, umax;
  int smin;
  unsigned active, half_sum;
};

__global__ void warp_misc(WarpMisc* out) {
  const int lane = threadIdx.x % 32;
  WarpMisc r{};
  r.match32 = __match_any_sync(0xffffffffu, lane % 3);
  r.match64 = __match_any_sync(0xffffffffu, (long long)(lane / 8) << 40);
  r.match_all = __match_all_sync(0xffffffffu, 7u, &r.pred_all);
  r.match_all_no = __match_all_sync(0xffffffffu, lane, &r.pred_no);
  r.sum = __reduce_add_sync(0xffffffffu, unsigned(lane));
  r.umax = __reduce_max_sync(0xffffffffu, unsigned(lane * 3));
  r.smin = __reduce_min_sync(0xffffffffu, 5 - lane);
  if (lane % 2 == 0) r.active = __activemask();  // divergent: the even lanes meet
  // Two halves of the warp meet separately (disjoint masks).
  const unsigned half = lane < 16 ? 0x0000ffffu : 0xffff0000u;
  r.half_sum = __reduce_add_sync(half, 1u);
  __syncwarp();
  out[threadIdx.x] = r;
}

// A block of 40 threads: its second warp has 8 lanes, and full masks name them.
__global__ void partial_warp(unsigned* out) {
  out[threadIdx.x] = __reduce_add_sync(0xffffffffu, 1u) | __ballot_sync(0xffffffffu, 1) << 8;
}

// Warp-aggregated histogram: the lanes with one key elect a leader that adds
// their count (the pattern __match_any_sync exists for).
__global__ void aggregated_histogram(const int* keys, int n, int* hist) {
  __shared__ int h[8];
  if (threadIdx.x < 8) h[threadIdx.x] = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int key = keys[i];
    if (key < 0) continue;  // divergent: __activemask names the lanes that stay
    const unsigned peers = __match_any_sync(__activemask(), key);
    if (int(threadIdx.x % 32) == __ffs(int(peers)) - 1) atomicAdd(&h[key], __popc(peers));
  }
  __syncthreads();
  if (threadIdx.x < 8) hist[threadIdx.x] = h[threadIdx.x];
}

struct Votes {
  int any, all, count, none;
};

__global__ void block_votes(Votes* out) {
  Votes v;
  v.any = __syncthreads_or(threadIdx.x == 77);
  v.all = __syncthreads_and(threadIdx.x < 1000);
  v.count = __syncthreads_count(threadIdx.x % 4 == 0);
  v.none = __syncthreads_or(0);
  if (threadIdx.x == 5) *out = v;
}

struct AtomicOut {
  int hist[16];
  float fsum;
  double dsum;
  unsigned long long umin;
  long long smax;
  unsigned inc, dec;
  int cas_sum, exch_seen;
};

__global__ void shared_atomics(const int* keys, int n, AtomicOut* out) {
  __shared__ int h[16];
  __shared__ float fs;
  __shared__ double ds;
  __shared__ unsigned long long mn;
  __shared__ long long mx;
  __shared__ unsigned inc, dec;
  __shared__ int cas_sum, slot;
  for (int b = threadIdx.x; b < 16; b += blockDim.x) h[b] = 0;
  if (threadIdx.x == 0) fs = 0, ds = 0, mn = ~0ull, mx = -(1ll << 62), inc = 0, dec = 0,
                        cas_sum = 0, slot = -1;
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    atomicAdd(&h[keys[i] & 15], 1);
    atomicAdd(&fs, 0.5f);
    atomicAdd(&ds, 0.25);
    atomicMin(&mn, (unsigned long long)keys[i] + 100);
    atomicMax(&mx, -(long long)keys[i]);
  }
  atomicInc(&inc, 9u);  // wraps to 0 after 9: 128 increments -> 128 % 10
  atomicDec(&dec, 9u);
  int old = cas_sum, seen;
  while ((seen = atomicCAS(&cas_sum, old, old + 1)) != old) old = seen;
  atomicExch(&slot, int(threadIdx.x));
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int b = 0; b < 16; ++b) out->hist[b] = h[b];
    out->fsum = fs, out->dsum = ds, out->umin = mn, out->smax = mx;
    out->inc = inc, out->dec = dec, out->cas_sum = cas_sum, out->exch_seen = slot;
  }
}

// Every thread writes its coordinates; warps are formed from the linear index.
__global__ void coordinates(unsigned* out, unsigned* ballots) {
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned n = blockDim.x * blockDim.y * blockDim.z;
  out[b * n + t] = threadIdx.x | threadIdx.y << 8 | threadIdx.z << 16 | blockIdx.x << 24 |
                   blockIdx.y << 28;
  const unsigned bal = __ballot_sync(0xffffffffu, threadIdx.y == 0);
  if (t % 32 == 0) ballots[b * (n / 32) + t / 32] = bal;
}

template <int B>
__global__ void cub_reduce(const float* x, int num_valid, float* sum, float* top, float* others,
                           int* isum) {
  using Reduce = cub::BlockReduce<float, B>;
  __shared__ typename Reduce::TempStorage tmp;
  __shared__ typename cub::BlockReduce<int, B>::TempStorage itmp;
  const float v = x[threadIdx.x];
  const float s = Reduce(tmp).Sum(v);
  __syncthreads();
  const float m = Reduce(tmp).Reduce(float(threadIdx.x), cub::Max(), num_valid);
  const int is = cub::BlockReduce<int, B>(itmp).Sum(int(threadIdx.x));
  if (threadIdx.x == 0) *sum = s, *top = m, *isum = is;
  if (threadIdx.x == 1) *others = s;
}

// Bug: an accumulator that no thread initializes, in each kind of function a
// __shared__ variable can be declared in (GCC treats their statics apart).
__global__ void uninitialized_shared(float* out) {
  __shared__ float acc;
  atomicAdd(&acc, 1.0f);
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = acc;
}

template <int B, typename T>
struct TemplateShared {
  T sum[B];
};

template <int B, typename T>
__global__ void uninitialized_template_shared(T* out) {
  __shared__ TemplateShared<B, T> sh;
  atomicAdd(&sh.sum[threadIdx.x % B], T(1));
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = sh.sum[0];
}

__global__ void uninitialized_inline_shared(unsigned* out) {
  if (threadIdx.x == 1) inline_scratch()[0] = 1;
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = inline_scratch()[2];
}

// Bug: thread 0 fills a table that the others read without a barrier.
__global__ void missing_barrier(int salt, int* out) {
  __shared__ int table[128];
  if (threadIdx.x == 0)
    for (int i = 0; i < 128; ++i) table[i] = i * salt + 1;
  // __syncthreads();  <- forgotten
  out[threadIdx.x] = table[threadIdx.x];
}

// A spin-wait on another thread of the block, made to progress by __nanosleep.
__global__ void spin_wait(int* out) {
  __shared__ volatile int flag;
  if (threadIdx.x == 0) flag = 0;
  __syncthreads();
  if (threadIdx.x == 1) {
    while (!flag) __nanosleep(100);
    out[0] = flag;
  }
  if (threadIdx.x == 0) flag = 42;
}

// ---- misuse, for the error checks (the lines are in the expected messages)
constexpr int kDeadlockSync = __LINE__ + 3, kDeadlockWarp = __LINE__ + 5;
__global__ void deadlock() {
  if (threadIdx.x < 16)
    __syncthreads();
  else
    __syncwarp();
}

constexpr int kSiteA = __LINE__ + 3, kSiteB = __LINE__ + 5;
__global__ void two_barriers() {
  if (threadIdx.x < 16)
    __syncthreads();
  else
    __syncthreads();
}

constexpr int kAfterExit = __LINE__ + 3;
__global__ void barrier_after_exit(int* out) {
  if (threadIdx.x >= 32) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

constexpr int kShflExited = __LINE__ + 3;
__global__ void shuffle_exited(int* out) {
  if (threadIdx.x >= 20) return;
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, int(threadIdx.x), 1);
}

__global__ void mask_omits_lane(int* out) { out[threadIdx.x] = __shfl_sync(0x1u, 1, 0); }

constexpr int kMaskA = __LINE__ + 3, kMaskB = __LINE__ + 5;
__global__ void different_masks(int* out) {
  if (threadIdx.x < 16)
    out[threadIdx.x] = __shfl_sync(0x0001ffffu, 1, 0);
  else
    out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0);
}

__global__ void different_ops(int* out) {
  if (threadIdx.x < 16)
    out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0);
  else
    out[threadIdx.x] = int(__ballot_sync(0xffffffffu, 1));
}

__global__ void bad_width(int* out) { out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1, 12); }

__global__ void empty_kernel() {}

__global__ void nested_launch() { simt::launch(empty_kernel, 1, 1, 0, nullptr); }

constexpr int kTrap = __LINE__ + 2;
__global__ void trap_kernel() {
  if (threadIdx.x == 3) __trap();
}

__global__ void throwing_kernel() {
  if (threadIdx.x == 2) throw std::runtime_error("boom");
}

__global__ void wrong_block_reduce(int* out) {
  __shared__ cub::BlockReduce<int, 64>::TempStorage tmp;
  *out = cub::BlockReduce<int, 64>(tmp).Sum(1);
}

// For ASan: 64 threads write a 32-int shared array.
__global__ void shared_overflow(int v, int* out) {
  __shared__ int a[32];
  a[threadIdx.x] = v;
  __syncthreads();
  if (threadIdx.x == 0) *out = a[5];
}

// ---------------------------------------------------------------- checks

void test_launch_forms() {
  const int n = 10000;
  std::vector<float> x(n), y(n);
  for (int i = 0; i < n; ++i) x[i] = float(i), y[i] = 1.0f;
  simt::launch(saxpy, 7, 128, 0, nullptr, n, 2.0, x.data(), y.data());  // double -> float
  bool ok = true;
  for (int i = 0; i < n; ++i) ok &= y[i] == 2.0f * float(i) + 1.0f;
  check("saxpy grid-stride, simt::launch with int dims", ok);

  cudaStream_t stream = nullptr;
  simt::Launch(saxpy, int64_t(3), 256u, 0, stream)(int64_t(n), 1.0f, x.data(), y.data());
  ok = true;
  for (int i = 0; i < n; ++i) ok &= y[i] == 3.0f * float(i) + 1.0f;
  check("simt::Launch(kernel, int64_t, unsigned, smem, stream)(args)", ok);

  TEST_LAUNCH(dim3(2), dim3(64, 1, 1), 0, stream, scale<2, float>)(y.data(), n);
  ok = true;
  for (int i = 0; i < n; ++i) ok &= y[i] == 2.0f * (3.0f * float(i) + 1.0f);
  check("launch macro with a template kernel scale<2, float> and dim3", ok);

  std::vector<int> out(64);
  simt::launch(own_copy, 1, 64, 0, nullptr, Counter{100}, out.data());
  ok = true;
  for (int t = 0; t < 64; ++t) ok &= out[t] == 100 + t;
  check("kernel parameters are per-thread copies", ok);
}

void test_block_sum() {
  std::vector<int> x(5000);
  long long ref = 0;
  for (int i = 0; i < 5000; ++i) x[i] = i * 7 - 300, ref += x[i];
  std::vector<long long> out(3);
  simt::launch(block_sum<256>, 3, 256, 0, nullptr, x.data(), 5000, out.data());
  check("block reduction with __syncthreads", out[0] == ref && out[1] == ref && out[2] == ref);
}

void test_shuffles() {
  std::vector<double> x(64);
  for (int i = 0; i < 64; ++i) x[i] = i + 0.25;
  std::vector<Shuffles> r(64);
  simt::launch(shuffles, 1, 64, 0, nullptr, x.data(), r.data());
  double s0 = 0, s1 = 0;
  for (int i = 0; i < 32; ++i) s0 += x[i], s1 += x[32 + i];
  bool down = true, xr = true;
  for (int t = 0; t < 64; ++t) xr &= r[t].xor_sum == (t < 32 ? s0 : s1);
  down = r[0].down_sum == s0 && r[32].down_sum == s1;
  check("__shfl_down_sync tree sum", down);
  check("__shfl_xor_sync butterfly sum in every lane", xr);
  check("__shfl_sync broadcast", r[0].idx == 30 && r[31].idx == 30 && r[40].idx == 350);
  check("__shfl_up_sync width 8", r[0].up8 == 0 && r[1].up8 == 0 && r[8].up8 == 8 && r[9].up8 == 8);
  check("__shfl_xor_sync width 8 (later segment: own value; earlier: allowed)",
        r[0].xor8 == 0 && r[8].xor8 == 0 && r[9].xor8 == 1 && r[16].xor8 == 16 && r[24].xor8 == 16);
  check("__shfl_sync width 8", r[13].idx8 == 11 && r[2].idx8 == 3 && r[31].idx8 == 27);
  check("__shfl_down_sync width 16",
        r[14].down16 == 14 && r[10].down16 == 14 && r[27].down16 == 31);
  check("__ballot_sync", r[5].ballot == 0x49249249u && r[37].ballot == 0x49249249u);
  check("__any_sync / __all_sync", r[0].any == 1 && r[0].all == 1 && r[0].none == 0);
}

void test_warp_misc() {
  std::vector<WarpMisc> r(32);
  simt::launch(warp_misc, 1, 32, 0, nullptr, r.data());
  check("__match_any_sync 32-bit", r[0].match32 == 0x49249249u && r[1].match32 == 0x92492492u);
  check("__match_any_sync 64-bit", r[0].match64 == 0xffu && r[31].match64 == 0xff000000u);
  check("__match_all_sync", r[3].match_all == ~0u && r[3].pred_all == 1 && r[3].match_all_no == 0 &&
                                r[3].pred_no == 0);
  check("__reduce_add/max/min_sync", r[7].sum == 496 && r[7].umax == 93 && r[7].smin == -26);
  check("__activemask in divergent code: the lanes that meet", r[4].active == 0x55555555u);
  check("disjoint masks meet separately", r[3].half_sum == 16 && r[20].half_sum == 16);

  std::vector<unsigned> p(40);
  simt::launch(partial_warp, 1, 40, 0, nullptr, p.data());
  check("a partial last warp", p[0] == (32u | ~0u << 8) && p[39] == (8u | 0xffu << 8));

  std::vector<int> keys(1000), hist(8), ref(8);
  for (int i = 0; i < 1000; ++i) {
    keys[i] = (i * 7) % 11 - 3;  // negative keys are skipped
    if (keys[i] >= 0) ++ref[keys[i]];
  }
  simt::launch(aggregated_histogram, 1, 96, 0, nullptr, keys.data(), 1000, hist.data());
  check("warp-aggregated histogram (__activemask, __match_any_sync)", hist == ref);
}

void test_block_votes() {
  Votes v{};
  simt::launch(block_votes, 1, 200, 0, nullptr, &v);
  check("__syncthreads_or/_and/_count", v.any == 1 && v.all == 1 && v.count == 50 && v.none == 0);
}

void test_atomics() {
  std::vector<int> keys(1000);
  int ref[16] = {};
  for (int i = 0; i < 1000; ++i) keys[i] = (i * 37) % 1000, ref[keys[i] & 15]++;
  AtomicOut o{};
  simt::launch(shared_atomics, 1, 128, 0, nullptr, keys.data(), 1000, &o);
  check("shared atomicAdd (int, float, double)",
        std::equal(o.hist, o.hist + 16, ref) && o.fsum == 500.0f && o.dsum == 250.0);
  check("atomicMin (unsigned long long) / atomicMax (long long)", o.umin == 100 && o.smax == 0);
  check("atomicInc / atomicDec wrap", o.inc == 128 % 10 && o.dec == 9 - (128 - 1) % 10);
  check("atomicCAS loop / atomicExch", o.cas_sum == 128 && o.exch_seen >= 0 && o.exch_seen < 128);
}

void test_multi_dim() {
  const dim3 grid(2, 3), block(8, 4, 2);
  const unsigned n = 64, blocks = 6;
  std::vector<unsigned> out(n * blocks), ballots(2 * blocks);
  simt::launch(coordinates, grid, block, 0, nullptr, out.data(), ballots.data());
  bool ok = true;
  for (unsigned b = 0; b < blocks; ++b)
    for (unsigned t = 0; t < n; ++t)
      ok &= out[b * n + t] ==
            ((t % 8) | (t / 8 % 4) << 8 | (t / 32) << 16 | (b % 2) << 24 | (b / 2) << 28);
  check("threadIdx.x/y/z and blockIdx.x/y in a (8,4,2) x (2,3) launch", ok);
  check("warps from the linear thread index", ballots[0] == 0xffu && ballots[1] == 0xffu);
}

void test_cub() {
  constexpr int B = 128;
  std::vector<float> x(B);
  for (int i = 0; i < B; ++i) x[i] = 1.0f / float(i + 1) * (i % 2 ? -1.0f : 1.0f) * 1e3f;
  // CUB's order: a shuffle-down tree per warp, then the warps in order.
  float tree = 0;
  for (int w = 0; w < B / 32; ++w) {
    float v[32];
    for (int l = 0; l < 32; ++l) v[l] = x[32 * w + l];
    for (int off = 1; off < 32; off *= 2)
      for (int l = 0; l + off < 32; ++l) v[l] += v[l + off];
    tree = w == 0 ? v[0] : tree + v[0];
  }
  float sum = 0, top = 0, others = 0;
  int isum = 0;
  simt::launch(cub_reduce<B>, 1, B, 0, nullptr, x.data(), 40, &sum, &top, &others, &isum);
  unsigned poison;
  std::memcpy(&poison, &others, 4);
  check("cub::BlockReduce Sum in CUB's order", sum == tree);
  check("cub::BlockReduce Reduce(Max, num_valid) / int Sum",
        top == 39.0f && isum == B * (B - 1) / 2);
  check("cub::BlockReduce result poisoned outside thread 0", poison == 0xffffffffu);
}

void test_poison() {
  if (!SIMT_SHARED_SECTION) return check("poisoned shared memory (skipped: plain statics)", true);
  float out[2] = {0, 0};
  simt::launch(uninitialized_shared, 2, 32, 0, nullptr, out);
  check("shared memory poisoned before each block (read before write)",
        std::isnan(out[0]) && std::isnan(out[1]));
  double dout[2] = {0, 0};
  simt::launch(uninitialized_template_shared<8, double>, 2, 32, 0, nullptr, dout);
  check("... in a template kernel", std::isnan(dout[0]) && std::isnan(dout[1]));
  unsigned uout[2] = {0, 0};
  simt::launch(uninitialized_inline_shared, 2, 32, 0, nullptr, uout);
  check("... in an inline device function", uout[0] == ~0u && uout[1] == ~0u);
}

// Right in thread order, wrong when thread 0 does not run first.
void test_race() {
  std::vector<int> out(128);
  int salt = 3;
  auto wrong_count = [&] {
    ++salt;
    simt::launch(missing_barrier, 1, 128, 0, nullptr, salt, out.data());
    int wrong = 0;
    for (int t = 0; t < 128; ++t) wrong += out[t] != t * salt + 1;
    return wrong;
  };
  {
    EnvScope order("SIMT_ORDER", "seq");
    check("missing __syncthreads: hidden in seq order", wrong_count() == 0);
  }
  {
    EnvScope order("SIMT_ORDER", "rev");
    check("missing __syncthreads: exposed in rev order", wrong_count() == 127);
  }
  EnvScope order("SIMT_ORDER", "random");
  int exposed = 0;
  for (const char* seed : {"1", "2", "3", "4"}) {
    EnvScope s("SIMT_SEED", seed);
    exposed += wrong_count() > 0;
  }
  check("missing __syncthreads: exposed in random order (4 seeds)", exposed >= 3);
}

void test_spin_wait() {
  EnvScope order("SIMT_ORDER", "rev");
  int out = 0;
  simt::launch(spin_wait, 1, 32, 0, nullptr, &out);
  check("spin-wait progresses through __nanosleep", out == 42);
}

void test_errors() {
  std::vector<int> out(64);
  int* o = out.data();
  check_error("deadlock: divergent __syncthreads / __syncwarp",
              [] { simt::launch(deadlock, 1, 32, 0, nullptr); },
              {"deadlock", "threads 0-15 at __syncthreads (", line(kDeadlockSync),
               "threads 16-31 at __syncwarp (", line(kDeadlockWarp)});
  check_error("threads at two different __syncthreads",
              [] { simt::launch(two_barriers, 1, 32, 0, nullptr); },
              {"different barriers", line(kSiteA), line(kSiteB)});
  {
    EnvScope order("SIMT_ORDER", "seq");
    check_error("thread exits while others wait at __syncthreads",
                [o] { simt::launch(barrier_after_exit, 1, 64, 0, nullptr, o); },
                {"thread 32 (32,0,0)", "exited while 32 thread(s) wait", line(kAfterExit)});
    check_error("lane exits while its mask waits",
                [o] { simt::launch(shuffle_exited, 1, 32, 0, nullptr, o); },
                {"lane 20 of warp 0", "exited while lanes 0-19 wait", line(kShflExited)});
  }
  {
    EnvScope order("SIMT_ORDER", "rev");
    check_error("__syncthreads after threads exited",
                [o] { simt::launch(barrier_after_exit, 1, 64, 0, nullptr, o); },
                {line(kAfterExit), "after 32 thread(s) exited (threads 32-63)"});
    check_error("shuffle mask names exited lanes",
                [o] { simt::launch(shuffle_exited, 1, 32, 0, nullptr, o); },
                {line(kShflExited), "names exited lanes 20-31"});
  }
  {
    EnvScope allow("SIMT_ALLOW_EXITED", "1");
    bool ok = true;
    try {
      simt::launch(barrier_after_exit, 1, 64, 0, nullptr, o);
    } catch (const simt::Error&) {
      ok = false;
    }
    check("SIMT_ALLOW_EXITED=1 counts exited threads as arrived", ok);
  }
  check_error("warp mask omits the calling lane",
              [o] { simt::launch(mask_omits_lane, 1, 32, 0, nullptr, o); },
              {"calls it with mask 0x00000001", "which omits the calling lane"});
  check_error("lanes with different masks",
              [o] { simt::launch(different_masks, 1, 32, 0, nullptr, o); },
              {"different masks", line(kMaskA), line(kMaskB), "0x0001ffff", "0xffffffff"});
  check_error("lanes at different warp operations",
              [o] { simt::launch(different_ops, 1, 32, 0, nullptr, o); },
              {"different warp operations", "__shfl_sync", "__ballot_sync"});
  check_error("shuffle width not a power of 2",
              [o] { simt::launch(bad_width, 1, 32, 0, nullptr, o); },
              {"width 12"});
  check_error("block of 0 threads", [] { simt::launch(empty_kernel, 1, 0, 0, nullptr); },
              {"invalid block size 0"});
  check_error("block of 1025 threads", [] { simt::launch(empty_kernel, 1, 1025, 0, nullptr); },
              {"invalid block (1025,1,1)"});
  check_error("block z of 65", [] { simt::launch(empty_kernel, 1, dim3(1, 1, 65), 0, nullptr); },
              {"invalid block (1,1,65)"});
  check_error("grid of 0 blocks", [] { simt::launch(empty_kernel, dim3(4, 0), 32, 0, nullptr); },
              {"invalid grid (4,0,1)"});
  check_error("negative grid", [] { simt::launch(empty_kernel, -1, 32, 0, nullptr); },
              {"invalid grid size -1"});
  check_error("grid that does not fit",
              [] { simt::launch(empty_kernel, int64_t(1) << 32, 32, 0, nullptr); },
              {"invalid grid size 4294967296"});
  constexpr int kLaunchLine = __LINE__ + 2;
  check_error("dynamic shared memory",
              [] { simt::Launch(empty_kernel, 1, 32, 16, nullptr)(); },
              {"dynamic shared memory (16 bytes) is not emulated", line(kLaunchLine)});
  check_error("nested launch", [] { simt::launch(nested_launch, 1, 2, 0, nullptr); },
              {"no dynamic parallelism"});
  check_error("__trap", [] { simt::launch(trap_kernel, 1, 32, 0, nullptr); },
              {"__trap (", line(kTrap), "thread 3"});
  check_error("exception from kernel code",
              [] { simt::launch(throwing_kernel, 1, 32, 0, nullptr); },
              {"thread 2 (2,0,0)", "threw: boom"});
  check_error("cub::BlockReduce in a block of another size",
              [o] { simt::launch(wrong_block_reduce, 1, 32, 0, nullptr, o); },
              {"BlockReduce for a block of (64,1,1) used in a block of (32,1,1)"});
  check_error("barrier outside a kernel", [] { __syncthreads(); }, {"called outside a kernel"});
  {
    EnvScope order("SIMT_ORDER", "backwards");
    check_error("bad SIMT_ORDER", [] { simt::launch(empty_kernel, 1, 1, 0, nullptr); },
                {"SIMT_ORDER=backwards: expected seq, rev or random"});
  }
  test_block_sum();  // the emulator recovers from failed launches
}

void test_threads() {
  std::vector<int> x(3000, 2);
  bool ok[2] = {true, true};
  auto work = [&](int k) {
    std::vector<long long> out(4);
    for (int rep = 0; rep < 20; ++rep) {
      simt::launch(block_sum<64>, 4, 64, 0, nullptr, x.data(), 3000, out.data());
      for (long long v : out) ok[k] &= v == 6000;
    }
  };
  std::thread a(work, 0), b(work, 1);
  a.join(), b.join();
  check("launches from two OS threads", ok[0] && ok[1]);
}

void test_intrinsics() {
  check("__float2int_rn ties to even",
        __float2int_rn(2.5f) == 2 && __float2int_rn(3.5f) == 4 && __float2int_rn(-2.5f) == -2);
  check("__float2int_rz/rd/ru",
        __float2int_rz(-2.7f) == -2 && __float2int_rd(-2.1f) == -3 && __float2int_ru(2.1f) == 3);
  check("__double2ull_rn / __double2ll_rn saturate, NaN -> 0",
        __double2ull_rn(-1.0) == 0 && __double2ull_rn(1e30) == ~0ull &&
            __double2ll_rn(-1e30) == (-0x7fffffffffffffffll - 1) && __double2ll_rn(NAN) == 0 &&
            __double2ull_rn(0.5) == 0 && __double2ull_rn(1.5) == 2);
  check("__ull2double_rn / __ll2double_rn",
        __ull2double_rn(~0ull) == 18446744073709551616.0 && __ll2double_rn(-3) == -3.0);
  check("__umulhi / __umul64hi / __mul64hi",
        __umulhi(0x80000000u, 6u) == 3u && __umul64hi(1ull << 63, 6ull) == 3ull &&
            __mul64hi(-1ll, 1ll) == -1ll && __mulhi(-2, 0x40000000) == -1);
  check("__clz / __clzll / __popc / __ffs / __brev",
        __clz(0) == 32 && __clz(1) == 31 && __clzll(1) == 63 && __popcll(~0ull) == 64 &&
            __ffs(0) == 0 && __ffs(8) == 4 && __brev(1u) == 0x80000000u &&
            __brevll(1ull) == 1ull << 63 &&
            __byte_perm(0x33221100u, 0x77665544u, 0x5140u) == 0x55114400u);
  check("__expf: the GPU's composition, subnormal results flushed",
        __expf(0.0f) == 1.0f && std::fabs(__expf(1.0f) / 2.7182817f - 1.0f) < 1e-6f &&
            __expf(-100.0f) == 0.0f && std::isinf(__expf(100.0f)));
  check("__logf / __fdividef / __saturatef",
        std::fabs(__logf(10.0f) - 2.3025851f) < 1e-6f && __fdividef(1.0f, 0x1p127f) == 0.0f &&
            __saturatef(NAN) == 0.0f && __saturatef(2.0f) == 1.0f);
  check("CUDA's global min/max overloads",
        max(-1, 1u) == 0xffffffffu && min(2ll, -3ll) == -3ll && max(1.5f, 2.0) == 2.0 &&
            min(3u, 4u) == 3u);
  check("__fmaf_rn is fused, __fmul_rn/__fadd_rn are not",
        __fmaf_rn(1.0f + 0x1p-23f, 1.0f - 0x1p-23f, -1.0f) == -0x1p-46f &&
            __fadd_rn(__fmul_rn(1.0f + 0x1p-23f, 1.0f - 0x1p-23f), -1.0f) == 0.0f);
}

__global__ void barrier_loop(int iters, int* out) {
  int acc = 0;
  for (int i = 0; i < iters; ++i) acc += __syncthreads_count(i & 1);
  if (threadIdx.x == 0) *out = acc;
}

__global__ void shuffle_loop(int iters, int* out) {
  int acc = int(threadIdx.x);
  for (int i = 0; i < iters; ++i) acc += __shfl_xor_sync(0xffffffffu, acc, 1) & 1;
  if (threadIdx.x == 0) *out = acc;
}

// Not an assertion: what one scheduling point costs (the machine may be busy).
void time_barriers() {
  const int blocks = 4, threads = 512, iters = 200;
  int out = 0;
  simt::launch(barrier_loop, 1, threads, 0, nullptr, 1, &out);  // maps and touches the stacks
  auto per_op_ns = [&](void (*kernel)(int, int*)) {
    const auto t0 = std::chrono::steady_clock::now();
    simt::launch(kernel, blocks, threads, 0, nullptr, iters, &out);
    const std::chrono::duration<double, std::nano> dt = std::chrono::steady_clock::now() - t0;
    return dt.count() / (double(blocks) * threads * iters);
  };
  const double sync = per_op_ns(barrier_loop);
  check("timed barrier loop", out == threads * iters / 2);
  const double shfl = per_op_ns(shuffle_loop);
  std::printf("     cost: %.1f ns per thread per __syncthreads, %.1f ns per __shfl_xor_sync "
              "(%d threads)\n", sync, shfl, threads);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "oob") {
    int out = 0;
    simt::launch(shared_overflow, 1, 64, 0, nullptr, 5, &out);
    std::printf("shared_overflow ran (%d)\n", out);
    return 0;
  }
  const char* order = std::getenv("SIMT_ORDER");
  std::printf("SIMT_ORDER=%s SIMT_UCONTEXT=%d SIMT_SHARED_SECTION=%d ASan=%d\n",
              order ? order : "(seq)", SIMT_UCONTEXT, SIMT_SHARED_SECTION, SIMT_ASAN);
  test_launch_forms();
  test_block_sum();
  test_shuffles();
  test_warp_misc();
  test_block_votes();
  test_atomics();
  test_multi_dim();
  test_cub();
  test_poison();
  test_race();
  test_spin_wait();
  test_errors();
  test_threads();
  test_intrinsics();
  time_barriers();
  std::printf("%s: %d failed\n", g_failures ? "FAILED" : "passed", g_failures);
  return g_failures != 0;
}
