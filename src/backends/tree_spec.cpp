#include "backends/tree_spec.h"

#include <nlohmann/json.hpp>

#include "torchship/error.h"
#include "torchship/json_input.h"
#include "torchship/limits.h"
#include "torchship/value_tree.h"

namespace torchship::backends {
namespace {

using nlohmann::json;

TreeSpec parse_node(const json& node, const std::string& what, int depth) {
  auto fail = [&](const std::string& why) -> TreeSpec {
    throw bad_model(what + " is not a structure torchship can rebuild: " + why);
  };
  if (depth > 64) return fail("nested deeper than 64 levels");
  if (!node.is_object() || !node.contains("type") || !node.contains("children_spec") ||
      !node["children_spec"].is_array()) {
    return fail("expected {type, context, children_spec}, got " + node.dump().substr(0, 200));
  }
  TreeSpec spec;
  const json& type = node["type"];
  if (type.is_null()) return spec;  // a leaf
  if (!type.is_string()) return fail("a node type that is not a string");
  std::string name = type.get<std::string>();
  if (name == "builtins.tuple" || name == "collections.namedtuple" ||
      name == "torch.fx.immutable_collections.immutable_list") {
    spec.kind = name == "torch.fx.immutable_collections.immutable_list" ? TreeSpec::Kind::List
                                                                        : TreeSpec::Kind::Tuple;
  } else if (name == "builtins.list") {
    spec.kind = TreeSpec::Kind::List;
  } else if (name == "builtins.NoneType") {
    spec.kind = TreeSpec::Kind::None;
  } else if (name == "builtins.dict" || name == "collections.OrderedDict" ||
             name == "torch.fx.immutable_collections.immutable_dict") {
    spec.kind = TreeSpec::Kind::Dict;
    // The context is the keys, as JSON text.
    const json& context = node.value("context", json());
    json keys = context.is_string() ? parse_json(context.get<std::string>(), what) : context;
    if (!keys.is_array()) return fail("a dict whose keys are not a list");
    for (const json& key : keys) {
      c10::IValue value;
      if (key.is_string()) {
        value = key.get<std::string>();
      } else if (key.is_number_integer()) {
        value = key.get<int64_t>();
      } else {
        return fail("a dict key that is neither a string nor an integer");
      }
      for (const auto& seen : spec.keys) {
        if (seen == value) return fail("a dict with the key " + key_text(value) + " twice");
      }
      spec.keys.push_back(value);
    }
  } else {
    return fail("the node type " + name + " is not a tuple, list, dict or None");
  }
  for (const json& child : node["children_spec"]) {
    spec.children.push_back(parse_node(child, what, depth + 1));
  }
  if (spec.kind == TreeSpec::Kind::Dict && spec.keys.size() != spec.children.size()) {
    return fail("a dict with " + std::to_string(spec.keys.size()) + " keys and " +
                std::to_string(spec.children.size()) + " values");
  }
  spec.cached_type = spec.type();  // built once: forward rebuilds values of it every call
  return spec;
}

// The one type of all `types`, or Any when they differ.
c10::TypePtr common_type(const std::vector<c10::TypePtr>& types) {
  if (types.empty()) return c10::TensorType::get();
  for (const auto& type : types) {
    if (*type != *types.front()) return c10::AnyType::get();
  }
  return types.front();
}

}  // namespace

size_t TreeSpec::leaf_count() const {
  if (kind == Kind::Leaf) return 1;
  size_t count = 0;
  for (const auto& child : children) count += child.leaf_count();
  return count;
}

c10::TypePtr TreeSpec::type() const {
  if (cached_type) return cached_type;
  std::vector<c10::TypePtr> types;
  for (const auto& child : children) types.push_back(child.type());
  switch (kind) {
    case Kind::Leaf:
      return c10::TensorType::get();
    case Kind::None:
      return c10::NoneType::get();
    case Kind::Tuple:
      return c10::TupleType::create(types);
    case Kind::List:
      return c10::ListType::create(common_type(types));
    case Kind::Dict: {
      bool string_keys = keys.empty() || keys.front().isString();
      c10::TypePtr key_type = c10::StringType::get();
      if (!string_keys) key_type = c10::IntType::get();
      return c10::DictType::create(key_type, common_type(types));
    }
  }
  return c10::AnyType::get();
}

c10::IValue TreeSpec::unflatten(const std::vector<at::Tensor>& leaves, size_t& next) const {
  switch (kind) {
    case Kind::Leaf:
      if (next >= leaves.size()) {
        throw bad_model("the compiled model returned " + std::to_string(leaves.size()) +
                        " tensors, fewer than its output structure holds");
      }
      return leaves[next++];
    case Kind::None:
      return c10::IValue();
    case Kind::Tuple: {
      std::vector<c10::IValue> items;
      for (const auto& child : children) items.push_back(child.unflatten(leaves, next));
      return c10::ivalue::Tuple::create(std::move(items));
    }
    case Kind::List: {
      c10::TypePtr list_type = type();
      c10::impl::GenericList list(list_type->expectRef<c10::ListType>().getElementType());
      for (const auto& child : children) list.push_back(child.unflatten(leaves, next));
      return list;
    }
    case Kind::Dict: {
      c10::TypePtr dict_type = type();
      c10::impl::GenericDict dict(dict_type->expectRef<c10::DictType>().getKeyType(),
                                  dict_type->expectRef<c10::DictType>().getValueType());
      for (size_t i = 0; i < children.size(); ++i) {
        dict.insert(keys[i], children[i].unflatten(leaves, next));
      }
      return dict;
    }
  }
  return c10::IValue();
}

namespace {

// Where a value sits under the argument being flattened, made into text only for a message:
// flattening runs on every forward.
struct Place {
  const Place* parent = nullptr;
  const std::string* root = nullptr;  // the argument ("input 'x'"), at the top only
  size_t index = 0;
  const c10::IValue* key = nullptr;  // a dict entry's key, else an element's index

