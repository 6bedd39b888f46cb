// What the subcommands share: model options, loading, output helpers.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "image_batches.h"
#include "input_spec.h"
#include "torchship/torchship.h"

namespace torchship::cli {

// A registered subcommand: its CLI11 parser and what runs once it parsed. Returns the exit code.
struct Command {
  CLI::App* parser = nullptr;
  std::function<int()> run;
};

// --engine's help, for the model commands and serve.
constexpr const char* kEngineHelp =
    "which form of an archive of every form (format='auto') runs: auto (each form that "
    "reproduces its golden vectors here is timed, the fastest runs), torchscript, aoti or "
    "openvino (a choice an earlier run printed)";

// --precision's help, for the model commands and serve.
constexpr const char* kPrecisionHelp =
    "what an OpenVINO form computes in: fp32; bf16 (on CPUs that compute it natively; checked "
    "against the golden vectors at bf16's tolerance); auto (bf16 too where it computes it "
    "natively, kept where it agrees with fp32 and runs faster); by default the archive's: fp32 "
    "unless exported with precision='auto'";

struct ModelOptions {
  std::string path;
  std::string device = "cpu";
  int threads = 0;
  int interop_threads = 0;
  std::vector<std::string> extensions;
  bool optimize = false;     // --optimize
  bool no_optimize = false;  // --no-optimize; neither: optimize when it pays (see load_model)
  std::string optimization = "auto";  // --optimization: measure, or a recorded choice
  bool no_profiling = false;
  int warmup = 0;  // one-shot commands pay for no warm-up; bench sets its own default
  int64_t max_image_pixels = kDefaultMaxImagePixels;
  std::string precision;        // --precision: chosen at load ("": the archive's)
  std::string engine = "auto";  // --engine: which form of an archive of every form
  std::string weights;          // --weights: a weights update applied after loading
};

// MODEL (positional) and --device, --threads, --interop-threads, --extension, --optimize,
// --no-optimize, --optimization, --warmup, --max-image-pixels, --precision, --engine, --weights.
void add_model_options(CLI::App& command, ModelOptions& options);
// Load-time optimization (freeze, optimize_for_inference, golden verification) costs about one
// forward pass and a second copy of the weights; it pays off only over repeated runs. Without
// --optimize / --no-optimize, a command optimizes when it expects more than one forward call.
Model load_model(const ModelOptions& options, size_t expected_forwards);

Command add_info_command(CLI::App& app);
Command add_run_command(CLI::App& app);
Command add_classify_command(CLI::App& app);
Command add_segment_command(CLI::App& app);
Command add_detect_command(CLI::App& app);
Command add_check_command(CLI::App& app);
Command add_bench_command(CLI::App& app);
Command add_serve_command(CLI::App& app);

// Files named on the command line, and the images found by walking the folders named there
// (sorted; files that are not images by their extension are skipped with a warning, except
// `quiet_file`, such as a truth CSV that sits beside the images).
std::vector<std::filesystem::path> collect_images(const std::vector<std::string>& inputs,
                                                  const std::string& quiet_file = "");

// "1.50 MB", "87.3 MB": sizes for people.
std::string human_bytes(int64_t bytes);
// 21797672 -> "21,797,672"
std::string group_digits(int64_t value);
// "2 intra-op, of 2 CPUs this process may use": for info and bench.
std::string threads_summary();
// Stable JSON for programs: one object on one line.
void print_json(const nlohmann::json& object);
// One line on stderr: "torchship: info: ...", "torchship: warning: ...", "torchship: error: ...".
void info(const std::string& message);
void warn(const std::string& message);
void report_error(const std::string& message);

}  // namespace torchship::cli
