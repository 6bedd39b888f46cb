// TorchScript values <-> JSON trees, tensors in the KServe v2 encoding.
#include <ATen/ATen.h>
#include <ATen/core/jit_type.h>

#include "core/text.h"
#include "torchship/error.h"
#include "torchship/limits.h"
#include "torchship/tensor_json.h"
#include "torchship/value_tree.h"

namespace torchship {
namespace {

using nlohmann::json;

std::string json_kind(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a number";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array of " + std::to_string(value.size());
    case json::value_t::object:
      return "an object";
    default:
      return "a " + std::string(value.type_name());
  }
}

[[noreturn]] void mismatch(const std::string& where, const std::string& expected, const json& got) {
  throw bad_input(where + ": expected " + expected + ", got " + json_kind(got));
}

// Appends the leaves of a (possibly nested) "data" array in row-major order. The nesting comes
// from the request: it is bounded, so that no request can exhaust the stack.
void flatten(const json& data, std::vector<const json*>& leaves, const std::string& where,
             size_t depth = 0) {
  if (!data.is_array()) {
    leaves.push_back(&data);
    return;
  }
  if (depth == kMaxTensorRank) {
    throw bad_input(where + ": \"data\" nests arrays deeper than " +
                    std::to_string(kMaxTensorRank) + " levels");
  }
  for (const auto& item : data) flatten(item, leaves, where, depth + 1);
}

template <typename T>
void fill(at::Tensor& tensor, const std::vector<const json*>& leaves, const std::string& where,
          const std::string& datatype) {
  T* out = tensor.data_ptr<T>();
  for (size_t i = 0; i < leaves.size(); ++i) {
    const json& leaf = *leaves[i];
    if constexpr (std::is_same_v<T, bool>) {
      if (!leaf.is_boolean())
        mismatch(where + " data[" + std::to_string(i) + "]", "a boolean for BOOL", leaf);
      out[i] = leaf.get<bool>();
    } else if constexpr (std::is_integral_v<T>) {
      if (!leaf.is_number_integer()) {
        mismatch(where + " data[" + std::to_string(i) + "]", "an integer for " + datatype, leaf);
      }
      auto value = leaf.get<int64_t>();
      if (value < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          value > static_cast<int64_t>(std::numeric_limits<T>::max())) {
        throw bad_input(where + " data[" + std::to_string(i) + "]: " + std::to_string(value) +
                        " is out of range for " + datatype);
      }
      out[i] = static_cast<T>(value);
    } else {
      if (!leaf.is_number())
        mismatch(where + " data[" + std::to_string(i) + "]", "a number for " + datatype, leaf);
      out[i] = static_cast<T>(leaf.get<double>());
    }
  }
}

template <typename T>
json leaves_to_json(const at::Tensor& tensor) {
  json data = json::array();
  const T* values = tensor.data_ptr<T>();
  auto& array = data.get_ref<json::array_t&>();
  array.reserve(static_cast<size_t>(tensor.numel()));
  for (int64_t i = 0; i < tensor.numel(); ++i) array.emplace_back(values[i]);
  return data;
}

c10::IValue list_from_json(const json& tree, const c10::ListTypePtr& type, const std::string& where,
                           const NpyResolver& resolve) {
  if (!tree.is_array()) mismatch(where, "an array for " + type->annotation_str(), tree);
  c10::impl::GenericList list(type->getElementType());
  list.reserve(tree.size());
  for (size_t i = 0; i < tree.size(); ++i) {
    list.push_back(
        from_json(tree[i], type->getElementType(), where + "[" + std::to_string(i) + "]", resolve));
  }
  return list;
}

c10::IValue tuple_from_json(const json& tree, const c10::TupleTypePtr& type,
                            const std::string& where, const NpyResolver& resolve) {
  const auto& elements = type->elements();
  std::vector<c10::IValue> values;
  auto field_names = type->names();  // returned by value: keep it alive
  if (tree.is_object() && field_names.has_value()) {
    const auto& names = *field_names;
    for (size_t i = 0; i < names.size(); ++i) {
      std::string name(names[i].data(), names[i].size());
      auto it = tree.find(name);
      if (it == tree.end()) throw bad_input(where + ": missing field '" + name + "'");
      values.push_back(from_json(*it, elements[i], where + "." + name, resolve));
    }
    return c10::ivalue::Tuple::createNamed(std::move(values), type);
  }
  if (!tree.is_array() || tree.size() != elements.size()) {
    mismatch(where,
             "an array of " + std::to_string(elements.size()) + " for " + type->annotation_str(),
             tree);
  }
  for (size_t i = 0; i < elements.size(); ++i) {
    values.push_back(
        from_json(tree[i], elements[i], where + "[" + std::to_string(i) + "]", resolve));
  }
  if (type->names().has_value()) return c10::ivalue::Tuple::createNamed(std::move(values), type);
  return c10::ivalue::Tuple::create(std::move(values));
}

c10::IValue dict_from_json(const json& tree, const c10::DictTypePtr& type, const std::string& where,
                           const NpyResolver& resolve) {
  if (!tree.is_object()) mismatch(where, "an object for " + type->annotation_str(), tree);
  c10::impl::GenericDict dict(type->getKeyType(), type->getValueType());
  for (const auto& [key, value] : tree.items()) {
    c10::IValue typed_key;
    switch (type->getKeyType()->kind()) {
      case c10::TypeKind::StringType:
        typed_key = key;
        break;
      case c10::TypeKind::IntType:
        try {
          size_t used = 0;
          typed_key = static_cast<int64_t>(std::stoll(key, &used));
          if (used != key.size()) throw std::invalid_argument(key);
        } catch (const std::exception&) {
          throw bad_input(where + ": expected integer keys, got \"" + key + "\"");
        }
        break;
      default:
        throw unsupported(where + ": dict keys of type " + type->getKeyType()->annotation_str() +
                          " cannot come from JSON");
    }
    dict.insert(std::move(typed_key),
                from_json(value, type->getValueType(), where + "." + key, resolve));
  }
  return dict;
}

}  // namespace

