// moves_below (csrc/cpu/move_limit.h) against the double compare it replaces:
// for many thresholds, (uniform_of(m) < thr) == (m < moves_below(thr)) at the
// boundary (m within 3 of it) and at both ends. Prints "bad checked"; exit 1
// on any mismatch. Built and run by tests/test_corrupt.py.
#include <cmath>
#include <cstdio>
#include <random>

#include "move_limit.h"

using dmmd::kDraws;
using dmmd::moves_below;
using dmmd::uniform_of;

int main() {
  std::mt19937_64 g(1);
  long bad = 0, n = 0;
  auto check = [&](double thr) {
    const int64_t lim = moves_below(thr);
    auto one = [&](int64_t m) {
      ++n;
      bad += (uniform_of(m) < thr) != (m < lim);
    };
    for (int64_t m = std::max<int64_t>(0, lim - 3); m <= std::min(kDraws - 1, lim + 3); ++m) one(m);
    one(0);
    one(kDraws - 1);
  };
  for (int i = 0; i < 200000; ++i) {
    const double u = std::ldexp(static_cast<double>(g() >> 11), -53);
    check(u);
    check(std::nextafter(u, 2.0));
    check(std::nextafter(u, -1.0));
    const double v = uniform_of(static_cast<int64_t>(g() >> 11));  // exactly a draw's value
    check(v);
    check(std::nextafter(v, 0.0));
    check(std::ldexp(u, -static_cast<int>(g() % 60)));  // small rates
  }
  const double inf = INFINITY, nan = NAN;
  for (double t : {0.0, -0.0, 1.0, std::nextafter(1.0, 0.0), std::nextafter(1.0, 2.0), 0.5,
                   1e-300, 5e-324, -1.0, inf, -inf, nan, 1.0 - 0x1p-53, 0x1p-53, 0x1.8p-53,
                   0x1p-54})
    check(t);
  std::printf("%ld %ld\n", bad, n);
  return bad != 0;
}
