"""Reference categorical sampling (kernel: csrc/include/dmmd/sample.h and the
row samplers csrc/cpu/sample_row.h, csrc/cuda/sample_row.cuh).

Same Philox words as the kernel (sub-stream 0, element row * ceil(V/2) + v//2,
words 0-1 for even v, 2-3 for odd v), float64 Gumbel transform, sort-based
top-k / top-p.

Scores use the centred logits x_v = (l_v - lmax) * (1 / T) (`centred_logits`:
the row's largest candidate logit removed and the scaling done in float64, then
one rounding to float32, as the kernels' centred_logit does), so the draw keeps
the noise's precision however large |l / T| is and never overflows.

The kept set (`keep_set`) is the kernels' exactly, bit for bit. Top-p masses
are integers: m_v = round(det_exp64(x_v - xmax) * 2^S), ties to even, with
S = min(52, 62 - V.bit_length()) and det_exp64 the kernels' exp (detmath.h,
restated here with the same float64 operations in the same order); the
threshold is the largest kept x* whose upper set {x >= x*} holds integer mass
>= target = min(total, ceil(top_p * float(total))). Integer sums are exact, so
the CPU and CUDA kernels and this reference agree on every row.

The kernel scores in float32, this reference in float64, so the drawn tokens
agree except on rows whose two best scores lie within float rounding of each
other; `return_margin=True` gives the float64 gap between the two best scores
of each row so tests can tell those rows apart (the kernel's float32 noise is
torch.ops.dmmd_ext.gumbel_from_bits of `gumbel_bits`)."""

from __future__ import annotations

import math

import torch

from . import noise

_INF = float("inf")


def gumbel_bits(n_rows: int, V: int, seed: int, offset: int) -> torch.Tensor:
    """[n_rows, V] int64: the 64 Philox bits behind each class's Gumbel noise."""
    half = (V + 1) // 2
    rows = torch.arange(n_rows, dtype=torch.int64)[:, None]
    el = rows * half + torch.arange(half, dtype=torch.int64)[None, :]
    w = noise.philox_draw(seed, offset, 0, el.reshape(-1))
    bits = torch.stack([noise.lo64(w), noise.hi64(w)], dim=-1).reshape(n_rows, 2 * half)
    return bits[:, :V]


def gumbel_noise(n_rows: int, V: int, seed: int, offset: int) -> torch.Tensor:
    """[n_rows, V] float64 Gumbel noise of the kernel's draws."""
    return noise.gumbel_from_bits_t(gumbel_bits(n_rows, V, seed, offset))


# ---- top-p masses: det_exp64 and the fixed point of csrc/include/dmmd/detmath.h
_INV_LN2 = float.fromhex("0x1.71547652b82fep+0")
_LN2_HI = float.fromhex("0x1.62e42fee00000p-1")
_LN2_LO = float.fromhex("0x1.a39ef35793c76p-33")
_SHIFT = float.fromhex("0x1.8p52")  # 1.5 * 2^52: adding it rounds to an integer
_SHIFT_BITS = 0x4338000000000000
_TWO52, _TWO52_BITS = 2.0**52, 0x4330000000000000
_Q = [1.0 / math.factorial(n) for n in range(13, 1, -1)]  # Taylor 1/13! .. 1/2!


def det_exp64(x: torch.Tensor) -> torch.Tensor:
    """exp in float64, the kernels' det_exp64 bit for bit (< 1 ulp): the same
    IEEE operations in the same order (torch's float64 CPU ops are single
    IEEE operations; each line is one op per element)."""
    x = x.double()
    t = x * _INV_LN2 + _SHIFT
    kd = t - _SHIFT
    kb = t.view(torch.int64) - _SHIFT_BITS  # k
    hi = x - kd * _LN2_HI
    lo = kd * _LN2_LO
    r = hi - lo
    c = (hi - r) - lo
    q = torch.full_like(r, _Q[0])
    for a in _Q[1:]:
        q = q * r + a
    y = 1.0 + (r + ((r * r) * q + c))
    h1 = ((kb + 2048) >> 1) - 1024  # floor(k / 2)
    h2 = kb - h1
    e = (y * ((h1 + 1023) << 52).view(torch.float64)) * ((h2 + 1023) << 52).view(torch.float64)
    e = torch.where(torch.isnan(x), x, e)  # outside [-746, 710] e is garbage: replaced
    return torch.where(x < -746.0, 0.0, torch.where(x > 710.0, _INF, e))


def mass_scale_bits(V: int) -> int:
    """S of the fixed point: a row of V masses <= 1 sums to < 2^62."""
    return min(52, 62 - int(V).bit_length())


def mass_fixed(e: torch.Tensor, V: int) -> torch.Tensor:
    """int64 round(e * 2^S), ties to even, of float64 e in [0, 1] (adding 2^52
    rounds e * 2^S <= 2^52 exactly; the integer is then the low mantissa bits)."""
    return ((e * 2.0 ** mass_scale_bits(V)) + _TWO52).view(torch.int64) - _TWO52_BITS


