#include "serving/model_metadata.h"

namespace torchship::serving {

ModelMetadata model_metadata(const std::string& name, const std::vector<std::string>& versions,
                             const Model& model) {
  auto tensor = [](const std::string& tensor_name, const TensorSpec* spec) {
    return TensorMetadata{tensor_name, spec ? spec->datatype : "",
                          spec ? spec->shape : std::vector<int64_t>{}};
  };
  ModelMetadata metadata{name, versions, "pytorch_libtorch", {}, {}};
  const auto& manifest = model.manifest();
  for (size_t i = 0; i < model.inputs().size(); ++i) {
    const TensorSpec* spec =
        manifest && i < manifest->inputs.size() ? &manifest->inputs[i] : nullptr;
    metadata.inputs.push_back(tensor(model.inputs()[i].name, spec));
  }
  if (manifest && !manifest->outputs.empty()) {
    for (const auto& spec : manifest->outputs) metadata.outputs.push_back(tensor(spec.name, &spec));
  } else if (model.output_type()->kind() == c10::TypeKind::TensorType) {
    metadata.outputs.push_back(tensor("output", nullptr));
  }
  return metadata;
}

}  // namespace torchship::serving
