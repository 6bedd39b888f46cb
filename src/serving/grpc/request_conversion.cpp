#include "serving/grpc/request_conversion.h"

#include <cstring>
#include <set>

#include <ATen/ATen.h>

#include "torchship/datatype.h"
#include "torchship/error.h"
#include "torchship/limits.h"
#include "torchship/tensor_header.h"

namespace torchship::serving {

namespace {

struct TypedField {
  const char* name;  // nullptr: the datatype has none (FP16, BF16 come raw only)
  int64_t count;
};

// The typed contents field a datatype's values come in, and how many it holds.
TypedField typed_field(const inference::InferTensorContents& contents, c10::ScalarType type) {
  switch (type) {
    case c10::kBool:
      return {"bool_contents", contents.bool_contents_size()};
    case c10::kChar:
    case c10::kShort:
    case c10::kInt:
      return {"int_contents", contents.int_contents_size()};
    case c10::kLong:
      return {"int64_contents", contents.int64_contents_size()};
    case c10::kByte:
      return {"uint_contents", contents.uint_contents_size()};
    case c10::kFloat:
      return {"fp32_contents", contents.fp32_contents_size()};
    case c10::kDouble:
      return {"fp64_contents", contents.fp64_contents_size()};
    default:
      return {nullptr, 0};
  }
}

// Copies typed values into `out`, each checked to fit the element type.
template <typename Element, typename Values>
void copy_checked(const Values& values, at::Tensor& out, const std::string& where) {
  Element* data = out.data_ptr<Element>();
  for (int i = 0; i < values.size(); ++i) {
    auto value = values.Get(i);
    if (static_cast<decltype(value)>(static_cast<Element>(value)) != value) {
      throw bad_input(where + ": value " + std::to_string(value) + " at index " +
                      std::to_string(i) + " does not fit " + datatype_name(out.scalar_type()));
    }
    data[i] = static_cast<Element>(value);
  }
}

at::Tensor tensor_from_typed(const inference::InferTensorContents& contents,
                             const TensorHeader& header, const std::string& where) {
  auto [field, count] = typed_field(contents, header.type);
  if (!field) {
    throw bad_input(where + ": " + header.datatype +
                    " data must come in raw_input_contents (the typed contents have no field "
                    "for it)");
  }
  if (count != header.numel()) {
    throw bad_input(where + ": shape " + shape_text(header.shape) + " needs " +
                    std::to_string(header.numel()) + " values, contents." + field + " has " +
                    std::to_string(count));
  }
  at::Tensor tensor = at::empty(header.shape, at::TensorOptions().dtype(header.type));
  switch (header.type) {
    case c10::kBool: {
      bool* data = tensor.data_ptr<bool>();
      for (int64_t i = 0; i < count; ++i) data[i] = contents.bool_contents(static_cast<int>(i));
      break;
    }
    case c10::kChar:
      copy_checked<int8_t>(contents.int_contents(), tensor, where);
      break;
    case c10::kShort:
      copy_checked<int16_t>(contents.int_contents(), tensor, where);
      break;
    case c10::kInt:
      copy_checked<int32_t>(contents.int_contents(), tensor, where);
      break;
    case c10::kLong:
      copy_checked<int64_t>(contents.int64_contents(), tensor, where);
      break;
    case c10::kByte:
      copy_checked<uint8_t>(contents.uint_contents(), tensor, where);
      break;
    case c10::kFloat:
      if (count > 0) std::memcpy(tensor.data_ptr(), contents.fp32_contents().data(), count * 4);
      break;
    case c10::kDouble:
      if (count > 0) std::memcpy(tensor.data_ptr(), contents.fp64_contents().data(), count * 8);
      break;
    default:
      break;
  }
  return tensor;
}

}  // namespace

InferRequest request_from_proto(const inference::ModelInferRequest& in) {
  if (in.inputs_size() == 0) throw bad_input("expected \"inputs\": at least one tensor");
  bool raw = in.raw_input_contents_size() > 0;
  if (raw && in.raw_input_contents_size() != in.inputs_size()) {
    throw bad_input("raw_input_contents has " + std::to_string(in.raw_input_contents_size()) +
                    " entries, but there are " + std::to_string(in.inputs_size()) +
                    " inputs (expected one per input, in order)");
  }
  InferRequest request;
  std::set<std::string> seen;
  for (int i = 0; i < in.inputs_size(); ++i) {
    const auto& input = in.inputs(i);
    std::string where = "input '" + input.name() + "'";
    if (!seen.insert(input.name()).second) throw bad_input(where + " appears twice");
    check_tensor_rank(static_cast<size_t>(input.shape_size()), where);
    // The same checks as a JSON request's header: one datatype table, one message per mistake.
    TensorHeader header = tensor_header(
        input.datatype(), std::vector<int64_t>(input.shape().begin(), input.shape().end()), where);
    if (!raw) {
      request.inputs.push_back({input.name(), tensor_from_typed(input.contents(), header, where)});
      continue;
    }
    if (input.has_contents()) {
      throw bad_input(where +
                      ": has typed contents, but the request uses raw_input_contents "
                      "(use one or the other)");
    }
    request.inputs.push_back(
        {input.name(), tensor_from_raw(header, in.raw_input_contents(i), where,
                                       "raw_input_contents[" + std::to_string(i) + "] has")});
  }
  for (const auto& output : in.outputs()) request.outputs.push_back({output.name(), true});
  return request;
}

void response_from_outputs(const ModelVersion& entry, const inference::ModelInferRequest& request,
                           const std::vector<std::pair<NamedTensor, bool>>& outputs,
                           inference::ModelInferResponse& out) {
  out.set_model_name(entry.name);
  out.set_model_version(entry.version);
  if (!request.id().empty()) out.set_id(request.id());
  for (const auto& [output, binary] : outputs) {
    at::Tensor data = output.tensor.to(at::kCPU).contiguous();
    auto* tensor = out.add_outputs();
    tensor->set_name(output.name);
    tensor->set_datatype(datatype_name(data.scalar_type()));
    for (int64_t size : data.sizes()) tensor->add_shape(size);
    size_t bytes = static_cast<size_t>(data.numel()) * data.element_size();
    out.add_raw_output_contents()->assign(static_cast<const char*>(data.data_ptr()), bytes);
  }
}

}  // namespace torchship::serving
