#include "torchship/value_tree.h"

#include <cctype>

#include "torchship/datatype.h"
#include "torchship/error.h"

namespace torchship {
namespace {

bool is_branch(const c10::IValue& value) {
  return value.isTuple() || value.isList() || value.isGenericDict();
}

// Calls visit(step, child) for each child of a branch, in order.
void for_each_child(const c10::IValue& value,
                    const std::function<void(const std::string&, const c10::IValue&)>& visit) {
  if (value.isTuple()) {
    const auto& elements = value.toTupleRef().elements();
    auto names = field_names(value);
    for (size_t i = 0; i < elements.size(); ++i) {
      visit(i < names.size() ? "." + names[i] : index_step(i), elements[i]);
    }
  } else if (value.isList()) {
    auto list = value.toListRef();
    for (size_t i = 0; i < list.size(); ++i) visit(index_step(i), list[i]);
  } else if (value.isGenericDict()) {
    for (const auto& entry : value.toGenericDict()) visit(key_step(entry.key()), entry.value());
  }
}

void collect(const c10::IValue& value, const std::string& path, std::vector<Leaf>& out) {
  if (!is_branch(value)) {
    out.push_back({path, value});
    return;
  }
  for_each_child(value, [&](const std::string& step, const c10::IValue& child) {
    collect(child, path + step, out);
  });
}

}  // namespace

std::string index_step(size_t index) {
  std::string step = "[";
  step += std::to_string(index);
  step += ']';
  return step;
}

std::string key_text(const c10::IValue& key) {
  if (key.isString()) return key.toStringRef();
  if (key.isInt()) return std::to_string(key.toInt());
  return c10::str(key);
}

std::string key_step(const c10::IValue& key) {
  std::string step = ".";
  step += key_text(key);
  return step;
}

std::vector<std::string> field_names(const c10::IValue& value) {
  std::vector<std::string> names;
  if (!value.isTuple()) return names;
  if (auto fields = value.type()->expectRef<c10::TupleType>().names()) {
    for (const auto& field : *fields) names.emplace_back(field.data(), field.size());
  }
  return names;
}

std::vector<Leaf> leaves(const c10::IValue& value, const std::string& root) {
  std::vector<Leaf> out;
  collect(value, root, out);
  return out;
}

std::vector<Leaf> output_leaves(const c10::IValue& output, const Manifest* manifest) {
  auto manifest_name = [&](size_t index) -> std::string {
    if (!manifest || index >= manifest->outputs.size()) return "";
    return manifest->outputs[index].name;
  };
  std::vector<Leaf> out;
  if (output.isGenericDict()) {
    for (const auto& entry : output.toGenericDict()) {
      collect(entry.value(), key_text(entry.key()), out);
    }
  } else if (output.isTuple() || output.isList()) {
    // Elements take the manifest's output names; unnamed ones their field name (a named tuple)
    // or their place: output[i].
    size_t index = 0;
    bool named_tuple = !field_names(output).empty();
    for_each_child(output, [&](const std::string& step, const c10::IValue& child) {
      std::string name = manifest_name(index++);
      if (name.empty()) name = named_tuple ? step.substr(1) : "output" + step;
      collect(child, name, out);
    });
  } else {
    std::string name = manifest_name(0);
    collect(output, name.empty() || is_branch(output) ? "output" : name, out);
  }
  return out;
}

std::string file_name_of(const std::string& path) {
  std::string name;
  for (char c : path) {
    if (c == '[' || c == '.') {
      name += '_';
    } else if (c != ']') {
      bool safe = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
      name += safe ? c : '_';
    }
  }
  return name;
}

c10::IValue map_leaves(const c10::IValue& value,
                       const std::function<c10::IValue(const c10::IValue&)>& fn) {
  if (value.isTuple()) {
    std::vector<c10::IValue> items;
    for (const auto& item : value.toTupleRef().elements()) items.push_back(map_leaves(item, fn));
    if (!field_names(value).empty()) {  // a named tuple keeps its type
      return c10::ivalue::Tuple::createNamed(std::move(items), value.toTupleRef().type());
    }
    return c10::ivalue::Tuple::create(std::move(items));
  }
  if (value.isList()) {
    auto list = value.toList();
    c10::impl::GenericList mapped(list.elementType());
    for (const c10::IValue& item : list) mapped.push_back(map_leaves(item, fn));
    return mapped;
  }
  if (value.isGenericDict()) {
    auto dict = value.toGenericDict();
    c10::impl::GenericDict mapped(dict.keyType(), dict.valueType());
    for (const auto& entry : dict) mapped.insert(entry.key(), map_leaves(entry.value(), fn));
    return mapped;
  }
  return fn(value);
}

std::string describe(const c10::IValue& value) {
  if (value.isTensor()) {
    const at::Tensor& tensor = value.toTensor();
    std::string dtype;
    try {
      dtype = datatype_name(tensor.scalar_type());
    } catch (const Error&) {
      dtype = c10::toString(tensor.scalar_type());
    }
    return dtype + " " + shape_text(tensor.sizes());
  }
  if (value.isTuple()) return "tuple(" + std::to_string(value.toTupleRef().elements().size()) + ")";
  if (value.isList()) return "list(" + std::to_string(value.toListRef().size()) + ")";
  if (value.isGenericDict()) return "dict(" + std::to_string(value.toGenericDict().size()) + ")";
  if (value.isNone()) return "None";
  if (value.isString()) return "str \"" + value.toStringRef() + "\"";
  if (value.isInt()) return "int " + std::to_string(value.toInt());
  if (value.isDouble()) return "float " + std::to_string(value.toDouble());
  if (value.isBool()) return value.toBool() ? "bool True" : "bool False";
  return value.type()->annotation_str();
}

}  // namespace torchship
