#include "input_spec.h"

#include <fstream>
#include <iterator>

#include "core/text.h"
#include "torchship/error.h"
#include "torchship/image.h"
#include "torchship/json_input.h"
#include "torchship/limits.h"
#include "torchship/npy.h"
#include "torchship/tensor_json.h"

namespace torchship {
namespace {

namespace fs = std::filesystem;

std::string lowercase_extension(const fs::path& path) {
  return lowercase(path.extension().string());
}

// One file: a tensor from .npy, a JSON tree, or an image.
c10::IValue value_from_file(const Model& model, size_t index, const fs::path& path,
                            const c10::TypePtr& type, const std::string& where) {
  std::string extension = lowercase_extension(path);
  if (extension == ".npy") return read_npy(path);
  if (extension == ".json") {
    std::error_code ec;
    auto status = fs::status(path, ec);
    if (!ec && fs::exists(status) && !fs::is_regular_file(status)) {  // a FIFO blocks on open
      throw bad_input(where + ": cannot read " + path.string() + ": not a regular file");
    }
    std::ifstream in(path);
    if (!in) throw bad_input(where + ": cannot read " + path.string() + ": no such file");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    nlohmann::json tree = parse_json(text, where + ": " + path.string());
    if (tree.is_discarded()) throw bad_input(where + ": " + path.string() + " is not valid JSON");
    return from_json(tree, type, where);
  }
  std::error_code ec;
  if (!fs::exists(path, ec)) throw bad_input(where + ": no such file " + path.string());
  return model.image_input(path, index);
}

bool is_list_syntax(const std::string& spec) {
  return spec.size() >= 2 && spec.front() == '[' && spec.back() == ']';
}

// A bracket spec, brackets nested: "[a.npy,[b.npy,c.npy],3]". A leaf is a file or a JSON value.
struct SpecNode {
  std::string text;  // as written; for a bracket, what is inside it
  bool bracket = false;
  std::vector<SpecNode> items;
};

std::string trimmed(const std::string& text) {
  auto first = text.find_first_not_of(' ');
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(' ') - first + 1);
}

// The items of the bracket whose '[' is at spec[begin]; `end` becomes the index of its ']'.
// Empty items are left out ("[a.npy,]" holds one). Each level of nesting is a call: the depth is
// bounded before, by parse_json's check of every spec (kMaxJsonDepth).
SpecNode parse_bracket(const std::string& spec, size_t begin, size_t& end,
                       const std::string& where) {
  SpecNode node;
  node.bracket = true;
  std::string item;
  auto close_item = [&] {
    std::string text = trimmed(item);
    if (!text.empty()) node.items.push_back({text, false, {}});
    item.clear();
  };
  for (size_t i = begin + 1; i < spec.size(); ++i) {
    char c = spec[i];
    if (c == '[' && trimmed(item).empty()) {
      node.items.push_back(parse_bracket(spec, i, i, where));
      item.clear();
    } else if (c == ',') {
      close_item();
    } else if (c == ']') {
      close_item();
      end = i;
      node.text = spec.substr(begin + 1, i - begin - 1);
      return node;
    } else {
      item += c;
    }
  }
  throw bad_input(where + ": the bracket opened at character " + std::to_string(begin + 1) +
                  " of " + spec + " is not closed");
}

// The list or tuple type within `type` (itself, or inside an Optional/Union) that `count` items
// can become: a tuple of exactly that many elements, else a list.
c10::TypePtr container_type(const c10::TypePtr& type, size_t count) {
  if (auto tuple = type->cast<c10::TupleType>()) {
    return tuple->elements().size() == count ? type : nullptr;
  }
  if (type->cast<c10::ListType>()) return type;
  if (type->kind() != c10::TypeKind::OptionalType && type->kind() != c10::TypeKind::UnionType) {
    return nullptr;
  }
  c10::TypePtr list;
  for (const auto& contained : type->containedTypes()) {
    if (auto found = container_type(contained, count)) {
      if (found->cast<c10::TupleType>()) return found;
      if (!list) list = found;
    }
  }
  return list;
}

c10::IValue value_from_node(const Model& model, size_t index, const SpecNode& node,
                            const c10::TypePtr& type, const std::string& where) {
  if (!node.bracket) {
    nlohmann::json tree = parse_json(node.text, where);  // 3, null, "text"
    if (!tree.is_discarded()) return from_json(tree, type, where);
    return value_from_file(model, index, node.text, type, where);
  }
  c10::TypePtr container = container_type(type, node.items.size());
  if (!container) {
    auto tuple = type->cast<c10::TupleType>();
    if (tuple) {
      throw bad_input(where + ": a list [" + node.text + "] of " +
                      std::to_string(node.items.size()) + " was given, but the argument is " +
                      type->annotation_str() + " (" + std::to_string(tuple->elements().size()) +
                      " elements)");
    }
    throw bad_input(where + ": a list [" + node.text + "] was given, but the argument is " +
                    type->annotation_str());
  }
  auto item_where = [&](size_t i) { return where + "[" + std::to_string(i) + "]"; };
  if (auto tuple = container->cast<c10::TupleType>()) {
    std::vector<c10::IValue> elements;
    for (size_t i = 0; i < node.items.size(); ++i) {
      elements.push_back(
          value_from_node(model, index, node.items[i], tuple->elements()[i], item_where(i)));
    }
    return c10::ivalue::Tuple::create(std::move(elements));
  }
  c10::TypePtr element = container->expectRef<c10::ListType>().getElementType();
  c10::impl::GenericList list(element);
  for (size_t i = 0; i < node.items.size(); ++i) {
    list.push_back(value_from_node(model, index, node.items[i], element, item_where(i)));
  }
  return list;
}

}  // namespace

c10::IValue input_from_spec(const Model& model, size_t index, const std::string& spec) {
  const auto& inputs = model.inputs();
  if (index >= inputs.size()) {
    throw bad_input("too many inputs: forward takes " + std::to_string(inputs.size()) +
                    ", got input number " + std::to_string(index + 1) + " (" + spec + ")");
  }
  const Argument& argument = inputs[index];
  std::string where = "input '" + argument.name + "'";

  // Inline JSON first: `[1, 2]` is JSON, `[a.npy,b.png]` is not.
  nlohmann::json inline_tree = parse_json(spec, where);
  if (!inline_tree.is_discarded()) return from_json(inline_tree, argument.type, where);

  if (is_list_syntax(spec)) {
    size_t end = 0;
    SpecNode node = parse_bracket(spec, 0, end, where);
    if (end != spec.size() - 1) {
      throw bad_input(where + ": " + spec +
                      " has text after the bracket that closes at character " +
                      std::to_string(end + 1));
    }
    return value_from_node(model, index, node, argument.type, where);
  }
  bool is_tree = lowercase_extension(spec) == ".json";
  if (argument.type->kind() == c10::TypeKind::ListType && !is_tree) {
    // One tensor or image file for a List[...] argument: a list of one.
    c10::TypePtr element = argument.type->expectRef<c10::ListType>().getElementType();
    c10::impl::GenericList list(element);
    list.push_back(value_from_file(model, index, spec, element, where + "[0]"));
    return list;
  }
  return value_from_file(model, index, spec, argument.type, where);
}

}  // namespace torchship
