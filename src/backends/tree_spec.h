// The structure of a compiled package's inputs and outputs: torch.utils._pytree's TreeSpec, as
// AOTInductor stores it (get_call_spec()). A package runs on a flat list of tensors; the spec
// rebuilds the tuples, lists and dicts the Python function took and returned.
#pragma once

#include <string>
#include <vector>

#include <ATen/core/ivalue.h>

namespace torchship::backends {

struct TreeSpec {
  enum class Kind { Leaf, None, Tuple, List, Dict };
  Kind kind = Kind::Leaf;
  std::vector<c10::IValue> keys;  // a dict's keys (strings or ints), in the children's order
  std::vector<TreeSpec> children;
  c10::TypePtr cached_type;  // type(), set once parsed

  size_t leaf_count() const;
  // The TorchScript type of values of this structure (tensors at the leaves).
  c10::TypePtr type() const;
  // The value of this structure whose leaves are leaves[next...]; advances next.
  c10::IValue unflatten(const std::vector<at::Tensor>& leaves, size_t& next) const;
  // Appends value's leaves in the spec's order. Throws Error(BadInput) "<where>[1].boxes: ..."
  // when the value's structure differs (a list of another length, a missing dict key).
  void flatten(const c10::IValue& value, const std::string& where,
               std::vector<at::Tensor>& leaves) const;
};

// Parses torch.utils._pytree.treespec_dumps's JSON ([protocol, node]). Throws Error(BadModel)
// naming `what` when the text is not a spec torchship can rebuild.
TreeSpec parse_tree_spec(const std::string& text, const std::string& what);

}  // namespace torchship::backends
