#include "model/signature_checks.h"

#include <limits>

#include "core/text.h"
#include "torchship/datatype.h"
#include "torchship/error.h"
#include "torchship/value_tree.h"

namespace torchship {
namespace {

const TensorSpec* spec_of(const Manifest* manifest, size_t index) {
  if (!manifest || index >= manifest->inputs.size()) return nullptr;
  return &manifest->inputs[index];
}

std::string plural(size_t count, const char* word) {
  return std::to_string(count) + " " + word + (count == 1 ? "" : "s");
}

// Checks a tensor against the manifest's spec for it (dtype, rank, fixed dimensions).
void check_tensor(const at::Tensor& tensor, const TensorSpec& spec, const std::string& where) {
  bool dtype_ok =
      spec.datatype.empty() || tensor.scalar_type() == scalar_type_from_datatype(spec.datatype);
  bool shape_ok = spec.shape.empty() || tensor.dim() == static_cast<int64_t>(spec.shape.size());
  bool empty_free = false;  // a free size (-1) is any size but 0: no model takes nothing there
  for (size_t i = 0; shape_ok && i < spec.shape.size(); ++i) {
    int64_t size = tensor.size(static_cast<int64_t>(i));
    empty_free = spec.shape[i] == -1 && size == 0;
    shape_ok = (spec.shape[i] == -1 && size > 0) || spec.shape[i] == size;
  }
  if (dtype_ok && shape_ok) {
    // A compiled package takes free sizes within the range it was compiled for.
    for (const auto& [dim, range] : spec.size_ranges) {
      int64_t size = tensor.size(dim);
      if (size < range.first || size > range.second) {
        bool unbounded = range.second == std::numeric_limits<int64_t>::max();
        std::string sizes = std::to_string(range.first) +
                            (unbounded ? " or more" : " to " + std::to_string(range.second));
        bool too_large = size > range.second;
        throw bad_input(
            where + ": dimension " + std::to_string(dim) + " is " + std::to_string(size) +
            ", the package was compiled for " + sizes +
            (dim == 0 && too_large ? " (send larger batches as several requests)" : ""));
      }
    }
    return;
  }
  std::string expected = spec.datatype.empty() ? "a tensor" : spec.datatype + " tensor";
  if (!spec.shape.empty()) expected += " of shape " + shape_text(spec.shape);
  if (!spec.layout.empty()) expected += " (" + spec.layout + ")";
  if (empty_free) expected += ", -1 being any size from 1";
  throw bad_input(where + ": expected " + expected + ", got " + describe(tensor));
}

}  // namespace

std::string argument_list(const backends::Signature& signature) {
  std::vector<std::string> arguments;
  for (const auto& argument : signature.inputs) {
    arguments.push_back(argument.name + ": " + argument.type_name());
  }
  return join(arguments);
}

void check_input_count(const backends::Signature& signature, size_t count) {
  size_t required = signature.required_inputs;
  size_t all = signature.inputs.size();
  if (count >= required && count <= all) return;
  std::string expected = required == all ? plural(all, "input")
                                         : std::to_string(required) + " to " + plural(all, "input");
  throw bad_input("expected " + expected + " (" + argument_list(signature) + "), got " +
                  std::to_string(count));
}

void check_inputs(const backends::Signature& signature, const Manifest* manifest,
                  const std::vector<c10::IValue>& values) {
  check_input_count(signature, values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    const Argument& argument = signature.inputs[i];
    std::string where = "input '" + argument.name + "'";
    if (!values[i].type()->isSubtypeOf(*argument.type)) {
      throw bad_input(where + ": expected " + argument.type_name() + ", got " +
                      describe(values[i]));
    }
    const TensorSpec* spec = spec_of(manifest, i);
    if (!spec) continue;
    if (argument.type->kind() == c10::TypeKind::TensorType) {
      check_tensor(values[i].toTensor(), *spec, where);
    } else if (argument.type->kind() == c10::TypeKind::ListType && values[i].isList()) {
      auto list = values[i].toList();
      for (size_t k = 0; k < list.size(); ++k) {
        c10::IValue item = list.get(k);
        if (item.isTensor()) {
          check_tensor(item.toTensor(), *spec, where + "[" + std::to_string(k) + "]");
        }
      }
    }
  }
}

bool inputs_pinned_by_manifest(const backends::Signature& signature, const Manifest* manifest) {
  for (size_t i = 0; i < signature.inputs.size(); ++i) {
    const TensorSpec* spec = spec_of(manifest, i);
    if (signature.inputs[i].type->kind() != c10::TypeKind::TensorType || !spec ||
        spec->datatype.empty() || spec->shape.empty()) {
      return false;
    }
    for (size_t d = 1; d < spec->shape.size(); ++d) {
      if (spec->shape[d] < 0) return false;
    }
  }
  return true;
}

}  // namespace torchship
