// torchship detect MODEL IMAGE_OR_DIR...: the objects a detector finds in each image (boxes,
// scores, labels, keypoints in the image's pixels), printed, streamed as JSON or drawn.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "cli_common.h"
#include "progress.h"

namespace torchship::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct DetectOptions {
  ModelOptions model;
  std::vector<std::string> inputs;
  double min_score = 0;
  std::string overlay;
  bool json = false;
  bool jsonl = false;
};

json result_json(const fs::path& path, const at::Tensor& image,
                 const std::vector<Detection>& detections, const std::string& overlay) {
  json list = json::array();
  for (const auto& detection : detections) list.push_back(detection_json(detection));
  return {{"path", path.string()},
          {"height", image.size(0)},
          {"width", image.size(1)},
          {"detections", list},
          {"overlay", overlay.empty() ? json(nullptr) : json(overlay)}};
}

void print_human(const fs::path& path, const std::vector<Detection>& detections) {
  std::cout << path.string() << ": " << detections.size()
            << (detections.size() == 1 ? " object\n" : " objects\n");
  char line[160];
  for (size_t i = 0; i < detections.size(); ++i) {
    const auto& d = detections[i];
    std::string label = d.label_name.empty()
                            ? (d.label >= 0 ? std::to_string(d.label) : std::string("-"))
                            : d.label_name;
    std::snprintf(line, sizeof line, "  %zu. %-12s %.4f  box %.1f %.1f %.1f %.1f  (%.0f x %.0f)\n",
                  i + 1, label.c_str(), d.score, d.x1, d.y1, d.x2, d.y2, d.x2 - d.x1, d.y2 - d.y1);
    std::cout << line;
    if (d.keypoints.empty()) continue;
    std::string points = "     ";
    for (const auto& point : d.keypoints) {
      std::snprintf(line, sizeof line, " %s (%.1f, %.1f)",
                    point.name.empty() ? "point" : point.name.c_str(), point.x, point.y);
      points += line;
    }
    std::cout << points << '\n';
  }
}

// Where an image's drawing goes: OUT itself for one image, OUT/<name>.png for several.
std::string overlay_path(const DetectOptions& options, const fs::path& image, size_t images) {
  if (options.overlay.empty()) return "";
  if (images == 1) return options.overlay;
  return (fs::path(options.overlay) / image.stem()).string() + ".png";
}

// The model, which must be a detector; the overlay folder made when several images go there.
void check_detect_options(const DetectOptions& options, const Model& model, size_t images) {
  const auto& manifest = model.manifest();
  if (!manifest || !manifest->detection) {
    throw bad_model("detect needs a model whose manifest declares task 'detection'; " +
                    options.model.path + "'s task is '" +
                    (manifest ? manifest->task : std::string("generic")) +
                    "' (use classify, segment or run)");
  }
  if (options.overlay.empty() || images <= 1) return;
  std::error_code ec;
  std::string problem;
  if (fs::exists(options.overlay, ec) && !fs::is_directory(options.overlay, ec)) {
    problem = "it is a file";
  } else if (fs::create_directories(options.overlay, ec); ec) {
    problem = ec.message();
  }
  if (!problem.empty()) {
    throw bad_input("--overlay " + options.overlay +
                    ": with several images this must be a folder (" + problem + ")");
  }
}

// One image's objects: counted, printed (or kept for --json), drawn when asked.
void detect_one(const DetectOptions& options, const Model& model, const fs::path& path,
                size_t images, json& results, size_t& objects) {
  at::Tensor image = decode_image(path, ImageSpec{}, Decode::Exact, options.model.max_image_pixels);
  std::vector<Detection> detections = model.detect(image, options.min_score);
  objects += detections.size();  // found, whether or not the overlay can be written
  std::string overlay = overlay_path(options, path, images);
  if (!overlay.empty()) write_image(overlay, draw_detections(image, detections));
  if (options.jsonl) {
    print_json(result_json(path, image, detections, overlay));
  } else if (options.json) {
    results.push_back(result_json(path, image, detections, overlay));
  } else {
    print_human(path, detections);
    if (!overlay.empty()) std::cout << "  overlay written to " << overlay << '\n';
  }
}

int run_detect(const DetectOptions& options) {
  if (!std::isfinite(options.min_score)) {
    throw bad_input("--min-score must be a finite number, got " +
                    std::to_string(options.min_score));
  }
  std::vector<fs::path> images = collect_images(options.inputs);
  Model model = load_model(options.model, images.size());
  check_detect_options(options, model, images.size());

  json results = json::array();
  Progress progress("detect", images.size());
  size_t failed = 0;
  size_t objects = 0;
  auto started = std::chrono::steady_clock::now();
  for (size_t i = 0; i < images.size(); ++i) {
    try {
      detect_one(options, model, images[i], images.size(), results, objects);
    } catch (const Error& e) {
      // A model that cannot run is no single image's fault: stop.
      if (e.kind() != ErrorKind::BadInput) throw;
      progress.finish();
      report_error(e.what());
      ++failed;
    }
    progress.update(i + 1);
  }
  progress.finish();
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  json summary = {{"images", images.size() - failed},
                  {"failed", failed},
                  {"objects", objects},
                  {"seconds", seconds}};
  if (options.json) {
    print_json({{"results", results}, {"summary", summary}});
  } else if (images.size() > 1) {
    char line[160];
    std::snprintf(line, sizeof line, "%zu images in %.2f s, %zu objects, %zu failed\n",
                  images.size() - failed, seconds, objects, failed);
    (options.jsonl ? std::cerr : std::cout) << (options.jsonl ? "" : "\n") << line;
  }
  return failed == 0 ? 0 : 2;
}

}  // namespace

Command add_detect_command(CLI::App& app) {
  auto* command =
      app.add_subcommand("detect", "objects in images and image folders: boxes, scores, keypoints");
  auto options = std::make_shared<DetectOptions>();
  add_model_options(*command, options->model);
  command->add_option("IMAGE", options->inputs, "image files and folders (walked recursively)")
      ->required();
  command->add_option("--min-score", options->min_score,
                      "leave out objects scored below this (default: all the model returns)");
  command->add_option("--overlay", options->overlay,
                      "draw boxes, labels and keypoints: an image file for one image, a folder "
                      "(OUT/<name>.png) for several");
  auto* json_flag = command->add_flag("--json", options->json, "print one JSON object at the end");
  command->add_flag("--jsonl", options->jsonl, "print one JSON line per image as it is done")
      ->excludes(json_flag);
  return {command, [options] { return run_detect(*options); }};
}

}  // namespace torchship::cli