def topp_masses(x: torch.Tensor, xmax: torch.Tensor, V: int) -> torch.Tensor:
    """int64 top-p masses round(det_exp64(x - xmax) * 2^S) of float32 x."""
    return mass_fixed(det_exp64(x.double() - xmax.double()), V)


def mass_target(total: torch.Tensor, top_p: float) -> torch.Tensor:
    """min(total, ceil(top_p * float64(total))) for int64 totals."""
    return torch.minimum(total, torch.ceil(top_p * total.double()).long())


def keep_set(x: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Classes kept by top-k then top-p, from float32 scaled logits x [N, V]
    (excluded classes already -inf). Ties at either threshold are kept."""
    N, V = x.shape
    keep = x > -_INF
    n_fin = keep.sum(1)
    srt = x.sort(1, descending=True).values
    if top_k > 0 and V > 0:
        kth = srt[:, min(top_k, V) - 1]
        on = top_k < n_fin
        keep &= ~on[:, None] | (x >= kth[:, None])
    if top_p < 1.0 and V > 0:
        xmax = x.max(1, keepdim=True).values
        ok = keep & torch.isfinite(xmax)  # +inf rows are decided elsewhere
        m = torch.where(ok, topp_masses(x, xmax, V), torch.zeros(N, V, dtype=torch.int64))
        order = torch.where(keep, x, torch.full_like(x, -_INF)).sort(dim=1, descending=True, stable=True)
        cum = m.gather(1, order.indices).cumsum(1)  # exact: the total is < 2^62
        target = mass_target(cum[:, -1:], top_p)
        j = (cum < target).sum(1, keepdim=True).clamp(max=V - 1)
        xstar = order.values.gather(1, j)
        keep &= x >= xstar
    return keep


def centred_logits(l: torch.Tensor, temperature: float, cand: torch.Tensor) -> torch.Tensor:
    """x = (l - lmax) * (1 / T) for float32 rows l [N, V]: lmax is the largest
    candidate logit of the row (NaN ignored); 1 / T, the subtraction and the
    product are float64 operations, the product rounded once to float32. Rows with lmax = +inf give +inf
    for the +inf classes and -inf elsewhere. Non-candidates are not masked here."""
    lc = torch.where(cand & ~torch.isnan(l), l, torch.full_like(l, -_INF))
    lmax = lc.max(1, keepdim=True).values if l.shape[1] > 0 else lc[:, :1]
    x = ((l.double() - lmax.double()) * (1.0 / float(temperature))).float()
    inf_row = lmax == _INF
    at_inf = torch.where(l == _INF, torch.full_like(x, _INF), torch.full_like(x, -_INF))
    return torch.where(inf_row & ~torch.isnan(l), at_inf, x)


def kept_classes(l: torch.Tensor, temperature: float, top_k: int, top_p: float,
                 exclude: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For float32 rows l [N, V]: the centred logits x (-inf for
    non-candidates), the valid rows (no NaN candidate, some l > -inf) and the
    kept set (the +inf classes if any, else top-k then top-p)."""
    N, V = l.shape
    cand = torch.ones(N, V, dtype=torch.bool)
    if exclude >= 0:
        cand[:, exclude] = False
    nan_row = (torch.isnan(l) & cand).any(1)
    valid = ((l > -_INF) & cand).any(1) & ~nan_row
    x = centred_logits(l, temperature, cand)
    x = torch.where(cand & valid[:, None], x, torch.full_like(x, -_INF))
    has_inf = (x == _INF).any(1, keepdim=True)
    keep = torch.where(has_inf, x == _INF, keep_set(x, top_k, top_p))
    return x, valid, keep


def sample_categorical(logits, temperature=1.0, top_k=0, top_p=1.0, mask=None, exclude=-1, *,
                       seed: int, offset: int = 0, return_margin: bool = False):
    V = logits.shape[-1]
    lead = logits.shape[:-1]
    l = logits.detach().reshape(-1, V).cpu().float()
    N = l.shape[0]
    x, valid, keep = kept_classes(l, temperature, top_k, top_p, exclude)
    if mask is not None:
        valid &= mask.reshape(-1).cpu()
    g = gumbel_noise(N, V, seed, offset)
    x64 = x.double()
    score = torch.where(x == _INF, g, x64 + g)
    score = torch.where(keep, score, torch.full_like(score, -_INF))
    idx = score.argmax(1) if V > 0 else torch.zeros(N, dtype=torch.int64)
    out = torch.where(valid, idx, torch.full_like(idx, -1)).reshape(lead).to(logits.device)
    if not return_margin:
        return out
    top2 = score.topk(min(2, V), dim=1).values if V > 0 else torch.zeros(N, 0)
    margin = (top2[:, 0] - top2[:, 1]) if V > 1 else torch.full((N,), _INF)
    return out, margin.reshape(lead)