json tensor_to_json(const at::Tensor& tensor) {
  at::Tensor data = tensor.to(at::kCPU).contiguous();
  json out;
  out["datatype"] = datatype_name(data.scalar_type());
  out["shape"] = data.sizes().vec();
  switch (data.scalar_type()) {
    case c10::kBool:
      out["data"] = leaves_to_json<bool>(data);
      break;
    case c10::kByte:
      out["data"] = leaves_to_json<uint8_t>(data);
      break;
    case c10::kChar:
      out["data"] = leaves_to_json<int8_t>(data);
      break;
    case c10::kShort:
      out["data"] = leaves_to_json<int16_t>(data);
      break;
    case c10::kInt:
      out["data"] = leaves_to_json<int32_t>(data);
      break;
    case c10::kLong:
      out["data"] = leaves_to_json<int64_t>(data);
      break;
    case c10::kFloat:
      out["data"] = leaves_to_json<float>(data);
      break;
    case c10::kDouble:
      out["data"] = leaves_to_json<double>(data);
      break;
    default:  // FP16 and BF16 travel as their float values
      out["data"] = leaves_to_json<float>(data.to(at::kFloat));
      break;
  }
  return out;
}

json to_json(const c10::IValue& value) {
  if (value.isTensor()) return tensor_to_json(value.toTensor());
  if (value.isNone()) return nullptr;
  if (value.isBool()) return value.toBool();
  if (value.isInt()) return value.toInt();
  if (value.isDouble()) return value.toDouble();
  if (value.isString()) return value.toStringRef();
  if (value.isTuple()) {
    const auto& tuple = value.toTupleRef();
    const auto& type = value.type()->expect<c10::TupleType>();
    auto names = type->names();  // returned by value: keep it alive
    if (names.has_value()) {
      json object = json::object();
      for (size_t i = 0; i < tuple.elements().size(); ++i) {
        const auto& name = (*names)[i];
        object[std::string(name.data(), name.size())] = to_json(tuple.elements()[i]);
      }
      return object;
    }
    json array = json::array();
    for (const auto& element : tuple.elements()) array.push_back(to_json(element));
    return array;
  }
  if (value.isList()) {
    json array = json::array();
    for (const c10::IValue& element : value.toListRef()) array.push_back(to_json(element));
    return array;
  }
  if (value.isGenericDict()) {
    json object = json::object();
    for (const auto& entry : value.toGenericDict()) {
      const c10::IValue& key = entry.key();
      std::string name =
          key.isString() ? key.toStringRef()
          : key.isInt()  ? std::to_string(key.toInt())
                         : throw unsupported("dict keys of type " + key.type()->annotation_str() +
                                             " have no JSON form");
      object[name] = to_json(entry.value());
    }
    return object;
  }
  throw unsupported("values of type " + value.type()->annotation_str() + " have no JSON form");
}

