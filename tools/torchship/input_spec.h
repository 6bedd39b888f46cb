// Inputs described by short strings, as the CLI takes them (`--input SPEC`):
//   x.npy          a tensor from a NumPy file
//   photo.png      an image, decoded per the manifest (uint8 HWC RGB without one)
//   [a.npy,b.png]  a list or a tuple, as the argument's type is (List[Tensor], Tuple[Tensor,
//                  int], ...); items are files or inline JSON values, brackets nest
//                  ([[a.npy,b.npy],c.npy])
//   tree.json      a JSON tree (KServe v2 tensors, arrays, objects, scalars), typed by the schema
//   3, "text", null, {...}  the same JSON tree written inline
#pragma once

#include <string>

#include "torchship/model.h"

namespace torchship {

// Builds forward's argument `index` of `model` from `spec`. Throws Error(BadInput) saying what
// was expected and what came.
c10::IValue input_from_spec(const Model& model, size_t index, const std::string& spec);

}  // namespace torchship
