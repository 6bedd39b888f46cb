// What a client learns about a model before it sends a request, whatever protocol asks: name,
// versions, platform, inputs and outputs with datatypes and shapes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "torchship/model.h"

namespace torchship::serving {

// Shapes hold -1 for free dimensions, the batch dimension included; "" and [] where the manifest
// says nothing.
struct TensorMetadata {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;
};
struct ModelMetadata {
  std::string name;
  std::vector<std::string> versions;
  std::string platform;
  std::vector<TensorMetadata> inputs;
  std::vector<TensorMetadata> outputs;
};
ModelMetadata model_metadata(const std::string& name, const std::vector<std::string>& versions,
                             const Model& model);

}  // namespace torchship::serving