namespace {
const char* const kTensorObject = "a tensor object {\"datatype\", \"shape\", \"data\"}";
}  // namespace

TensorHeader tensor_header_from_json(const json& tree, const std::string& where) {
  if (!tree.is_object()) mismatch(where, kTensorObject, tree);
  auto datatype_it = tree.find("datatype");
  auto shape_it = tree.find("shape");
  if (datatype_it == tree.end() || !datatype_it->is_string()) {
    throw bad_input(where + ": expected " + kTensorObject + ", the \"datatype\" string is missing");
  }
  if (shape_it == tree.end() || !shape_it->is_array()) {
    throw bad_input(where + ": expected " + kTensorObject + ", the \"shape\" array is missing");
  }
  std::string datatype = datatype_it->get<std::string>();
  tensor_header(datatype, {}, where);  // a wrong datatype is named before a wrong shape
  check_tensor_rank(shape_it->size(), where);
  std::vector<int64_t> shape;
  for (const auto& dim : *shape_it) {
    bool valid = dim.is_number_unsigned()
                     ? dim.get<uint64_t>() <= uint64_t{std::numeric_limits<int64_t>::max()}
                     : dim.is_number_integer() && dim.get<int64_t>() >= 0;
    if (!valid) {
      throw bad_input(where + ": \"shape\" must hold non-negative integers, got " +
                      shape_it->dump());
    }
    shape.push_back(dim.get<int64_t>());
  }
  return tensor_header(datatype, shape, where);
}

at::Tensor tensor_from_json(const json& tree, const std::string& where,
                            const NpyResolver& resolve_npy) {
  TensorHeader header = tensor_header_from_json(tree, where);
  const std::string& datatype = header.datatype;
  c10::ScalarType type = header.type;
  const std::vector<int64_t>& shape = header.shape;
  int64_t count = header.numel();

  if (auto npy = tree.find("npy"); npy != tree.end() && resolve_npy) {
    if (!npy->is_string()) mismatch(where + " \"npy\"", "a file name", *npy);
    at::Tensor tensor = resolve_npy(npy->get<std::string>());
    if (tensor.sizes() != c10::IntArrayRef(shape) || tensor.scalar_type() != type) {
      throw bad_model(where + ": " + npy->get<std::string>() + " holds " +
                      datatype_name(tensor.scalar_type()) + " " + shape_text(tensor.sizes()) +
                      ", the tree says " + datatype + " " + shape_text(shape));
    }
    return tensor;
  }
  auto data_it = tree.find("data");
  if (data_it == tree.end()) {
    throw bad_input(where + ": expected " + kTensorObject + ", the \"data\" array is missing");
  }
  std::vector<const json*> leaves;  // bounded by the request's size, whatever the shape claims
  flatten(*data_it, leaves, where);
  if (static_cast<int64_t>(leaves.size()) != count) {
    throw bad_input(where + ": shape " + shape_text(shape) + " needs " + std::to_string(count) +
                    " values, \"data\" has " + std::to_string(leaves.size()));
  }

  at::Tensor tensor = at::empty(
      shape,
      at::TensorOptions().dtype(type == c10::kHalf || type == c10::kBFloat16 ? c10::kFloat : type));
  switch (tensor.scalar_type()) {
    case c10::kBool:
      fill<bool>(tensor, leaves, where, datatype);
      break;
    case c10::kByte:
      fill<uint8_t>(tensor, leaves, where, datatype);
      break;
    case c10::kChar:
      fill<int8_t>(tensor, leaves, where, datatype);
      break;
    case c10::kShort:
      fill<int16_t>(tensor, leaves, where, datatype);
      break;
    case c10::kInt:
      fill<int32_t>(tensor, leaves, where, datatype);
      break;
    case c10::kLong:
      fill<int64_t>(tensor, leaves, where, datatype);
      break;
    case c10::kDouble:
      fill<double>(tensor, leaves, where, datatype);
      break;
    default:
      fill<float>(tensor, leaves, where, datatype);
      break;
  }
  return tensor.scalar_type() == type ? tensor : tensor.to(type);
}

