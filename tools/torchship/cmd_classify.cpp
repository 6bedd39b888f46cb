// torchship classify MODEL IMAGE_OR_DIR...: top-k classes per image, in real batches, with a
// summary (throughput, and accuracy plus confusion matrix when truth labels are given).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>

#include "cli_common.h"
#include "progress.h"
#include "torchship/classification_output.h"

namespace torchship::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct ClassifyOptions {
  ModelOptions model;
  std::vector<std::string> inputs;
  int top_k = 5;
  size_t batch_size = 32;
  bool json = false;
  bool jsonl = false;
  std::string labels_csv;
  bool fast_decode = false;
};

// CSV "path,label": label is a class name from the manifest or an index; relative paths are
// relative to the CSV's folder.
std::map<std::string, int64_t> read_truth(const std::string& csv, const Model& model) {
  std::ifstream in(csv);
  if (!in) throw bad_input("--labels: cannot read " + csv + ": no such file");
  const auto& manifest = model.manifest();
  std::map<std::string, int64_t> truth;
  std::string line;
  size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (number == 1 && line == "path,label")) continue;
    auto comma = line.rfind(',');
    if (comma == std::string::npos) {
      throw bad_input("--labels " + csv + " line " + std::to_string(number) +
                      ": expected \"path,label\", got \"" + line + "\"");
    }
    fs::path path = line.substr(0, comma);
    std::string label = line.substr(comma + 1);
    int64_t index = -1;
    if (manifest) {
      auto it = std::find(manifest->labels.begin(), manifest->labels.end(), label);
      if (it != manifest->labels.end()) index = it - manifest->labels.begin();
    }
    if (index < 0) {
      char* end = nullptr;
      long long parsed = std::strtoll(label.c_str(), &end, 10);
      if (label.empty() || *end != '\0' || parsed < 0) {
        throw bad_input("--labels " + csv + " line " + std::to_string(number) +
                        ": unknown label \"" + label +
                        "\" (expected one of the manifest's labels or a class index)");
      }
      index = parsed;
    }
    if (path.is_relative()) path = fs::path(csv).parent_path() / path;
    truth[path_key(path)] = index;
  }
  return truth;
}

json result_json(const fs::path& path, const std::vector<Prediction>& predictions) {
  json topk = json::array();
  for (const auto& prediction : predictions) topk.push_back(prediction_json(prediction));
  return {{"path", path.string()},
          {"index", predictions[0].index},
          {"label", predictions[0].label},
          {"score", predictions[0].score},
          {"topk", topk}};
}

void print_human(const fs::path& path, const std::vector<Prediction>& predictions) {
  std::cout << path.string() << '\n';
  for (size_t i = 0; i < predictions.size(); ++i) {
    const auto& p = predictions[i];
    char line[64];
    std::snprintf(line, sizeof line, "  %zu. %.4f  %5lld  ", i + 1, p.score,
                  static_cast<long long>(p.index));
    std::cout << line << (p.label.empty() ? "-" : p.label) << '\n';
  }
}

struct Summary {
  size_t images = 0;
  size_t failed = 0;
  double seconds = 0;
  size_t labelled = 0;
  size_t correct = 0;
  std::vector<std::vector<int64_t>> confusion;  // [truth][predicted]

  void count(int64_t truth, int64_t predicted) {
    size_t needed = static_cast<size_t>(std::max(truth, predicted)) + 1;
    if (confusion.size() < needed) {
      confusion.resize(needed);
      for (auto& row : confusion) row.resize(needed, 0);
    }
    for (auto& row : confusion) row.resize(confusion.size(), 0);
    ++confusion[truth][predicted];
    ++labelled;
    if (truth == predicted) ++correct;
  }

  double throughput() const { return seconds > 0 ? images / seconds : 0; }

