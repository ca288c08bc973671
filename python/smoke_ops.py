"""Smoke run of the kernels: corrupt a batch and show what the build contains.
Replaced by `dmmd demo` once the distillation demo exists."""

import torch

import dmmd_ext
from dmmd_ext import ops


def main():
    print("build:", dmmd_ext.build_info())
    x0 = torch.randint(0, 16, (4, 24), generator=torch.Generator().manual_seed(0))
    for process in ("masked", "uniform"):
        z = ops.corrupt(x0, torch.tensor([1.0, 0.7, 0.3, 0.0]), process, 16, seed=1)
        print(f"{process} corruption at a_t = 1, 0.7, 0.3, 0:\n{z}")


if __name__ == "__main__":
    main()
