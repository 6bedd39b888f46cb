#include "torchship/weights_update.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "archive/memory_file.h"
#include "torchship/error.h"
#include "torchship/json_input.h"

namespace torchship {
namespace {

using nlohmann::json;

// The update's description (torchship/weights.json), its structure checked.
json description_of(const Archive& records) {
  const std::string origin = records.path().string();
  auto text = records.read_extra(kWeightsUpdateFile);
  json description = parse_json(*text, origin + ": " + kWeightsUpdateFile);
  auto bad = [&](const std::string& why) {
    return bad_model("cannot read the weights update " + origin + ": " + why);
  };
  if (!description.is_object() || !description.contains("kind") ||
      description["kind"] != "torchship weights update") {
    throw bad(std::string(kWeightsUpdateFile) + " is not a weights update's description");
  }
  if (!description.contains("version") || description["version"] != 1) {
    throw bad("version " + description.value("version", json()).dump() +
              ", this torchship reads version 1 (update torchship)");
  }
  for (const char* key : {"signature", "base"}) {
    if (!description.contains(key) || !description[key].is_string()) {
      throw bad(std::string("no \"") + key + "\" string");
    }
  }
  for (const char* key : {"forms", "tensors"}) {
    if (!description.contains(key) || !description[key].is_array()) {
      throw bad(std::string("no \"") + key + "\" list");
    }
  }
  for (const auto& entry : description["tensors"]) {
    bool whole = entry.is_object() && entry.contains("name") && entry["name"].is_string() &&
                 entry.contains("record") && entry["record"].is_string() &&
                 entry.contains("shape") && entry["shape"].is_array();
    for (const auto& size : whole ? entry["shape"] : json::array()) {
      whole = whole && size.is_number_unsigned();
    }
    if (!whole) {
      throw bad("a tensor's entry is not {\"name\", \"record\", \"shape\": [sizes]}: " +
                entry.dump().substr(0, 120));
    }
  }
  return description;
}

// `form`'s weights index; null for an archive exported before weights indexes.
json index_of(const Archive& form) {
  auto text = form.read_extra(kWeightsIndexFile);
  if (!text) return json();
  json index = parse_json(*text, form.path().string() + ": " + kWeightsIndexFile);
  if (!index.is_object() || !index.contains("signature") || !index["signature"].is_string()) {
    throw bad_model("cannot load " + form.path().string() + ": its " + kWeightsIndexFile +
                    " has no \"signature\" string");
  }
  return index;
}

}  // namespace

WeightsUpdate WeightsUpdate::open(const std::filesystem::path& path) {
  return read(Archive::open_file(path, path, Archive::Expect::WeightsUpdate));
}

WeightsUpdate WeightsUpdate::from_bytes(std::string_view bytes, const std::string& name) {
  if (bytes.empty()) throw bad_model("cannot read the weights update " + name + ": it is empty");
  MemoryFile held = MemoryFile::hold(bytes, "torchship-weights");
  Archive records = Archive::open_file(held.path(), name, Archive::Expect::WeightsUpdate);
  records.held_ = std::make_shared<MemoryFile>(held);
  return read(std::move(records));
}

WeightsUpdate WeightsUpdate::read(Archive records) {
  WeightsUpdate update;
  update.records_ = std::move(records);
  json description = description_of(update.records_);
  update.signature_ = description["signature"].get<std::string>();
  update.base_name_ = description["base"].get<std::string>();
  for (const auto& form : description["forms"]) {
    if (form.is_string()) update.forms_.push_back(form.get<std::string>());
  }
  update.tensor_count_ = description["tensors"].size();
  return update;
}

std::string WeightsUpdate::mismatch(const Archive& form) const {
  json index = index_of(form);
  bool frozen = !index.is_null() && index.contains("frozen") && index["frozen"] == true;
  if (form.format() == ModelFormat::AOTInductor && frozen) {
    return "its AOTInductor model was compiled with frozen weights, which cannot be replaced "
           "(export it with swappable_weights=True)";
  }
  if (index.is_null()) {
    return "it was exported before weight updates (it has no " + std::string(kWeightsIndexFile) +
           "): export it again";
  }
  std::string signature = index["signature"].get<std::string>();
  if (signature != signature_) {
    return "the update is for another model (" + base_name_ + ", weights index " +
           signature_.substr(0, 12) + "; this one's is " + signature.substr(0, 12) +
           "): torchship.export_weights names the difference";
  }
  std::string form_id = format_id(form.format());
  if (std::find(forms_.begin(), forms_.end(), form_id) == forms_.end()) {
    return std::string("the update has no weights for its ") + format_name(form.format()) + " form";
  }
  return "";
}

Archive WeightsUpdate::over(const Archive& form, bool with_weights) const {
  std::string why = mismatch(form);
  if (!why.empty()) {
    throw bad_input("cannot apply " + path().string() + " to " + form.path().string() + ": " + why);
  }
  // Each form's golden vectors are kept under its name; the rest (weights, IR) as they are.
  const std::string own = std::string(format_id(form.format())) + "/";
  std::map<std::string, std::string> laid;
  for (const auto& record : records_.records()) {
    bool golden_of_a_form = record.find("/torchship/golden/") != std::string::npos;
    if (golden_of_a_form && record.rfind(own, 0) != 0) continue;
    bool openvino = !golden_of_a_form && record.rfind("openvino/", 0) == 0;  // the IR
    if (openvino && form.format() != ModelFormat::OpenVINO) continue;
    std::string name = golden_of_a_form ? record.substr(own.size()) : record;
    bool torchship_file = name.rfind("torchship/", 0) == 0;
    if (!torchship_file && !openvino) continue;  // the zip's own version record
    bool weights = openvino || name.rfind("torchship/weights/", 0) == 0;
    if (weights && !with_weights) continue;
    laid[torchship_file ? form.extra_record(name) : name] = *records_.read_record(record);
  }
  // The description names the update's file, for the backends' messages.
  std::string& description = laid[form.extra_record(kWeightsUpdateFile)];
  json described = parse_json(description, path().string());
  described["file"] = path().string();
  description = described.dump();
  return form.with_records(std::move(laid));
}

}  // namespace torchship
