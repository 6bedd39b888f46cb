// Inputs checked against what a model takes: its signature (the backend's) and the manifest's
// specs, before anything runs, so that a bad input gets a message and not a kernel's error.
#pragma once

#include <vector>

#include "backends/backend.h"

namespace torchship {

// Throws Error(BadInput) unless `count` inputs fit (arguments with defaults may be left out).
void check_input_count(const backends::Signature& signature, size_t count);
// Throws Error(BadInput) unless `values` fit the signature's types and the manifest's specs
// (datatype, rank, fixed sizes; a free size is any size but 0).
void check_inputs(const backends::Signature& signature, const Manifest* manifest,
                  const std::vector<c10::IValue>& values);
// Whether every input is a tensor the manifest describes with a datatype and fixed sizes (the
// first, batch, dimension may be free): a model failing on such an input is the model's fault.
bool inputs_pinned_by_manifest(const backends::Signature& signature, const Manifest* manifest);
// "image: Tensor, scale: float", for messages.
std::string argument_list(const backends::Signature& signature);

}  // namespace torchship
