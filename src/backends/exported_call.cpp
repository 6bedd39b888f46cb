#include "backends/exported_call.h"

#include "torchship/error.h"
#include "torchship/tensor_json.h"
#include "torchship/value_tree.h"

namespace torchship::backends {
namespace {

// Argument names: the manifest's, else input_0, input_1, ...
Signature signature_of(const TreeSpec& inputs, const TreeSpec& outputs,
                       const std::optional<Manifest>& manifest, const std::string& path) {
  // The call spec's inputs are (args, kwargs); keyword arguments follow the positional ones.
  if (inputs.kind != TreeSpec::Kind::Tuple || inputs.children.size() != 2 ||
      inputs.children[0].kind != TreeSpec::Kind::Tuple ||
      inputs.children[1].kind != TreeSpec::Kind::Dict) {
    throw bad_model("cannot load " + path + ": its input spec is not (args, kwargs)");
  }
  Signature signature;
  const auto& args = inputs.children[0].children;
  const auto& kwargs = inputs.children[1];
  for (size_t i = 0; i < args.size(); ++i) {
    const ExportedArgument* exported = manifest && i < manifest->exported.arguments.size()
                                           ? &manifest->exported.arguments[i]
                                           : nullptr;
    std::string name = "input_" + std::to_string(i);
    if (exported && !exported->name.empty()) name = exported->name;
    if (manifest && i < manifest->inputs.size() && !manifest->inputs[i].name.empty()) {
      name = manifest->inputs[i].name;
    }
    // A constant (an int or a flag at export) was compiled in: the package takes no value for
    // it, and the facade's checks take only the one it was compiled with.
    bool constant = exported && exported->kind == "constant";
    signature.inputs.push_back({name, constant ? c10::AnyType::get() : args[i].type(), constant});
    if (!constant) signature.required_inputs = signature.inputs.size();
  }
  for (size_t i = 0; i < kwargs.keys.size(); ++i) {
    signature.inputs.push_back({key_text(kwargs.keys[i]), kwargs.children[i].type(), false});
  }
  if (!kwargs.keys.empty()) signature.required_inputs = signature.inputs.size();
  signature.output_type = outputs.type();
  return signature;
}

}  // namespace

ExportedCall::ExportedCall(const std::string& in_spec, const std::string& out_spec,
                           const std::optional<Manifest>& manifest, const std::string& path) {
  inputs_ = parse_tree_spec(in_spec, path + "'s input spec");
  outputs_ = parse_tree_spec(out_spec, path + "'s output spec");
  signature_ = signature_of(inputs_, outputs_, manifest, path);
  for (const auto& argument : signature_.inputs) {
    input_places_.push_back("input '" + argument.name + "'");
  }
  if (manifest) {
    for (const auto& argument : manifest->exported.arguments) {
      constants_.push_back(argument.kind == "constant" ? argument.value : "");
    }
  }
}

std::vector<at::Tensor> ExportedCall::flatten(const std::vector<c10::IValue>& inputs) const {
  std::vector<at::Tensor> flat;
  const auto& args = inputs_.children[0].children;
  const auto& kwargs = inputs_.children[1].children;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const TreeSpec& spec = i < args.size() ? args[i] : kwargs[i - args.size()];
    if (signature_.inputs[i].type->kind() == c10::TypeKind::AnyType) {
      check_constant(i, inputs[i]);
      continue;
    }
    spec.flatten(inputs[i], input_places_[i], flat);
  }
  for (auto& tensor : flat) tensor = tensor.contiguous();
  return flat;
}

size_t ExportedCall::flat_position(size_t argument) const {
  const auto& args = inputs_.children[0].children;
  size_t position = 0;
  for (size_t i = 0; i < argument && i < args.size(); ++i) {
    bool constant = signature_.inputs[i].type->kind() == c10::TypeKind::AnyType;
    if (!constant) position += args[i].leaf_count();
  }
  return position;
}

bool takes_static_batch(const StaticBatchModel& model, const std::vector<c10::IValue>& inputs) {
  for (size_t argument : model.arguments) {
    if (argument >= inputs.size() || !inputs[argument].isTensor()) return false;
    const at::Tensor& tensor = inputs[argument].toTensor();
    if (tensor.dim() == 0 || tensor.size(0) != model.batch) return false;
  }
  return true;
}

int static_model_for(const std::vector<StaticBatchModel>& models,
                     const std::vector<c10::IValue>& inputs) {
  for (size_t i = 0; i < models.size(); ++i) {
    if (takes_static_batch(models[i], inputs)) return static_cast<int>(i);
  }
  return -1;
}

c10::IValue ExportedCall::unflatten(const std::vector<at::Tensor>& outputs) const {
  size_t next = 0;
  c10::IValue result = outputs_.unflatten(outputs, next);
  if (next != outputs.size()) {
    throw bad_model("the compiled model returned " + std::to_string(outputs.size()) +
                    " tensors, its output structure holds " + std::to_string(next));
  }
  return result;
}

// torch.export compiled a non-tensor argument's value in: another value would be ignored.
// A scalar may come as a 0-d tensor (the server's inputs are all tensors).
void ExportedCall::check_constant(size_t index, const c10::IValue& value) const {
  if (index >= constants_.size() || constants_[index].empty()) return;
  const std::string& name = signature_.inputs[index].name;
  c10::IValue scalar = value;
  if (value.isTensor() && value.toTensor().numel() == 1) scalar = value.toTensor().item();
  if (!scalar.isNone() && !scalar.isBool() && !scalar.isInt() && !scalar.isDouble() &&
      !scalar.isString()) {
    throw bad_input("input '" + name + "': the package was compiled with " + name + " = " +
                    constants_[index] + ", got " + describe(value));
  }
  std::string given = to_json(scalar).dump();
  if (given == constants_[index] || (scalar.isDouble() && given == constants_[index] + ".0")) {
    return;
  }
  throw bad_input("input '" + name + "': the package was compiled with " + name + " = " +
                  constants_[index] + " (torch.export compiles non-tensor arguments in), got " +
                  given.substr(0, 64) + "; export it again for another value");
}

}  // namespace torchship::backends
