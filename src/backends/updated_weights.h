// The weights a weights update laid over an archive brings (WeightsUpdate::over), as the
// backends take them: each tensor by its qualified name, checked against the update's
// description. Which of the model's tensors they replace is each backend's to check.
#pragma once

#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "torchship/archive.h"
#include "torchship/error.h"

namespace torchship {

struct NamedWeight {
  std::string name;  // the module's qualified name ("features.0.weight")
  at::Tensor tensor;
};

// Empty when no update was laid over `archive`. Throws Error(BadModel) for an update whose
// tensors are unreadable or not what its description says.
std::vector<NamedWeight> updated_weights(const Archive& archive);

// Error(BadInput) "cannot apply UPDATE to PATH: WHY".
Error weights_refused(const Archive& archive, const std::string& why);

// Throws weights_refused unless `given` has the dtype and shape of `current`, the model's
// tensor of that name.
void check_same_kind(const Archive& archive, const NamedWeight& given, const at::Tensor& current);

}  // namespace torchship