  json to_json() const {
    json out = {{"images", images},
                {"failed", failed},
                {"seconds", seconds},
                {"images_per_second", throughput()}};
    if (labelled > 0) {
      out["labelled"] = labelled;
      out["correct"] = correct;
      out["accuracy"] = static_cast<double>(correct) / static_cast<double>(labelled);
      out["confusion"] = confusion;
    }
    return out;
  }

  void print(std::ostream& out, const Model& model) const {
    char line[160];
    std::snprintf(line, sizeof line, "%zu images in %.2f s (%.1f images/s), %zu failed\n", images,
                  seconds, throughput(), failed);
    out << line;
    if (labelled == 0) return;
    std::snprintf(line, sizeof line, "accuracy %.2f%% (%zu of %zu labelled images)\n",
                  100.0 * static_cast<double>(correct) / static_cast<double>(labelled), correct,
                  labelled);
    out << line;
    if (confusion.size() > 20) {
      out << "(confusion matrix omitted: " << confusion.size() << " classes; see --json)\n";
      return;
    }
    const auto& manifest = model.manifest();
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
};

int run_classify(const ClassifyOptions& options) {
  std::vector<fs::path> images = collect_images(options.inputs, options.labels_csv);
  Model model = load_model(options.model, images.size());
  std::map<std::string, int64_t> truth;
  if (!options.labels_csv.empty()) truth = read_truth(options.labels_csv, model);

  Summary summary;
  json results = json::array();
  Progress progress("classify", images.size());
  auto started = std::chrono::steady_clock::now();
  size_t done = 0;
  ImageBatches batches(model, images, options.batch_size,
                       options.fast_decode ? Decode::Reduced : Decode::Exact);
  while (auto batch = batches.next()) {
    for (const auto& failure : batch->failures) {
      progress.finish();
      report_error(failure.message);
      ++summary.failed;
    }
    auto predictions = model.classify_batch(batch->inputs, options.top_k, options.batch_size);
    for (size_t i = 0; i < batch->inputs.size(); ++i) {
      const fs::path& path = batch->paths[i];
      ++summary.images;
      if (!truth.empty()) {
        auto it = truth.find(path_key(path));
        if (it != truth.end()) summary.count(it->second, predictions[i][0].index);
      }
      if (options.jsonl) {
        print_json(result_json(path, predictions[i]));
      } else if (options.json) {
        results.push_back(result_json(path, predictions[i]));
      } else {
        print_human(path, predictions[i]);
      }
    }
    done += batch->inputs.size() + batch->failures.size();
    progress.update(done);
  }
  progress.finish();
  summary.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  if (options.json) {
    print_json({{"results", results}, {"summary", summary.to_json()}});
  } else if (options.jsonl) {
    summary.print(std::cerr, model);
  } else if (images.size() > 1 || !truth.empty()) {
    std::cout << '\n';
    summary.print(std::cout, model);
  }
  return summary.failed == 0 ? 0 : 2;
}

}  // namespace

Command add_classify_command(CLI::App& app) {
  auto* command = app.add_subcommand("classify", "top-k classes of images and image folders");
  auto options = std::make_shared<ClassifyOptions>();
  add_model_options(*command, options->model);
  command->add_option("IMAGE", options->inputs, "image files and folders (walked recursively)")
      ->required();
  command->add_option("--top-k,-k", options->top_k, "classes to show per image")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      ->add_option("--batch-size,-b", options->batch_size,
                   "images per forward (when the manifest declares a batch dimension)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_option("--labels", options->labels_csv,
                      "CSV path,label of true classes: adds accuracy and a confusion matrix");
  command->add_flag("--fast-decode", options->fast_decode,
                    "let the JPEG decoder scale large photos down by 2, 4 or 8 (2-4x faster; "
                    "pixels differ slightly from a full decode)");
  auto* json_flag = command->add_flag("--json", options->json, "print one JSON object at the end");
  command->add_flag("--jsonl", options->jsonl, "print one JSON line per image as it is classified")
      ->excludes(json_flag);
  return {command, [options] { return run_classify(*options); }};
}

}  // namespace torchship::cli
