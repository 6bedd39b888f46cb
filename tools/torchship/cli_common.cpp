#include "cli_common.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>

namespace torchship::cli {

void add_model_options(CLI::App& command, ModelOptions& options) {
  command
      .add_option("MODEL", options.path,
                  "archive written by torchship.export (TorchScript .pt, AOTInductor .pt2, "
                  "OpenVINO), torch.jit.save or torch._inductor.aoti_compile_and_package")
      ->required();
  command.add_option("--device", options.device, "cpu, cuda or cuda:N")->capture_default_str();
  command
      .add_option("--threads", options.threads,
                  "intra-op threads (0: the CPUs this process may use, or OMP_NUM_THREADS)")
      ->check(CLI::NonNegativeNumber);
  command
      .add_option("--interop-threads", options.interop_threads,
                  "inter-op threads (0: libtorch's default)")
      ->check(CLI::NonNegativeNumber);
  command.add_option("--extension", options.extensions,
                     "custom-operator library to load first (repeatable)");
  auto* optimize = command.add_flag(
      "--optimize", options.optimize,
      "try the optimized forms of a TorchScript module at load and keep the fastest that "
      "reproduces the stored module's outputs, if it beats the stored one (default when the "
      "command runs more than one forward)");
  auto* no_optimize =
      command.add_flag("--no-optimize", options.no_optimize, "run the module as stored")
          ->excludes(optimize);
  std::string candidates = "auto (measure), stored";
  for (const auto& name : kOptimizationCandidates) candidates += ", " + name;
  command
      .add_option("--optimization", options.optimization,
                  "which optimized form: " + candidates +
                      "; a name skips the timing (a choice an earlier run printed)")
      ->excludes(no_optimize)
      ->capture_default_str();
  command.add_flag("--no-profiling", options.no_profiling,
                   "use TorchScript's legacy executor instead of the profiling one");
  command
      .add_option("--max-image-pixels", options.max_image_pixels,
                  "refuse images larger than this (width x height, read from the header)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      .add_option("--warmup", options.warmup,
                  "forward runs on the golden inputs right after loading")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command.add_option("--precision", options.precision, kPrecisionHelp)
      ->check(CLI::IsMember({"fp32", "bf16", "auto"}));
  command.add_option("--engine", options.engine, kEngineHelp)->capture_default_str();
  command.add_option("--weights", options.weights,
                     "a weights update (torchship.export_weights) to run the model with; its "
                     "golden vectors are checked first");
}

Model load_model(const ModelOptions& options, size_t expected_forwards) {
  bool optimize = options.optimize || options.optimization != "auto" ||
                  (!options.no_optimize && expected_forwards > 1);
  configure_runtime(RuntimeOptions()
                        .with_threads(options.threads)
                        .with_interop_threads(options.interop_threads)
                        .with_profiling_executor(!options.no_profiling)
                        .with_graph_optimizations(options.optimize || expected_forwards > 1));
  LoadOptions load;
  load.with_device(options.device)
      .with_optimize(optimize)
      .with_optimization(options.optimization)
      .with_warmup(options.warmup)
      .with_max_image_pixels(options.max_image_pixels)
      .with_precision(options.precision)
      .with_engine(options.engine);
  for (const auto& library : options.extensions) load.with_extension(library);
  Model model = Model::load(options.path, load);
  if (options.weights.empty()) return model;
  return model.with_weights(WeightsUpdate::open(options.weights));
}

std::vector<std::filesystem::path> collect_images(const std::vector<std::string>& inputs,
                                                  const std::string& quiet_file) {
  namespace fs = std::filesystem;
  std::string quiet_key = quiet_file.empty() ? "" : path_key(quiet_file);
  std::vector<fs::path> images;
  for (const auto& input : inputs) {
    std::error_code ec;
    if (!fs::is_directory(input, ec)) {
      images.emplace_back(input);
      continue;
    }
    std::vector<fs::path> found;
    for (auto it = fs::recursive_directory_iterator(input, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      if (looks_like_image(it->path())) {
        found.push_back(it->path());
      } else if (path_key(it->path()) != quiet_key) {
        warn("skipping " + it->path().string() + ": not an image file");
      }
    }
    if (ec) throw bad_input("cannot read folder " + input + ": " + ec.message());
    std::sort(found.begin(), found.end());
    images.insert(images.end(), found.begin(), found.end());
  }
  return images;
}

std::string human_bytes(int64_t bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1000 && unit < 4) {
    value /= 1000;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", value, units[unit]);
  return text;
}

std::string group_digits(int64_t value) {
  std::string digits = std::to_string(value < 0 ? -value : value);
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(i, ",");
  return value < 0 ? "-" + digits : digits;
}

std::string threads_summary() {
  int cpus = available_cpus();
  return std::to_string(intra_op_threads()) + " intra-op, of " + std::to_string(cpus) +
         (cpus == 1 ? " CPU" : " CPUs") + " this process may use";
}

void print_json(const nlohmann::json& object) {
  std::cout << object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

void log_line(const char* level, const std::string& message) {
  // One write per line, so that lines of concurrent threads never interleave.
  // Messages quote arguments and file contents: escaped, they stay on one line of text.
  std::string line = std::string("torchship: ") + level + ": " + printable(message) + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
}

void info(const std::string& message) {
  log_line("info", message);
}

void warn(const std::string& message) {
  log_line("warning", message);
}

void report_error(const std::string& message) {
  log_line("error", message);
}

}  // namespace torchship::cli
