// What a model's forward takes and what it is made of, in TorchScript's type vocabulary: the
// types both backends describe themselves with and Model (model.h) reports.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/jit_type.h>

namespace torchship {

// One argument of forward, in TorchScript's type vocabulary (both formats use it).
struct Argument {
  std::string name;
  c10::TypePtr type;
  bool has_default = false;
  std::string type_name() const { return type->annotation_str(); }
};

struct ModelSummary {
  std::vector<std::string> methods;
  int64_t parameter_count = 0;
  int64_t parameter_bytes = 0;  // parameters and buffers
};

}  // namespace torchship
