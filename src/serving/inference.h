// An inference request and its answer as the serving core sees them, whatever protocol carried
// them (KServe v2 over HTTP/JSON or gRPC): named input tensors matched to forward's arguments,
// the forward's output as named tensors. Each front decodes into these and encodes from them.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include "torchship/model.h"
#include "torchship/tensor_header.h"

namespace torchship::serving {

struct NamedTensor {
  std::string name;
  at::Tensor tensor;
};

struct InferRequest {
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

}  // namespace torchship::serving
