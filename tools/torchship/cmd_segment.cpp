// torchship segment MODEL IMAGE: per-pixel labels, their histogram, and the overlay image.
#include <cstdio>
#include <iostream>

#include <ATen/ATen.h>

#include "cli_common.h"

namespace torchship::cli {
namespace {

struct SegmentOptions {
  ModelOptions model;
  std::string image;
  std::string overlay;
  std::string labels_out;
  bool json = false;
};

int run_segment(const SegmentOptions& options) {
  Model model = load_model(options.model, 1);
  Segmentation result = model.segment(std::filesystem::path(options.image));
  if (!options.overlay.empty()) {
    if (!result.overlay.defined()) {
      throw bad_model("--overlay: this model returns no overlay image (outputs: labels only)");
    }
    write_image(options.overlay, result.overlay);
  }
  if (!options.labels_out.empty()) write_npy(options.labels_out, result.labels);

  // Share of the image per class, largest first.
  at::Tensor labels = result.labels.to(at::kLong).flatten();
  int64_t pixels = labels.numel();
  at::Tensor counts = pixels > 0 ? at::bincount(labels) : at::zeros({0}, at::kLong);
  std::vector<std::pair<int64_t, int64_t>> present;  // (count, class)
  for (int64_t c = 0; c < counts.size(0); ++c) {
    int64_t count = counts[c].item<int64_t>();
    if (count > 0) present.emplace_back(count, c);
  }
  std::sort(present.rbegin(), present.rend());
  const auto& manifest = model.manifest();
  auto label_of = [&](int64_t c) { return manifest ? manifest->label(c) : std::string(); };

  if (options.json) {
    nlohmann::json classes = nlohmann::json::array();
    for (const auto& [count, c] : present) {
      classes.push_back({{"index", c},
                         {"label", label_of(c)},
                         {"pixels", count},
                         {"fraction", static_cast<double>(count) / static_cast<double>(pixels)}});
    }
    print_json({{"path", options.image},
                {"height", result.labels.size(0)},
                {"width", result.labels.dim() > 1 ? result.labels.size(1) : 1},
                {"classes", classes},
                {"overlay", options.overlay.empty() ? nlohmann::json(nullptr)
                                                    : nlohmann::json(options.overlay)}});
    return 0;
  }
  std::cout << options.image << ": " << result.labels.size(0) << "x"
            << (result.labels.dim() > 1 ? result.labels.size(1) : 1) << " pixels, "
            << present.size() << (present.size() == 1 ? " class" : " classes") << " present\n";
  for (const auto& [count, c] : present) {
    char line[64];
    std::snprintf(line, sizeof line, "  %6.2f%%  %4lld  ",
                  100.0 * static_cast<double>(count) / static_cast<double>(pixels),
                  static_cast<long long>(c));
    std::string label = label_of(c);
    std::cout << line << (label.empty() ? "-" : label) << '\n';
  }
  if (!options.overlay.empty()) std::cout << "overlay written to " << options.overlay << '\n';
  return 0;
}

}  // namespace

Command add_segment_command(CLI::App& app) {
  auto* command = app.add_subcommand("segment", "per-pixel classes of an image");
  auto options = std::make_shared<SegmentOptions>();
  add_model_options(*command, options->model);
  command->add_option("IMAGE", options->image, "image file")->required();
  command->add_option("--overlay", options->overlay, "write the overlay image (PNG, JPEG, ...)");
  command->add_option("--labels-out", options->labels_out, "write the label mask as .npy");
  command->add_flag("--json", options->json, "print one JSON object");
  return {command, [options] { return run_segment(*options); }};
}

}  // namespace torchship::cli