  std::string text() const {
    if (!parent) return *root;
    return parent->text() + (key ? key_step(*key) : index_step(index));
  }
};

void flatten_at(const TreeSpec& spec, const c10::IValue& value, const Place& place,
                std::vector<at::Tensor>& leaves) {
  auto wrong = [&](const std::string& expected) {
    throw bad_input(place.text() + ": expected " + expected +
                    " (the package was compiled for that structure), got " + describe(value));
  };
  switch (spec.kind) {
    case TreeSpec::Kind::Leaf:
      if (!value.isTensor()) wrong("a tensor");
      leaves.push_back(value.toTensor());
      return;
    case TreeSpec::Kind::None:
      if (!value.isNone()) wrong("None");
      return;
    case TreeSpec::Kind::Tuple:
    case TreeSpec::Kind::List: {
      std::vector<c10::IValue> items;
      if (value.isTuple()) items = value.toTupleRef().elements().vec();
      if (value.isList()) items = value.toListRef().vec();
      if ((!value.isTuple() && !value.isList()) || items.size() != spec.children.size()) {
        wrong(std::string(spec.kind == TreeSpec::Kind::List ? "a list" : "a tuple") + " of " +
              std::to_string(spec.children.size()));
      }
      for (size_t i = 0; i < spec.children.size(); ++i) {
        flatten_at(spec.children[i], items[i], Place{&place, nullptr, i, nullptr}, leaves);
      }
      return;
    }
    case TreeSpec::Kind::Dict: {
      if (!value.isGenericDict()) wrong("a dict");
      auto dict = value.toGenericDict();
      if (dict.size() != spec.keys.size()) {
        wrong("a dict of " + std::to_string(spec.keys.size()) + " keys");
      }
      for (size_t i = 0; i < spec.keys.size(); ++i) {
        auto it = dict.find(spec.keys[i]);
        if (it == dict.end()) wrong("a dict with key '" + key_text(spec.keys[i]) + "'");
        flatten_at(spec.children[i], it->value(), Place{&place, nullptr, 0, &spec.keys[i]}, leaves);
      }
      return;
    }
  }
}

}  // namespace

void TreeSpec::flatten(const c10::IValue& value, const std::string& where,
                       std::vector<at::Tensor>& leaves) const {
  flatten_at(*this, value, Place{nullptr, &where, 0, nullptr}, leaves);
}

TreeSpec parse_tree_spec(const std::string& text, const std::string& what) {
  json document = parse_json(text, what);
  if (document.is_discarded() || !document.is_array() || document.size() != 2 ||
      !document[0].is_number_integer()) {
    throw bad_model(what + " is not a pytree spec ([protocol, node]): " + text.substr(0, 200));
  }
  return parse_node(document[1], what, 0);
}

}  // namespace torchship::backends
