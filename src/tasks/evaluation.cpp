#include "torchship/evaluation.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "torchship/error.h"

namespace torchship {
namespace fs = std::filesystem;
namespace {

// A label's class: its position among the manifest's labels, else a class index; -1 for
// neither.
int64_t class_of(const std::string& label, const Manifest* manifest) {
  if (manifest) {
    auto it = std::find(manifest->labels.begin(), manifest->labels.end(), label);
    if (it != manifest->labels.end()) return it - manifest->labels.begin();
  }
  char* end = nullptr;
  long long parsed = std::strtoll(label.c_str(), &end, 10);
  if (label.empty() || *end != '\0' || parsed < 0) return -1;
  return parsed;
}

void print_confusion(std::ostream& out, const std::vector<std::vector<int64_t>>& confusion,
                     const Manifest* manifest) {
  char line[64];
  out << "confusion matrix (rows: truth, columns: predicted)\n" << std::string(18, ' ');
  for (size_t c = 0; c < confusion.size(); ++c) {
    std::snprintf(line, sizeof line, "%6zu", c);
    out << line;
  }
  out << '\n';
  for (size_t t = 0; t < confusion.size(); ++t) {
    std::string name = manifest ? manifest->label(static_cast<int64_t>(t)) : "";
    std::snprintf(line, sizeof line, "%3zu %-14.14s", t, name.c_str());
    out << line;
    for (int64_t count : confusion[t]) {
      std::snprintf(line, sizeof line, "%6lld", static_cast<long long>(count));
      out << line;
    }
    out << '\n';
  }
}

}  // namespace

std::string path_key(const fs::path& path) {
  std::error_code ec;
  auto canonical = fs::weakly_canonical(path, ec);
  return (ec ? path : canonical).lexically_normal().string();
}

TruthLabels TruthLabels::read(const fs::path& csv, const Manifest* manifest,
                              const std::string& what) {
  std::ifstream in(csv);
  if (!in) throw bad_input(what + ": cannot read " + csv.string() + ": no such file");
  TruthLabels truth;
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (number == 1 && line == "path,label")) continue;
    std::string where = what + " " + csv.string() + " line " + std::to_string(number);
    auto comma = line.rfind(',');
    if (comma == std::string::npos) {
      throw bad_input(where + ": expected \"path,label\", got \"" + line + "\"");
    }
    std::string label = line.substr(comma + 1);
    int64_t index = class_of(label, manifest);
    if (index < 0) {
      throw bad_input(where + ": unknown label \"" + label +
                      "\" (expected one of the manifest's labels or a class index)");
    }
    fs::path path = line.substr(0, comma);
    if (path.is_relative()) path = csv.parent_path() / path;
    truth.by_path_[path_key(path)] = index;
  }
  return truth;
}

std::optional<int64_t> TruthLabels::of(const fs::path& image) const {
  auto it = by_path_.find(path_key(image));
  if (it == by_path_.end()) return std::nullopt;
  return it->second;
}

void LabelledEvaluation::count(int64_t truth, int64_t predicted) {
  size_t needed = static_cast<size_t>(std::max(truth, predicted)) + 1;
  if (confusion_.size() < needed) {  // a class not seen before: the matrix grows square
    confusion_.resize(needed);
    for (auto& row : confusion_) row.resize(needed, 0);
  }
  ++confusion_[truth][predicted];
  ++labelled_;
  if (truth == predicted) ++correct_;
}

double LabelledEvaluation::accuracy() const {
  return labelled_ == 0 ? 0 : static_cast<double>(correct_) / static_cast<double>(labelled_);
}

nlohmann::json LabelledEvaluation::to_json() const {
  if (labelled_ == 0) return nlohmann::json::object();
  return {{"labelled", labelled_},
          {"correct", correct_},
          {"accuracy", accuracy()},
          {"confusion", confusion_}};
}

void LabelledEvaluation::print(std::ostream& out, const Manifest* manifest) const {
  if (labelled_ == 0) return;
  char line[160];
  std::snprintf(line, sizeof line, "accuracy %.2f%% (%zu of %zu labelled images)\n",
                100.0 * accuracy(), correct_, labelled_);
  out << line;
  if (confusion_.size() > 20) {
    out << "(confusion matrix omitted: " << confusion_.size() << " classes; see --json)\n";
    return;
  }
  print_confusion(out, confusion_, manifest);
}

}  // namespace torchship
