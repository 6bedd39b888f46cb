// torchship classify MODEL IMAGE_OR_DIR...: top-k classes per image, in real batches, with a
// summary (throughput, and accuracy plus confusion matrix when truth labels are given).
#include <chrono>
#include <cstdio>
#include <iostream>

#include "cli_common.h"
#include "progress.h"
#include "torchship/classification_output.h"
#include "torchship/evaluation.h"

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

// The run's throughput, and its accuracy when truth labels were given.
struct Summary {
  size_t images = 0;
  size_t failed = 0;
  double seconds = 0;
  LabelledEvaluation evaluation;

  double throughput() const { return seconds > 0 ? images / seconds : 0; }

  json to_json() const {
    json out = {{"images", images},
                {"failed", failed},
                {"seconds", seconds},
                {"images_per_second", throughput()}};
    out.update(evaluation.to_json());
    return out;
  }

  void print(std::ostream& out, const Model& model) const {
    char line[160];
    std::snprintf(line, sizeof line, "%zu images in %.2f s (%.1f images/s), %zu failed\n", images,
                  seconds, throughput(), failed);
    out << line;
    evaluation.print(out, model.manifest() ? &*model.manifest() : nullptr);
  }
};

int run_classify(const ClassifyOptions& options) {
  std::vector<fs::path> images = collect_images(options.inputs, options.labels_csv);
  Model model = load_model(options.model, images.size());
  TruthLabels truth;
  if (!options.labels_csv.empty()) {
    truth = TruthLabels::read(options.labels_csv, model.manifest() ? &*model.manifest() : nullptr,
                              "--labels");
  }

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
      if (auto label = truth.empty() ? std::nullopt : truth.of(path)) {
        summary.evaluation.count(*label, predictions[i][0].index);
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