c10::IValue from_json(const json& tree, const c10::TypePtr& type, const std::string& where,
                      const NpyResolver& resolve) {
  switch (type->kind()) {
    case c10::TypeKind::TensorType:
      return tensor_from_json(tree, where, resolve);
    case c10::TypeKind::OptionalType:
      if (tree.is_null()) return c10::IValue();
      return from_json(tree, type->expectRef<c10::OptionalType>().getElementType(), where, resolve);
    case c10::TypeKind::NoneType:
      if (!tree.is_null()) mismatch(where, "null", tree);
      return c10::IValue();
    case c10::TypeKind::UnionType: {
      std::string tried;
      for (const auto& alternative : type->expectRef<c10::UnionType>().containedTypes()) {
        try {
          return from_json(tree, alternative, where, resolve);
        } catch (const Error&) {
          tried += (tried.empty() ? "" : " or ") + alternative->annotation_str();
        }
      }
      mismatch(where, tried, tree);
    }
    case c10::TypeKind::ListType:
      return list_from_json(tree, type->expect<c10::ListType>(), where, resolve);
    case c10::TypeKind::TupleType:
      return tuple_from_json(tree, type->expect<c10::TupleType>(), where, resolve);
    case c10::TypeKind::DictType:
      return dict_from_json(tree, type->expect<c10::DictType>(), where, resolve);
    case c10::TypeKind::IntType:
      if (!tree.is_number_integer()) mismatch(where, "an integer", tree);
      return tree.get<int64_t>();
    case c10::TypeKind::FloatType:
      if (!tree.is_number()) mismatch(where, "a number", tree);
      return tree.get<double>();
    case c10::TypeKind::NumberType:
      if (tree.is_number_integer()) return tree.get<int64_t>();
      if (!tree.is_number()) mismatch(where, "a number", tree);
      return tree.get<double>();
    case c10::TypeKind::BoolType:
      if (!tree.is_boolean()) mismatch(where, "true or false", tree);
      return tree.get<bool>();
    case c10::TypeKind::StringType:
      if (!tree.is_string()) mismatch(where, "a string", tree);
      return tree.get<std::string>();
    case c10::TypeKind::AnyType:  // a constant compiled into a package: plain JSON values only
      if (tree.is_null()) return c10::IValue();
      if (tree.is_boolean()) return tree.get<bool>();
      if (tree.is_number_integer()) return tree.get<int64_t>();
      if (tree.is_number()) return tree.get<double>();
      if (tree.is_string()) return tree.get<std::string>();
      mismatch(where, "a number, string, true, false or null", tree);
    default:
      throw unsupported(where + ": arguments of type " + type->annotation_str() +
                        " cannot be built from JSON");
  }
}

}  // namespace torchship
