// The KServe v2 inference protocol over HTTP/JSON, with Triton's binary tensor data extension:
// a request body into the serving core's request, its outputs into a response body, metadata as
// JSON. Every malformed request is an Error(BadInput) whose message says what was expected and
// what came.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "serving/inference.h"
#include "serving/model_metadata.h"

namespace torchship::serving {

// The core's request with the JSON request's "id", echoed back as it came (null when absent).
struct JsonInferRequest : InferRequest {
  nlohmann::json id;
};

// `header_length` is the Inference-Header-Content-Length header when present: the JSON part is
// then the first that many bytes, binary tensor data follows.
JsonInferRequest parse_infer_request(std::string_view body, const std::string* header_length);

struct HttpBody {
  std::string data;
  std::string content_type;
  std::optional<size_t> json_length;  // set when binary data follows the JSON
};

HttpBody infer_response(const std::string& model, const std::string& version,
                        const nlohmann::json& id,
                        const std::vector<std::pair<NamedTensor, bool>>& outputs);

// {"name", "versions", "platform", "inputs": [{"name", "datatype", "shape"}], "outputs": [...]}
nlohmann::json model_metadata_json(const ModelMetadata& metadata);

}  // namespace torchship::serving
