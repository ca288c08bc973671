// The schemas of the kernel ops, stated once. csrc/ops.cpp defines them in
// the dmmd_ext namespace; the emulated-CUDA module (csrc/simt/module.cpp)
// defines the same schemas in dmmd_ext_simt, so both take the same keyword
// arguments and defaults.
#pragma once
#include <torch/library.h>

namespace dmmd {

inline void define_kernel_schemas(torch::Library& m) {
  // --- corruption and posterior (cpu/corrupt.cpp, cuda/corrupt.cu; */posterior.*)
  m.def(
      "corrupt(Tensor x0, Tensor alpha, int process, int mask_id, int vocab_size, "
      "Tensor? keep=None, Generator? generator=None, int? seed=None, int offset=0, "
      "bool validate=True) -> Tensor");
  m.def(
      "posterior_step(Tensor z_t, Tensor logits, Tensor alpha_t, Tensor alpha_s, int process, "
      "int mask_id, float temperature=1.0, int top_k=0, float top_p=1.0, "
      "Generator? generator=None, int? seed=None, int offset=0, bool validate=True) "
      "-> (Tensor, Tensor)");
  // --- categorical sampling (cpu/sample.cpp, cuda/sample.cu)
  m.def(
      "sample_categorical(Tensor logits, float temperature=1.0, int top_k=0, float top_p=1.0, "
      "Tensor? mask=None, int exclude=-1, Generator? generator=None, int? seed=None, "
      "int offset=0) -> Tensor");
  // --- fused logit-moment losses (cpu/moment_loss.cpp, cuda/moment_loss.cu)
  // [N, V] logits; loss [N] and per-row stats are float32 (float64 for float64
  // logits); stats feed the backward ops. Python: dmmd_ext/ops/losses.py.
  m.def(
      "moment_generator_loss(Tensor student, Tensor teacher, Tensor aux, Tensor weight, "
      "float tau=1.0, float top_p=1.0, float delta=2.0) -> (Tensor, Tensor)");
  m.def(
      "moment_generator_loss_backward(Tensor grad_loss, Tensor student, Tensor teacher, "
      "Tensor aux, Tensor weight, Tensor stats, float tau, float delta) -> Tensor");
  m.def(
      "moment_auxiliary_loss(Tensor aux, Tensor teacher, Tensor? target_ids, "
      "Tensor? target_logits, Tensor weight, float tau=1.0, float top_p=1.0, float delta=2.0, "
      "bool validate=True) -> (Tensor, Tensor)");
  m.def(
      "moment_auxiliary_loss_backward(Tensor grad_loss, Tensor aux, Tensor teacher, "
      "Tensor? target_ids, Tensor? target_logits, Tensor weight, Tensor stats, float tau, "
      "float delta) -> Tensor");
}

}  // namespace dmmd
