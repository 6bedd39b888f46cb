#include "serving/kserve.h"

#include <cstring>
#include <set>

#include <ATen/ATen.h>

#include "core/text.h"
#include "torchship/error.h"
#include "torchship/limits.h"
#include "torchship/tensor_json.h"
#include "torchship/value_tree.h"

namespace torchship::serving {
namespace {

using nlohmann::json;

// "a, b" or "none": the names a model takes, in messages.
std::string names_or_none(const std::vector<std::string>& names) {
  return names.empty() ? "none" : join(names);
}

const json* find_parameter(const json& object, const char* name) {
  auto parameters = object.find("parameters");
  if (parameters == object.end() || !parameters->is_object()) return nullptr;
  auto it = parameters->find(name);
  return it == parameters->end() ? nullptr : &*it;
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

InferRequest parse_infer_request(std::string_view body, const std::string* header_length) {
  size_t json_size = body.size();
  if (header_length) {
    char* end = nullptr;
    unsigned long long value = std::strtoull(header_length->c_str(), &end, 10);
    if (header_length->empty() || *end != '\0' || header_length->front() == '-') {
      throw bad_input("Inference-Header-Content-Length must be a byte count, got \"" +
                      *header_length + "\"");
    }
    if (value > body.size()) {
      throw bad_input("Inference-Header-Content-Length is " + std::to_string(value) +
                      " but the body has only " + std::to_string(body.size()) + " bytes");
    }
    json_size = static_cast<size_t>(value);
  }
  json root = parse_json(body.substr(0, json_size), "the request");
  if (root.is_discarded()) {
    throw bad_input("the request body is not valid JSON (expected an inference request object)");
  }
  if (!root.is_object()) {
    throw bad_input("expected an inference request object {\"inputs\": [...]}, got " +
                    std::string(root.type_name()));
  }
  auto inputs = root.find("inputs");
  if (inputs == root.end() || !inputs->is_array() || inputs->empty()) {
    throw bad_input("expected \"inputs\": a non-empty array of tensors");
  }

  InferRequest request;
  if (auto id = root.find("id"); id != root.end()) request.id = *id;
  if (const json* binary = find_parameter(root, "binary_data_output")) {
    request.binary_all = binary->is_boolean() && binary->get<bool>();
  }
  std::string_view binary = body.substr(json_size);
  size_t offset = 0;
  std::set<std::string> seen;
  for (size_t i = 0; i < inputs->size(); ++i) {
    const json& input = (*inputs)[i];
    if (!input.is_object() || !input.contains("name") || !input["name"].is_string()) {
      throw bad_input("inputs[" + std::to_string(i) +
                      "]: expected a tensor object with a \"name\" string");
    }
    std::string name = input["name"].get<std::string>();
    std::string where = "input '" + name + "'";
    if (!seen.insert(name).second) throw bad_input(where + " appears twice");
    if (const json* size = find_parameter(input, "binary_data_size")) {
      if (!size->is_number_unsigned()) {
        throw bad_input(where + ": binary_data_size must be a byte count, got " + size->dump());
      }
      size_t bytes = size->get<size_t>();
      if (bytes > binary.size() - offset) {
        throw bad_input(where + ": binary_data_size " + std::to_string(bytes) +
                        " runs past the end of the body (" +
                        std::to_string(binary.size() - offset) + " binary bytes left)");
      }
      request.inputs.push_back(
          {name, tensor_from_raw(tensor_header_from_json(input, where),
                                 binary.substr(offset, bytes), where, "binary_data_size is")});
      offset += bytes;
    } else {
      request.inputs.push_back({name, tensor_from_json(input, where)});
    }
  }
  if (offset != binary.size()) {
    throw bad_input("the body has " + std::to_string(binary.size() - offset) +
                    " bytes of binary data that no input's binary_data_size claims");
  }
  if (auto outputs = root.find("outputs"); outputs != root.end()) {
    if (!outputs->is_array()) throw bad_input("\"outputs\" must be an array of {\"name\": ...}");
    for (const auto& output : *outputs) {
      if (!output.is_object() || !output.contains("name") || !output["name"].is_string()) {
        throw bad_input("\"outputs\" must be an array of {\"name\": ...}, got " + output.dump());
      }
      bool binary_output = request.binary_all;
      if (const json* flag = find_parameter(output, "binary_data")) {
        binary_output = flag->is_boolean() && flag->get<bool>();
      }
      request.outputs.push_back({output["name"].get<std::string>(), binary_output});
    }
  }
  return request;
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

HttpBody infer_response(const std::string& model, const std::string& version, const json& id,
                        const std::vector<std::pair<NamedTensor, bool>>& chosen) {
  json root = {{"model_name", model}, {"model_version", version}};
  if (!id.is_null()) root["id"] = id;
  json tensors = json::array();
  std::string binary;
  for (const auto& [output, as_binary] : chosen) {
    if (!as_binary) {
      json tensor = tensor_to_json(output.tensor);
      tensor["name"] = output.name;
      tensors.push_back(std::move(tensor));
      continue;
    }
    at::Tensor data = output.tensor.to(at::kCPU).contiguous();
    size_t bytes = static_cast<size_t>(data.numel()) * data.element_size();
    tensors.push_back({{"name", output.name},
                       {"datatype", datatype_name(data.scalar_type())},
                       {"shape", data.sizes().vec()},
                       {"parameters", {{"binary_data_size", bytes}}}});
    binary.append(static_cast<const char*>(data.data_ptr()), bytes);
  }
  root["outputs"] = std::move(tensors);
  HttpBody body;
  body.data = root.dump(-1, ' ', false, json::error_handler_t::replace);
  if (binary.empty()) {
    body.content_type = "application/json";
    return body;
  }
  body.json_length = body.data.size();
  body.data += binary;
  body.content_type = "application/octet-stream";
  return body;
}

ModelMetadata model_metadata(const std::string& name, const std::vector<std::string>& versions,
                             const Model& model) {
  auto tensor = [](const std::string& tensor_name, const TensorSpec* spec) {
    return TensorMetadata{tensor_name, spec ? spec->datatype : "",
                          spec ? spec->shape : std::vector<int64_t>{}};
  };
  ModelMetadata metadata{name, versions, "pytorch_libtorch", {}, {}};
  const auto& manifest = model.manifest();
  for (size_t i = 0; i < model.inputs().size(); ++i) {
    const TensorSpec* spec =
        manifest && i < manifest->inputs.size() ? &manifest->inputs[i] : nullptr;
    metadata.inputs.push_back(tensor(model.inputs()[i].name, spec));
  }
  if (manifest && !manifest->outputs.empty()) {
    for (const auto& spec : manifest->outputs) metadata.outputs.push_back(tensor(spec.name, &spec));
  } else if (model.output_type()->kind() == c10::TypeKind::TensorType) {
    metadata.outputs.push_back(tensor("output", nullptr));
  }
  return metadata;
}

}  // namespace torchship::serving
