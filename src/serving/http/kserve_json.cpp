#include "serving/http/kserve_json.h"

#include <set>

#include "torchship/error.h"
#include "torchship/json_input.h"
#include "torchship/tensor_json.h"

namespace torchship::serving {
namespace {

using nlohmann::json;

const json* find_parameter(const json& object, const char* name) {
  auto parameters = object.find("parameters");
  if (parameters == object.end() || !parameters->is_object()) return nullptr;
  auto it = parameters->find(name);
  return it == parameters->end() ? nullptr : &*it;
}

// The JSON part's size: the Inference-Header-Content-Length when given, else the whole body.
size_t json_part_size(std::string_view body, const std::string* header_length) {
  if (!header_length) return body.size();
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
  return static_cast<size_t>(value);
}

// The request object, with its non-empty "inputs" array.
json request_object(std::string_view text) {
  json root = parse_json(text, "the request");
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
  return root;
}

// The binary data after the JSON, handed out to the inputs that claim it, in order.
class BinaryData {
 public:
  explicit BinaryData(std::string_view bytes) : bytes_(bytes) {}

  std::string_view take(const json& size, const std::string& where) {
    if (!size.is_number_unsigned()) {
      throw bad_input(where + ": binary_data_size must be a byte count, got " + size.dump());
    }
    size_t count = size.get<size_t>();
    if (count > left()) {
      throw bad_input(where + ": binary_data_size " + std::to_string(count) +
                      " runs past the end of the body (" + std::to_string(left()) +
                      " binary bytes left)");
    }
    std::string_view taken = bytes_.substr(offset_, count);
    offset_ += count;
    return taken;
  }

  void check_all_taken() const {
    if (left() == 0) return;
    throw bad_input("the body has " + std::to_string(left()) +
                    " bytes of binary data that no input's binary_data_size claims");
  }

 private:
  size_t left() const { return bytes_.size() - offset_; }
  std::string_view bytes_;
  size_t offset_ = 0;
};

std::vector<NamedTensor> read_inputs(const json& inputs, BinaryData& binary) {
  std::vector<NamedTensor> tensors;
  std::set<std::string> seen;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const json& input = inputs[i];
    if (!input.is_object() || !input.contains("name") || !input["name"].is_string()) {
      throw bad_input("inputs[" + std::to_string(i) +
                      "]: expected a tensor object with a \"name\" string");
    }
    std::string name = input["name"].get<std::string>();
    std::string where = "input '" + name + "'";
    if (!seen.insert(name).second) throw bad_input(where + " appears twice");
    if (const json* size = find_parameter(input, "binary_data_size")) {
      std::string_view bytes = binary.take(*size, where);  // sizes are named before headers
      tensors.push_back({name, tensor_from_raw(tensor_header_from_json(input, where), bytes, where,
                                               "binary_data_size is")});
    } else {
      tensors.push_back({name, tensor_from_json(input, where)});
    }
  }
  return tensors;
}

std::vector<InferRequest::Output> read_outputs(const json& root, bool binary_all) {
  std::vector<InferRequest::Output> wanted;
  auto outputs = root.find("outputs");
  if (outputs == root.end()) return wanted;
  if (!outputs->is_array()) throw bad_input("\"outputs\" must be an array of {\"name\": ...}");
  for (const auto& output : *outputs) {
    if (!output.is_object() || !output.contains("name") || !output["name"].is_string()) {
      throw bad_input("\"outputs\" must be an array of {\"name\": ...}, got " + output.dump());
    }
    bool binary_output = binary_all;
    if (const json* flag = find_parameter(output, "binary_data")) {
      binary_output = flag->is_boolean() && flag->get<bool>();
    }
    wanted.push_back({output["name"].get<std::string>(), binary_output});
  }
  return wanted;
}

}  // namespace

JsonInferRequest parse_infer_request(std::string_view body, const std::string* header_length) {
  size_t json_size = json_part_size(body, header_length);
  json root = request_object(body.substr(0, json_size));
  JsonInferRequest request;
  if (auto id = root.find("id"); id != root.end()) request.id = *id;
  if (const json* binary = find_parameter(root, "binary_data_output")) {
    request.binary_all = binary->is_boolean() && binary->get<bool>();
  }
  BinaryData binary(body.substr(json_size));
  request.inputs = read_inputs(root["inputs"], binary);
  binary.check_all_taken();
  request.outputs = read_outputs(root, request.binary_all);
  return request;
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

json model_metadata_json(const ModelMetadata& metadata) {
  auto tensor_json = [](const TensorMetadata& tensor) {
    return json{{"name", tensor.name}, {"datatype", tensor.datatype}, {"shape", tensor.shape}};
  };
  json inputs = json::array(), outputs = json::array();
  for (const auto& tensor : metadata.inputs) inputs.push_back(tensor_json(tensor));
  for (const auto& tensor : metadata.outputs) outputs.push_back(tensor_json(tensor));
  return {{"name", metadata.name},
          {"versions", metadata.versions},
          {"platform", metadata.platform},
          {"inputs", inputs},
          {"outputs", outputs}};
}

}  // namespace torchship::serving
