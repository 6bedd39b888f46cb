// Inputs to run a model on when the caller brings none: to benchmark it, to warm it up, to check
// an optimized module against the stored one.
#pragma once

#include <vector>

#include <ATen/core/ivalue.h>

#include "torchship/model.h"

namespace torchship {

// Random tensors shaped and typed as the manifest describes every input (free dimensions: 224 for
// an image's height and width, 1 otherwise; uint8 images 0..255, floats in [0, 1), integers
// 0..9), from a fixed seed. Empty when the archive has no manifest or the manifest does not
// describe every argument forward takes.
std::vector<c10::IValue> synthesized_inputs(const Model& model);

// The archive's first golden case, else synthesized_inputs(); empty when neither is known.
std::vector<c10::IValue> example_inputs(const Model& model);

}  // namespace torchship
