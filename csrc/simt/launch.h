// launch.h: kernel launches.
//
//   simt::launch(kernel, grid, block, smem, stream, args...);
//   simt::Launch(kernel, grid, block, smem, stream)(args...);
//
// The second form is what a launch macro expands to (the kernel expression
// comes first and may contain commas inside template arguments). Both record
// the launch's call site for error messages. grid and block are dim3
// or integers; integers that do not fit a dimension are rejected. The
// arguments are converted to the kernel's parameter types once per launch;
// each thread then calls the kernel with its own copies, as kernel
// parameters are by value. The launch returns when the grid has run.
#pragma once

#include <concepts>
#include <cstddef>
#include <limits>
#include <source_location>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "scheduler.h"
#include "types.h"

#pragma GCC visibility push(hidden)  // one emulator per module (simt.h)

namespace simt {
namespace detail {

inline dim3 to_dim3(dim3 d, const char*) { return d; }

template <std::integral I>
dim3 to_dim3(I v, const char* what) {
  if (v < 1 || uint64_t(v) > std::numeric_limits<unsigned int>::max())
    fail([&] { return std::string("invalid ") + what + " size " + std::to_string(v); });
  return dim3(static_cast<unsigned int>(v));
}

template <typename Kernel, typename Params>
struct BoundKernel {
  Kernel kernel;
  Params params;
  // One thread's call: copies the parameters into the kernel's arguments.
  static void run(const void* self) {
    const auto& k = *static_cast<const BoundKernel*>(self);
    std::apply(k.kernel, k.params);
  }
};

// The smem argument; converting to it also records where the launch is (its
// default argument is evaluated at the launch's call).
struct SharedBytes {
  size_t bytes;
  Site site;
  SharedBytes(size_t n, std::source_location loc = std::source_location::current())
      : bytes(n), site(site_of("kernel launch", loc)) {}
};

template <typename... P, typename... A>
void launch_kernel(void (*kernel)(P...), dim3 grid, dim3 block, const SharedBytes& smem,
                   A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "simt::launch: wrong number of kernel arguments");
  using Params = std::tuple<std::decay_t<P>...>;
  using Bound = BoundKernel<void (*)(P...), Params>;
  const Bound bound{kernel, Params(std::forward<A>(args)...)};
  run_grid(grid, block, smem.bytes, &Bound::run, &bound, smem.site);
}

}  // namespace detail

template <typename... P, typename G, typename B, typename... A>
void launch(void (*kernel)(P...), G grid, B block, detail::SharedBytes smem, cudaStream_t,
            A&&... args) {
  detail::launch_kernel(kernel, detail::to_dim3(grid, "grid"), detail::to_dim3(block, "block"),
                        smem, std::forward<A>(args)...);
}

template <typename... P>
class Launch {
 public:
  template <typename G, typename B>
  Launch(void (*kernel)(P...), G grid, B block, detail::SharedBytes smem, cudaStream_t = nullptr)
      : kernel_(kernel),
        grid_(detail::to_dim3(grid, "grid")),
        block_(detail::to_dim3(block, "block")),
        smem_(smem) {}

  template <typename... A>
  void operator()(A&&... args) const {
    detail::launch_kernel(kernel_, grid_, block_, smem_, std::forward<A>(args)...);
  }

 private:
  void (*kernel_)(P...);
  dim3 grid_, block_;
  detail::SharedBytes smem_;
};

template <typename... P, typename G, typename B, typename... Rest>
Launch(void (*)(P...), G, B, Rest...) -> Launch<P...>;

}  // namespace simt

#pragma GCC visibility pop
