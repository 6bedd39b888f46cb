#include "archive/golden_index.h"

#include <cmath>

#include "torchship/error.h"
#include "torchship/json_input.h"
#include "torchship/limits.h"

namespace torchship {

using nlohmann::json;

GoldenIndex parse_golden_index(const std::string& text, const std::string& origin) {
  auto reject = [&](const std::string& why) -> Error {
    return bad_model(origin + ": the golden index " + why);
  };
  json index = parse_json(text, origin + ": the golden index");
  if (index.is_discarded()) throw reject("is not valid JSON");
  if (!index.is_object() || !index.contains("cases") || !index["cases"].is_array()) {
    throw reject("has no \"cases\" list");
  }
  for (const char* key : {"rtol", "atol"}) {
    auto it = index.find(key);
    if (it == index.end()) {
      index[key] = 1e-4;  // archives from before tolerances were recorded
    } else if (!it->is_number() || !(it->get<double>() >= 0) || !std::isfinite(it->get<double>())) {
      throw reject(std::string("has \"") + key + "\": " + it->dump() +
                   ", expected a non-negative number");
    }
  }
  const json& cases = index["cases"];
  for (size_t i = 0; i < cases.size(); ++i) {
    const json& golden = cases[i];
    std::string where = "case " + std::to_string(i);
    if (!golden.is_object()) throw reject(where + " is not an object");
    if (!golden.contains("inputs") || !golden["inputs"].is_array()) {
      throw reject(where + " has no \"inputs\" list");
    }
    if (!golden.contains("output")) throw reject(where + " has no \"output\"");
    if (golden.contains("label") && !golden["label"].is_string()) {
      throw reject(where + " has \"label\": " + golden["label"].dump() + ", expected a string");
    }
  }
  return {index["rtol"].get<double>(), index["atol"].get<double>(), std::move(index)};
}

json read_golden_index(const Archive& archive) {
  auto index_text = archive.read_extra(kGoldenIndexFile);
  if (!index_text) {
    throw bad_input(archive.path().string() +
                    " has no golden vectors (export it with torchship.export to record them)");
  }
  return parse_golden_index(*index_text, archive.path().string()).tree;
}

std::optional<double> golden_rtol(const Archive& archive) {
  if (!archive.has_golden()) return std::nullopt;
  return read_golden_index(archive)["rtol"].get<double>();
}

}  // namespace torchship
