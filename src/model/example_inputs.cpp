#include "torchship/example_inputs.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "torchship/datatype.h"
#include "torchship/golden.h"

namespace torchship {
namespace {

at::Tensor synthesize(const TensorSpec& spec, at::Generator& generator) {
  std::vector<int64_t> shape;
  bool image_sides = spec.image && spec.layout.find("HW") != std::string::npos;
  for (size_t i = 0; i < spec.shape.size(); ++i) {
    bool side = image_sides && (spec.layout.size() == spec.shape.size()
                                    ? spec.layout[i] == 'H' || spec.layout[i] == 'W'
                                    : i + 3 >= spec.shape.size());
    shape.push_back(spec.shape[i] > 0 ? spec.shape[i] : (side ? 224 : 1));
  }
  auto type = spec.datatype.empty() ? c10::kFloat : scalar_type_from_datatype(spec.datatype);
  auto options = at::TensorOptions().dtype(type);
  if (type == c10::kByte) return at::randint(0, 256, shape, generator, options);
  if (c10::isFloatingType(type)) return at::rand(shape, generator).to(type);
  if (type == c10::kBool) return at::randint(0, 2, shape, generator, options);
  return at::randint(0, 10, shape, generator, options);
}

}  // namespace

std::vector<c10::IValue> synthesized_inputs(const Model& model) {
  const auto& manifest = model.manifest();
  const auto& arguments = model.inputs();
  if (!manifest || manifest->inputs.empty() || manifest->inputs.size() != arguments.size()) {
    return {};
  }
  at::Generator generator = at::detail::createCPUGenerator(/*seed_in=*/20261127);
  std::vector<c10::IValue> inputs;
  for (size_t i = 0; i < arguments.size(); ++i) {
    const TensorSpec& spec = manifest->inputs[i];
    if (!arguments[i].type->isSubtypeOf(*c10::TensorType::get()) || spec.shape.empty()) return {};
    inputs.push_back(synthesize(spec, generator));
  }
  return inputs;
}

std::vector<c10::IValue> example_inputs(const Model& model) {
  auto golden = golden_inputs(model);
  return golden.empty() ? synthesized_inputs(model) : golden;
}

}  // namespace torchship
