"""The CPU kernels run on torch's intra-op threads (at::parallel_for, OpenMP) and give
bitwise the same results for any thread count: rows and tokens are independent and
every random draw is keyed by (seed, offset, element), not by the thread."""

import pytest
import torch

import dmmd_ext
from dmmd_ext import ops


def test_kernels_built_with_openmp_when_torch_is():
    # Without OpenMP at::parallel_for's pragma is ignored and every kernel runs on one
    # thread: slower, not wrong, so only the build record can tell.
    if "OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("this torch does not use the OpenMP backend")
    assert dmmd_ext.build_info()["openmp"], "dmmd_ext._C was built without OpenMP"


def _one_and_many(fn):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fn()
        torch.set_num_threads(max(threads, 2))
        many = fn()
    finally:
        torch.set_num_threads(threads)
    return one, many


def _logits(n, v, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, v, generator=g) * 3).to(dtype)


# sizes with several parallel_for chunks per thread (grains are about 32K elements)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("V", [256, 4099])
def test_losses_thread_invariant(dtype, V):
    N = 600 if V == 256 else 40
    S, T, A = (_logits(N, V, dtype, s) for s in range(3))
    w = torch.rand(N, generator=torch.Generator().manual_seed(3))
    ids = torch.randint(0, V, (N,), generator=torch.Generator().manual_seed(4))

    def run():
        out = []
        for top_p in (1.0, 0.9):
            s = S.detach().requires_grad_()
            loss = ops.generator_loss(s, T, A, w, 0.8, top_p, 2.0)
            loss.sum().backward()
            out += [loss, s.grad]
            for tgt in (ids, S):
                a = A.detach().requires_grad_()
                loss = ops.auxiliary_loss(a, T, tgt, w, 0.8, top_p, 2.0)
                loss.sum().backward()
                out += [loss, a.grad]
        return out

    one, many = _one_and_many(run)
    for x, y in zip(one, many):
        assert torch.equal(x, y)


@pytest.mark.parametrize("kw", [{}, {"top_k": 50}, {"top_p": 0.9, "temperature": 0.7}])
def test_sampling_thread_invariant(kw):
    L = _logits(3000, 256, torch.float32, 5)
    one, many = _one_and_many(lambda: ops.sample_categorical(L, seed=11, offset=3, **kw))
    assert torch.equal(one, many)
    assert (one >= 0).all()


@pytest.mark.parametrize("process", ["masked", "uniform"])
def test_posterior_thread_invariant(process):
    B, Lq, K = 8, 300, 64
    g = torch.Generator().manual_seed(6)
    z_t = torch.randint(0, K + 1 if process == "masked" else K, (B, Lq), generator=g)
    logits = torch.randn(B, Lq, K, generator=g)
    a_t, a_s = torch.full((B,), 0.3), torch.full((B,), 0.6)
    one, many = _one_and_many(lambda: ops.posterior_step(z_t, logits, a_t, a_s, process, seed=2))
    for x, y in zip(one, many):
        assert torch.equal(x, y)
