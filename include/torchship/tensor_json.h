// TorchScript values as JSON trees, tensors in the KServe v2 encoding: what the CLI prints and
// reads, what golden indexes and requests hold.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <ATen/core/ivalue.h>
#include <nlohmann/json.hpp>

#include "torchship/datatype.h"
#include "torchship/tensor_header.h"

namespace torchship {

// A generic TorchScript value as a JSON tree: tensors as {"datatype", "shape", "data"}, lists
// and tuples as arrays, dicts and named tuples as objects, scalars, strings and null as JSON.
nlohmann::json to_json(const c10::IValue& value);
nlohmann::json tensor_to_json(const at::Tensor& tensor);

// Resolves a tensor leaf that names its data in a file ({"npy": "..."}) instead of inline "data".
using NpyResolver = std::function<at::Tensor(const std::string& name)>;

// Converts a JSON tree into a value of TorchScript type `type`. `where` names the value in error
// messages ("input 'image'"). Throws Error(BadInput) saying what was expected and what came.
c10::IValue from_json(const nlohmann::json& tree, const c10::TypePtr& type,
                      const std::string& where, const NpyResolver& resolve_npy = nullptr);
at::Tensor tensor_from_json(const nlohmann::json& tree, const std::string& where,
                            const NpyResolver& resolve_npy = nullptr);

// The validated "datatype" and "shape" of a tensor object {"datatype", "shape", ...}.
TensorHeader tensor_header_from_json(const nlohmann::json& tree, const std::string& where);

}  // namespace torchship
