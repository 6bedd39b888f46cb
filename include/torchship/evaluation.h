// How a classifier does on labelled images: the truth file (CSV "path,label"), the predictions
// tallied against it, accuracy and the confusion matrix as text or JSON. `torchship classify
// --labels` is one user; an application evaluating a model on its own images is another.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "torchship/manifest.h"

namespace torchship {

// The same file however it was named: matches paths from a truth file with paths found on disk.
std::string path_key(const std::filesystem::path& path);

// The true class of each image a CSV "path,label" names ("path,label" as a first line is a
// header). A label is one of the manifest's labels or a class index; relative paths are relative
// to the CSV's folder.
class TruthLabels {
 public:
  // `what` names the file in messages: Error(BadInput) "<what> <csv> line N: ..." for a line
  // that is not "path,label" or names an unknown label; "<what>: cannot read <csv>: ...".
  static TruthLabels read(const std::filesystem::path& csv, const Manifest* manifest,
                          const std::string& what);

  // The true class of an image, however its path is written; none when the file has no line.
  std::optional<int64_t> of(const std::filesystem::path& image) const;
  bool empty() const { return by_path_.empty(); }

 private:
  std::map<std::string, int64_t> by_path_;
};

// Predictions tallied against truth labels.
class LabelledEvaluation {
 public:
  void count(int64_t truth, int64_t predicted);

  size_t labelled() const { return labelled_; }
  size_t correct() const { return correct_; }
  double accuracy() const;
  // [truth][predicted], square, as many classes as the largest index seen.
  const std::vector<std::vector<int64_t>>& confusion() const { return confusion_; }

  // {"labelled", "correct", "accuracy", "confusion"}; {} when nothing was labelled.
  nlohmann::json to_json() const;
  // "accuracy 93.10% (931 of 1000 labelled images)" and, up to 20 classes, the confusion matrix
  // with the manifest's label names; nothing when nothing was labelled.
  void print(std::ostream& out, const Manifest* manifest) const;

 private:
  size_t labelled_ = 0;
  size_t correct_ = 0;
  std::vector<std::vector<int64_t>> confusion_;
};

}  // namespace torchship
