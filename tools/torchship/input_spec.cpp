#include "input_spec.h"

#include <fstream>
#include <iterator>

#include "core/text.h"
#include "torchship/error.h"
#include "torchship/image.h"
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

std::vector<std::string> split_list(const std::string& spec) {
  std::vector<std::string> items;
  std::string inner = spec.substr(1, spec.size() - 2);
  size_t begin = 0;
  while (begin <= inner.size()) {
    size_t end = inner.find(',', begin);
    if (end == std::string::npos) end = inner.size();
    std::string item = inner.substr(begin, end - begin);
    auto first = item.find_first_not_of(' ');
    auto last = item.find_last_not_of(' ');
    if (first != std::string::npos) items.push_back(item.substr(first, last - first + 1));
    begin = end + 1;
  }
  return items;
}

// The element type when `type` accepts a list of tensors (List[Tensor], Optional/Union of it).
c10::TypePtr list_element_type(const c10::TypePtr& type) {
  if (auto list = type->cast<c10::ListType>()) return list->getElementType();
  for (const auto& contained : type->containedTypes()) {
    if (auto element = list_element_type(contained)) return element;
  }
  return nullptr;
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
    c10::TypePtr element = list_element_type(argument.type);
    if (!element) {
      throw bad_input(where + ": a list [" + spec.substr(1, spec.size() - 2) +
                      "] was given, but the argument is " + argument.type_name());
    }
    c10::impl::GenericList list(element);
    auto items = split_list(spec);
    for (size_t i = 0; i < items.size(); ++i) {
      list.push_back(
          value_from_file(model, index, items[i], element, where + "[" + std::to_string(i) + "]"));
    }
    return list;
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
