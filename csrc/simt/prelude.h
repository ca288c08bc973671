// Force-included (g++ -include) first in every emulated .cu translation unit.
// torch's headers are read as ordinary host code first; then the emulator;
// then __CUDACC__ / __CUDA_ARCH__, so that the project's shared headers
// (csrc/include/dmmd) take their device branches, exactly the code nvcc
// compiles for the GPU.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "simt.h"

#include <ATen/cuda/PhiloxUtils.cuh>  // uses __host__ __device__: after simt.h

#define __CUDACC__ 1
#define __CUDA_ARCH__ 900
