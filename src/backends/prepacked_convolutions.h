// Prepacked oneDNN convolutions for frozen TorchScript graphs (prepacked_convolutions.cpp).
#pragma once

#include <torch/csrc/jit/api/module.h>

namespace torchship::backends {

// Whether this libtorch has oneDNN's pointwise convolutions (2.0 and newer, built with oneDNN).
bool can_prepack_convolutions();

// Rewrites the 2-D convolutions of constant fp32 or bf16 weights in a frozen module's forward to
// oneDNN calls on weights packed once (held as attributes of the module), with a following ReLU or
// residual addition (+ ReLU) fused in. Returns how many were rewritten (0 where this libtorch
// cannot). The caller verifies the result: the fused kernels round differently.
int prepack_convolutions(torch::jit::Module& frozen);

}  // namespace torchship::backends
