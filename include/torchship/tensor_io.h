// Tensors in and out of files and JSON: NumPy .npy and the KServe v2 tensor encoding.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <ATen/core/ivalue.h>
#include <nlohmann/json.hpp>

namespace torchship {

// KServe v2 datatype names ("FP32", "UINT8", ...) for libtorch scalar types, and back.
std::string datatype_name(c10::ScalarType type);
// Throws Error(BadInput) for a name that is not a KServe v2 tensor datatype torch can hold.
c10::ScalarType scalar_type_from_datatype(std::string_view name);

// .npy (format 1.0-3.0, C order, every numeric dtype and bool). Fortran order is rejected.
at::Tensor read_npy(const std::filesystem::path& path);
at::Tensor parse_npy(std::string_view bytes, std::string_view origin);
void write_npy(const std::filesystem::path& path, const at::Tensor& tensor);
std::string encode_npy(const at::Tensor& tensor);

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

// The validated "datatype" and "shape" of a tensor object, whatever holds its values ("data",
// a .npy file, binary bytes after a KServe request's JSON).
struct TensorHeader {
  std::string datatype;
  c10::ScalarType type;
  std::vector<int64_t> shape;
  int64_t numel() const;
};
TensorHeader tensor_header_from_json(const nlohmann::json& tree, const std::string& where);

// "[1, 3, 224, 224]" (-1 stays -1): shapes in messages and summaries.
std::string shape_text(c10::IntArrayRef shape);

// "FP32 [1, 1000]" / "tuple(3)" / "str": a short description for messages and summaries.
std::string describe(const c10::IValue& value);

}  // namespace torchship
