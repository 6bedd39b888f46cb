#include "torchship/datatype.h"

#include "core/text.h"
#include "torchship/error.h"

namespace torchship {
namespace {

struct DatatypeName {
  const char* name;
  c10::ScalarType type;
};

constexpr DatatypeName kDatatypes[] = {
    {"BOOL", c10::kBool},   {"UINT8", c10::kByte},    {"INT8", c10::kChar}, {"INT16", c10::kShort},
    {"INT32", c10::kInt},   {"INT64", c10::kLong},    {"FP16", c10::kHalf}, {"FP32", c10::kFloat},
    {"FP64", c10::kDouble}, {"BF16", c10::kBFloat16},
};

}  // namespace

std::string datatype_name(c10::ScalarType type) {
  for (const auto& entry : kDatatypes) {
    if (entry.type == type) return entry.name;
  }
  throw unsupported(std::string("tensor dtype ") + c10::toString(type) +
                    " has no KServe v2 datatype");
}

c10::ScalarType scalar_type_from_datatype(std::string_view name) {
  for (const auto& entry : kDatatypes) {
    if (name == entry.name) return entry.type;
  }
  throw bad_input("unknown tensor datatype \"" + std::string(name) +
                  "\" (expected BOOL, UINT8, INT8, INT16, INT32, INT64, FP16, FP32, FP64 or BF16)");
}

std::string shape_text(c10::IntArrayRef shape) {
  std::vector<std::string> sizes;
  for (int64_t size : shape) sizes.push_back(std::to_string(size));
  return "[" + join(sizes) + "]";
}

}  // namespace torchship
