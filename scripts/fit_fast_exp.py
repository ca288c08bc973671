"""Fit and check the polynomial of the CPU loss kernels' fast_exp
(csrc/cpu/moment_loss.cpp): exp(r) = 1 + r + r^2 P(r) on |r| <= ln2 / 2.

P is fitted by iteratively reweighted least squares on Chebyshev nodes, which
converges to the relative-error minimax fit, then the whole fast_exp (range
reduction, P, scaling) is evaluated in float32 arithmetic over [-87, 0] and its
maximum relative error against float64 exp is printed, beside the kernel's
coefficients (read from the source) so the two can be compared.

    python scripts/fit_fast_exp.py [--degree 4]
"""

from __future__ import annotations

import argparse
import pathlib
import re

import numpy as np

SOURCE = pathlib.Path(__file__).resolve().parents[1] / "csrc" / "cpu" / "moment_loss.cpp"


def fit(degree: int, iters: int = 200) -> np.ndarray:
    """Coefficients c_0..c_degree of P (lowest first), relative-error minimax."""
    half = np.log(2.0) / 2
    r = np.cos(np.linspace(0.0, np.pi, 4001)) * half
    r = r[np.abs(r) > 1e-9]
    scale = r**2 / np.exp(r)  # relative error of 1 + r + r^2 P(r)
    A = np.vander(r, degree + 1, increasing=True) * scale[:, None]
    b = (np.exp(r) - 1 - r) / r**2 * scale
    w = np.ones_like(r)
    for _ in range(iters):
        c, *_ = np.linalg.lstsq(A * w[:, None], b * w, rcond=None)
        err = np.abs(A @ c - b)
        w = w * np.sqrt(err / err.max() + 1e-3)
        w /= w.max()
    return c


def fast_exp32(c: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The kernel's fast_exp in float32 steps (without FMA's single rounding)."""
    f = np.float32
    x = x.astype(np.float32)
    xc = np.minimum(np.maximum(x, f(-88)), f(88))
    kf = (xc * f(1.44269504) + f(12582912.0)) - f(12582912.0)
    r = (xc - kf * f(0.693359375)) + kf * f(2.12194440e-4)
    p = f(c[-1])
    for ci in c[-2::-1]:
        p = p * r + f(ci)
    p = p * (r * r) + r + f(1)
    # the exponent field k + 127 is 0 from about -87.7 down: scale +0
    scale = np.where(kf > -127, np.exp2(kf.astype(np.float64)), 0.0)
    return p.astype(np.float64) * scale


def kernel_coefficients() -> np.ndarray:
    """P's coefficients as written in fast_exp (highest first there)."""
    body = SOURCE.read_text().split("inline float fast_exp", 1)[1].split("\n}", 1)[0]
    vals = re.findall(r"float p = ([0-9.e+-]+)f;|p = p \* r \+ ([0-9.e+-]+)f;", body)
    return np.array([float(a or b) for a, b in vals][::-1])


def max_rel_err(c: np.ndarray) -> float:
    x = np.linspace(-87.0, 0.0, 2_000_001).astype(np.float32)
    return float(np.max(np.abs(fast_exp32(c, x) / np.exp(x.astype(np.float64)) - 1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--degree", type=int, default=4, help="degree of P (default: 4)")
    args = ap.parse_args()
    c = fit(args.degree).astype(np.float32)
    print("fitted P (lowest first):", [np.format_float_positional(v) for v in c])
    print(f"fitted  max relative error over [-87, 0]: {max_rel_err(c.astype(np.float64)):.3g}")
    k = kernel_coefficients()
    print("kernel P (lowest first):", [repr(float(v)) for v in k])
    print(f"kernel  max relative error over [-87, 0]: {max_rel_err(k):.3g}")


if __name__ == "__main__":
    main()
