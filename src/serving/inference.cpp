#include "serving/inference.h"

#include <cstring>

#include <ATen/ATen.h>

#include "core/text.h"
#include "torchship/datatype.h"
#include "torchship/error.h"
#include "torchship/limits.h"
#include "torchship/value_tree.h"

namespace torchship::serving {
namespace {

// "a, b" or "none": the names a model takes, in messages.
std::string names_or_none(const std::vector<std::string>& names) {
  return names.empty() ? "none" : join(names);
}

}  // namespace

at::Tensor tensor_from_raw(const TensorHeader& header, std::string_view bytes,
                           const std::string& where, const std::string& source) {
  // The shape is checked against the bytes that came before anything is allocated for it.
  size_t expected = checked_nbytes(header.shape, c10::elementSize(header.type), where);
  if (bytes.size() != expected) {
    throw bad_input(where + ": " + source + " " + std::to_string(bytes.size()) + " bytes, but " +
                    header.datatype + " " + shape_text(header.shape) + " takes " +
                    std::to_string(expected));
  }
  if (header.type == c10::kBool) check_bool_bytes(bytes, where);
  at::Tensor tensor = at::empty(header.shape, at::TensorOptions().dtype(header.type));
  if (expected > 0) std::memcpy(tensor.data_ptr(), bytes.data(), expected);
  return tensor;
}

std::vector<c10::IValue> forward_arguments(const Model& model, std::vector<NamedTensor> inputs) {
  const auto& arguments = model.inputs();
  std::vector<std::string> names;
  for (const auto& argument : arguments) names.push_back(argument.name);
  std::vector<std::optional<at::Tensor>> by_position(arguments.size());
  for (auto& input : inputs) {
    auto it = std::find(names.begin(), names.end(), input.name);
    if (it == names.end()) {
      throw bad_input("unknown input '" + input.name +
                      "' (the model takes: " + names_or_none(names) + ")");
    }
    by_position[it - names.begin()] = std::move(input.tensor);
  }
  size_t count = 0;
  for (size_t i = 0; i < arguments.size(); ++i) {
    if (by_position[i]) count = i + 1;
  }
  std::vector<c10::IValue> values;
  for (size_t i = 0; i < count || (i < arguments.size() && !arguments[i].has_default); ++i) {
    if (!by_position[i]) {
      throw bad_input("missing input '" + arguments[i].name +
                      "' (the model takes: " + names_or_none(names) + ")");
    }
    values.emplace_back(*by_position[i]);
  }
  model.check_inputs(values);
  return values;
}

std::vector<NamedTensor> named_outputs(const c10::IValue& output, const Manifest* manifest) {
  std::vector<NamedTensor> out;
  for (const auto& leaf : output_leaves(output, manifest)) {
    if (leaf.value.isTensor()) {
      out.push_back({leaf.path, leaf.value.toTensor()});
    } else if (leaf.value.isInt() || leaf.value.isDouble() || leaf.value.isBool()) {
      out.push_back({leaf.path, at::scalar_to_tensor(leaf.value.toScalar())});
    } else if (!leaf.value.isNone()) {
      throw bad_model("output " + leaf.path + " is " + describe(leaf.value) +
                      ", which the KServe protocol cannot carry (tensors only)");
    }
  }
  return out;
}

std::vector<std::pair<NamedTensor, bool>> chosen_outputs(const InferRequest& request,
                                                         std::vector<NamedTensor> outputs) {
  std::vector<std::pair<NamedTensor, bool>> chosen;
  if (request.outputs.empty()) {
    for (auto& output : outputs) chosen.emplace_back(std::move(output), request.binary_all);
    return chosen;
  }
  std::vector<std::string> available;
  for (const auto& output : outputs) available.push_back(output.name);
  for (const auto& wanted : request.outputs) {
    auto it = std::find_if(outputs.begin(), outputs.end(),
                           [&](const NamedTensor& o) { return o.name == wanted.name; });
    if (it == outputs.end()) {
      throw bad_input("unknown output '" + wanted.name +
                      "' (the model returns: " + names_or_none(available) + ")");
    }
    chosen.emplace_back(*it, wanted.binary);
  }
  return chosen;
}

}  // namespace torchship::serving
