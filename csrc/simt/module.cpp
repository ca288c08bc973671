// The emulated-CUDA module (dmmd_ext._simt, or _simt_asan for the sanitizer
// build): defines the op schemas in the dmmd_ext_simt namespace; the kernels
// of csrc/cuda/*.cu, compiled with the host compiler against the emulator,
// register themselves for CPU tensors there (DMMD_CUDA_IMPL in runtime.cuh).
#include <Python.h>
#include <torch/library.h>

#include "dmmd/schemas.h"

TORCH_LIBRARY(dmmd_ext_simt, m) { dmmd::define_kernel_schemas(m); }

#ifndef DMMD_SIMT_MODULE
#define DMMD_SIMT_MODULE _simt
#endif
#define DMMD_CAT2(a, b) a##b
#define DMMD_CAT(a, b) DMMD_CAT2(a, b)
#define DMMD_STR2(a) #a
#define DMMD_STR(a) DMMD_STR2(a)

extern "C" PyObject* DMMD_CAT(PyInit_, DMMD_SIMT_MODULE)(void) {
  static PyModuleDef def = {PyModuleDef_HEAD_INIT, DMMD_STR(DMMD_SIMT_MODULE),
                            "dmmd_ext's CUDA kernels run by the SIMT emulator "
                            "(torch.ops.dmmd_ext_simt)",
                            -1, nullptr};
  return PyModule_Create(&def);
}
