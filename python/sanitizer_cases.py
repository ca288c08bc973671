"""Small CUDA calls of every op, for compute-sanitizer memcheck in the GPU check
(scripts/gpu_check.sh). Odd sizes on purpose: V = 1, V not a multiple of the
block or vector width, empty tensors, masks, non-contiguous inputs."""

import torch

from dmmd_ext import ops


def run(dev="cuda"):
    g = torch.Generator(device="cpu").manual_seed(0)
    for V in (1, 3, 257, 4099):
        logits = torch.randn(7, V, generator=g).to(dev)
        for dt in (torch.float32, torch.bfloat16, torch.float16):
            lg = logits.to(dt)
            ops.sample_categorical(lg, seed=1)
            ops.sample_categorical(lg, top_k=2, top_p=0.7, seed=1)
            ops.sample_categorical(lg.t().contiguous().t(), mask=torch.rand(7, device=dev) < 0.5, seed=2)
        z = torch.full((2, 7), V, dtype=torch.int64, device=dev)
        z[0, :3] = 0
        ops.posterior_step(z, logits.reshape(1, 7, V).expand(2, 7, V).contiguous(), 0.3, 0.6,
                           "masked", V, seed=3)
        zu = torch.zeros(2, 7, dtype=torch.int64, device=dev)
        ops.posterior_step(zu, logits.reshape(1, 7, V).expand(2, 7, V).contiguous(), 0.3, 0.6,
                           "uniform", -1, seed=3)
        ops.corrupt(zu, torch.rand(2, device=dev), "uniform", V, seed=4)
        if hasattr(ops, "generator_loss"):
            S, T, A = (torch.randn(7, V, generator=g).to(dev).requires_grad_(i == 0) for i in range(3))
            w = (torch.rand(7, generator=g) < 0.6).float().to(dev)
            ops.generator_loss(S, T, A, w, tau=0.8, top_p=0.9).sum().backward()
            A2 = A.detach().requires_grad_()
            ops.auxiliary_loss(A2, T, torch.randint(0, V, (7,), device=dev), w, top_p=0.9).sum().backward()
            ops.auxiliary_loss(A2, T, S.detach(), w).sum().backward()
    ops.sample_categorical(torch.empty(0, 5, device=dev), seed=0)
    torch.cuda.synchronize()
    print("sanitizer cases ran")


if __name__ == "__main__":
    run()
