// The KServe v2 inference protocol over JSON, with Triton's binary tensor data extension:
// requests into named tensors, forward outputs into named response tensors. Every malformed
// request is an Error(BadInput) whose message says what was expected and what came.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <nlohmann/json.hpp>

#include "torchship/model.h"
#include "torchship/tensor_json.h"

namespace torchship::serving {

struct NamedTensor {
  std::string name;
  at::Tensor tensor;
};

struct InferRequest {
  nlohmann::json id;  // echoed back; null when absent
  std::vector<NamedTensor> inputs;
  struct Output {
    std::string name;
    bool binary = false;
  };
  std::vector<Output> outputs;  // empty: every output, as JSON unless binary_all
  bool binary_all = false;      // request parameter "binary_data_output"
};

// A tensor from raw bytes (little-endian, row major, the datatype's native size): Triton's binary
// data over HTTP, raw_input_contents over gRPC. A size that does not match the header's is an
// Error(BadInput) naming `source` ("binary_data_size is", "raw_input_contents[0] has").
at::Tensor tensor_from_raw(const TensorHeader& header, std::string_view bytes,
                           const std::string& where, const std::string& source);

// `header_length` is the Inference-Header-Content-Length header when present: the JSON part is
// then the first that many bytes, binary tensor data follows.
InferRequest parse_infer_request(std::string_view body, const std::string* header_length);

// Forward's arguments from the request's inputs, matched by the schema's argument names.
std::vector<c10::IValue> forward_arguments(const Model& model, std::vector<NamedTensor> inputs);

// The forward output as named tensors: a tensor is the manifest's first output name (or
// "output"); tuple and list elements take the manifest's output names (or output_0, ...);
// dict entries their keys; nested values join names with '.'. Scalars become 0-d tensors.
std::vector<NamedTensor> named_outputs(const c10::IValue& output, const Manifest* manifest);

// The outputs a request asked for, in its order (all of them when it named none), each with
// whether it goes as binary data; Error(BadInput) names an output the model does not return.
std::vector<std::pair<NamedTensor, bool>> chosen_outputs(const InferRequest& request,
                                                         std::vector<NamedTensor> outputs);

struct HttpBody {
  std::string data;
  std::string content_type;
  std::optional<size_t> json_length;  // set when binary data follows the JSON
};

HttpBody infer_response(const std::string& model, const std::string& version,
                        const nlohmann::json& id,
                        const std::vector<std::pair<NamedTensor, bool>>& outputs);

// The model metadata: name, versions, platform, inputs and outputs with datatypes and shapes
// (-1 for free dimensions, the batch dimension included; "" and [] where the manifest says
// nothing).
struct TensorMetadata {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;
};
struct ModelMetadata {
  std::string name;
  std::vector<std::string> versions;
  std::string platform;
  std::vector<TensorMetadata> inputs;
  std::vector<TensorMetadata> outputs;
};
ModelMetadata model_metadata(const std::string& name, const std::vector<std::string>& versions,
                             const Model& model);

}  // namespace torchship::serving
