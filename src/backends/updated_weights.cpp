#include "backends/updated_weights.h"

#include <nlohmann/json.hpp>

#include "torchship/datatype.h"
#include "torchship/json_input.h"
#include "torchship/npy.h"
#include "torchship/weights_update.h"

namespace torchship {
namespace {

std::string kind_of(const at::Tensor& tensor) {
  return datatype_name(tensor.scalar_type()) + " " + shape_text(tensor.sizes());
}

}  // namespace

Error weights_refused(const Archive& archive, const std::string& why) {
  std::string file = "the weights update";
  if (auto text = archive.read_extra(kWeightsUpdateFile)) {
    file = nlohmann::json::parse(*text, nullptr, false).value("file", file);
  }
  return bad_input("cannot apply " + file + " to " + archive.path().string() + ": " + why);
}

void check_same_kind(const Archive& archive, const NamedWeight& given, const at::Tensor& current) {
  if (given.tensor.scalar_type() != current.scalar_type() ||
      !given.tensor.sizes().equals(current.sizes())) {
    throw weights_refused(archive, "'" + given.name + "' is " + kind_of(given.tensor) +
                                       ", the model's " + kind_of(current));
  }
}

std::vector<NamedWeight> updated_weights(const Archive& archive) {
  auto text = archive.read_extra(kWeightsUpdateFile);
  if (!text) return {};
  nlohmann::json description = parse_json(*text, archive.path().string());
  const std::string origin =
      "cannot apply " + description.value("file", std::string("the weights update"));
  std::vector<NamedWeight> weights;
  for (const auto& entry : description.at("tensors")) {
    std::string name = entry.value("name", ""), record = entry.value("record", "");
    auto bytes = archive.read_extra(record);
    if (name.empty() || !bytes) {
      throw bad_model(origin + ": tensor '" + name + "' has no record " + record);
    }
    at::Tensor tensor;
    try {
      tensor = parse_npy(*bytes, record);
    } catch (const Error& e) {
      throw bad_model(origin + ": " + e.what());
    }
    std::vector<int64_t> shape = entry.value("shape", std::vector<int64_t>());
    if (!tensor.sizes().equals(shape)) {
      throw bad_model(origin + ": " + record + " holds " + kind_of(tensor) + ", its description " +
                      shape_text(shape));
    }
    weights.push_back({std::move(name), std::move(tensor)});
  }
  return weights;
}

}  // namespace torchship
