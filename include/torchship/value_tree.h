// Model outputs (and inputs) are trees: tensors and scalars at the leaves, tuples, lists, named
// tuples and dicts above them. This is the one walk over them, and the one way to name a leaf,
// used by the CLI (`run`), the server (KServe output names), golden checks and the batcher:
//
//   output             a single tensor
//   output[1]          an element of a tuple or list
//   output[1].boxes    a dict entry or a named-tuple field
//   logits, boxes[0]   top-level elements named by the manifest's outputs, or a top-level dict's
//                      keys or named tuple's fields, stand in for "output[i]"
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <ATen/core/ivalue.h>

#include "torchship/manifest.h"

namespace torchship {

struct Leaf {
  std::string path;
  c10::IValue value;
};

// The leaves of a forward's output, named as above (`manifest` may be null).
std::vector<Leaf> output_leaves(const c10::IValue& output, const Manifest* manifest);
// The leaves under `value`, their paths starting with `root`.
std::vector<Leaf> leaves(const c10::IValue& value, const std::string& root);

// The path steps: "[3]", ".boxes".
std::string index_step(size_t index);
std::string key_step(const c10::IValue& key);
std::string key_text(const c10::IValue& key);  // a dict key as text: "boxes", "3"
// A named tuple's field names, or none for other values.
std::vector<std::string> field_names(const c10::IValue& value);

// A path as a file name: "output[0].boxes" -> "output_0_boxes".
std::string file_name_of(const std::string& path);

// The same tree with every leaf replaced by fn(leaf): tuples stay tuples (named ones keep their
// names), lists and dicts keep their types.
c10::IValue map_leaves(const c10::IValue& value,
                       const std::function<c10::IValue(const c10::IValue&)>& fn);

// "FP32 [1, 1000]" / "tuple(3)" / "str": a short description of a value for messages.
std::string describe(const c10::IValue& value);

}  // namespace torchship
