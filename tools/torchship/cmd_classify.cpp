// torchship classify MODEL IMAGE...: top-k classes per image.
#include <cstdio>
#include <iostream>

#include "cli_common.h"

namespace torchship::cli {
namespace {

struct ClassifyOptions {
  ModelOptions model;
  std::vector<std::string> images;
  int top_k = 5;
  bool json = false;
};

nlohmann::json prediction_json(const Prediction& prediction) {
  return {{"index", prediction.index}, {"label", prediction.label}, {"score", prediction.score}};
}

int run_classify(const ClassifyOptions& options) {
  Model model = load_model(options.model);
  nlohmann::json results = nlohmann::json::array();
  int failed = 0;
  for (const auto& image : options.images) {
    std::vector<Prediction> predictions;
    try {
      predictions = model.classify(std::filesystem::path(image), options.top_k);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::BadInput) throw;
      std::cerr << "torchship: error: " << e.what() << '\n';
      ++failed;
      continue;
    }
    if (options.json) {
      nlohmann::json topk = nlohmann::json::array();
      for (const auto& prediction : predictions) topk.push_back(prediction_json(prediction));
      results.push_back({{"path", image}, {"topk", topk}});
      continue;
    }
    std::cout << image << '\n';
    for (size_t i = 0; i < predictions.size(); ++i) {
      const auto& p = predictions[i];
      char line[64];
      std::snprintf(line, sizeof line, "  %zu. %.4f  %5lld  ", i + 1, p.score,
                    static_cast<long long>(p.index));
      std::cout << line << (p.label.empty() ? "-" : p.label) << '\n';
    }
  }
  if (options.json) print_json({{"results", results}});
  return failed == 0 ? 0 : 2;
}

}  // namespace

Command add_classify_command(CLI::App& app) {
  auto* command = app.add_subcommand("classify", "top-k classes of images");
  auto options = std::make_shared<ClassifyOptions>();
  add_model_options(*command, options->model);
  command->add_option("IMAGE", options->images, "image files")->required();
  command->add_option("--top-k,-k", options->top_k, "classes to show per image")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_flag("--json", options->json, "print one JSON object {\"results\": [...]}");
  return {command, [options] { return run_classify(*options); }};
}

}  // namespace torchship::cli
