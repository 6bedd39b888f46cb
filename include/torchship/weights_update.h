// A weights update (torchship.export_weights): the retrained weights of a model exported
// before, with golden vectors computed by them, applied to a loaded model without compiling
// anything (Model::with_weights). It fits only the archive it was written for: the one whose
// weights index (names, dtypes, shapes, structure) has its signature.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "torchship/archive.h"

namespace torchship {

// Names of the records an update and the archives it applies to hold.
constexpr const char* kWeightsUpdateFile = "torchship/weights.json";
constexpr const char* kWeightsIndexFile = "torchship/weights_index.json";

class WeightsUpdate {
 public:
  // Throws Error(BadModel) for a file that is not a weights update, or one that is damaged.
  static WeightsUpdate open(const std::filesystem::path& path);
  static WeightsUpdate from_bytes(std::string_view bytes, const std::string& name);

  const std::filesystem::path& path() const { return records_.path(); }
  // The signature of the weights index of the archive it updates.
  const std::string& signature() const { return signature_; }
  // The forms it has weights and golden vectors for ("torchscript", "aoti", "openvino").
  const std::vector<std::string>& forms() const { return forms_; }
  // The name of the file it was written for (torchship.export_weights' base_archive).
  const std::string& base_name() const { return base_name_; }
  size_t tensor_count() const { return tensor_count_; }
  // Whether it fits `form` (one form's archive): "" when it does, else why not, in words.
  std::string mismatch(const Archive& form) const;
  // `form` with this update laid over it: its golden vectors and the weights its backend
  // takes (Archive::with_records); without the weights, what a model that runs them keeps.
  // Throws Error(BadInput) naming mismatch().
  Archive over(const Archive& form, bool with_weights = true) const;

 private:
  static WeightsUpdate read(Archive records);
  Archive records_;
  std::string signature_, base_name_;
  std::vector<std::string> forms_;
  size_t tensor_count_ = 0;
};

}  // namespace torchship
