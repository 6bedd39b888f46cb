// KServe v2's gRPC messages to and from the serving core's requests: what the gRPC front reads
// from a client before anything reaches a model (fuzzed: tests/fuzz, target grpc_request).
#pragma once

#include <utility>
#include <vector>

#include "grpc_predict_v2.pb.h"
#include "serving/inference.h"
#include "serving/repository.h"

namespace torchship::serving {

// The request's tensors, from typed contents or raw_input_contents: datatype, shape and sizes
// checked before anything is allocated; throws torchship's input error with a one-line message.
InferRequest request_from_proto(const inference::ModelInferRequest& in);

// The outputs as raw contents, as Triton answers them; the request's id echoed back.
void response_from_outputs(const ModelVersion& entry, const inference::ModelInferRequest& request,
                           const std::vector<std::pair<NamedTensor, bool>>& outputs,
                           inference::ModelInferResponse& out);

}  // namespace torchship::serving
