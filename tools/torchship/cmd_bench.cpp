// torchship bench MODEL [--input SPEC ...]: latency percentiles and throughput, optionally swept
// over batch sizes, thread counts and the forms of an archive of every form.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>

#ifdef __linux__
#include <unistd.h>
#endif
#include <utility>

#include "cli_common.h"
#include "core/text.h"
#include "progress.h"
#include "torchship/example_inputs.h"
#include "torchship/memory.h"

namespace torchship::cli {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct BenchOptions {
  ModelOptions model;
  std::vector<std::string> inputs;
  int runs = 30;
  std::vector<int> batch_sizes;
  std::vector<int> thread_counts;
  std::vector<std::string> engines;  // "all": every form of an archive of every form
  bool json = false;
  std::string preprocess_image;  // time image_input() on this file instead of forward
  bool fast_decode = false;
};

struct Measurement {
  std::string engine;  // set when sweeping engines
  int batch_size = 1;
  int threads = 1;
  double first_ms = 0;  // the first request after load; set on the first row only
  double p50 = 0, p90 = 0, p99 = 0, mean = 0;
  double throughput = 0;  // items per second

  json to_json() const {
    json out = {{"batch_size", batch_size},
                {"threads", threads},
                {"latency_ms", {{"p50", p50}, {"p90", p90}, {"p99", p99}, {"mean", mean}}},
                {"throughput_per_s", throughput}};
    if (!engine.empty()) out["engine"] = engine;
    return out;
  }
};

std::vector<c10::IValue> bench_inputs(const Model& model, const BenchOptions& options) {
  if (!options.inputs.empty()) {
    model.check_input_count(options.inputs.size());
    std::vector<c10::IValue> inputs;
    for (size_t i = 0; i < options.inputs.size(); ++i) {
      inputs.push_back(input_from_spec(model, i, options.inputs[i]));
    }
    return inputs;
  }
  auto inputs = example_inputs(model);
  if (!inputs.empty()) return inputs;
  throw bad_input(
      "no inputs to benchmark with: pass --input SPEC (the archive has neither golden "
      "vectors nor a manifest to synthesize them from)");
}

// The single batched tensor input resized to `batch` items (the first item repeated).
std::vector<c10::IValue> with_batch(const Model& model, const std::vector<c10::IValue>& inputs,
                                    int batch) {
  const auto& manifest = model.manifest();
  if (!manifest || !manifest->batch_dim || inputs.size() != 1 || !inputs[0].isTensor()) {
    throw bad_input(
        "--batch-sizes needs a model whose manifest declares a batch dimension and "
        "that takes one tensor");
  }
  at::Tensor first = inputs[0].toTensor().narrow(0, 0, 1);
  std::vector<int64_t> repeats(static_cast<size_t>(first.dim()), 1);
  repeats[0] = batch;
  return {first.repeat(repeats)};
}

double percentile(const std::vector<double>& sorted, double p) {
  size_t index = static_cast<size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(index, sorted.size() - 1)];
}

double time_one_ms(const std::function<void()>& work) {
  auto t0 = Clock::now();
  work();
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// `warmup` untimed runs (new shapes and thread counts build new oneDNN primitives), then `runs`
// timed ones of `work` (a forward, or preprocessing).
Measurement measure(const std::function<void()>& work, int batch, int threads, int warmup, int runs,
                    Progress& progress, size_t& done) {
  if (at::get_num_threads() != threads) at::set_num_threads(threads);
  for (int run = 0; run < warmup; ++run) work();
  std::vector<double> latencies;
  auto started = Clock::now();
  for (int run = 0; run < runs; ++run) {
    auto t0 = Clock::now();
    work();
    latencies.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    progress.update(++done);
  }
  double total_s = std::chrono::duration<double>(Clock::now() - started).count();
  Measurement m;
  m.batch_size = batch;
  m.threads = threads;
  std::sort(latencies.begin(), latencies.end());
  m.p50 = percentile(latencies, 0.50);
  m.p90 = percentile(latencies, 0.90);
  m.p99 = percentile(latencies, 0.99);
  double sum = 0;
  for (double l : latencies) sum += l;
  m.mean = sum / static_cast<double>(latencies.size());
  m.throughput = batch * runs / total_s;
  return m;
}

void print_row(const Measurement& m) {
  char line[160];
  std::snprintf(line, sizeof line, "%6d %8d %9.2f %9.2f %9.2f %9.2f %11.1f", m.batch_size,
                m.threads, m.p50, m.p90, m.p99, m.mean, m.throughput);
  std::cout << line << (m.engine.empty() ? "" : "  " + m.engine) << '\n';
}

// Decoding and preparing one image file for the model's first input, as classify does.
int run_preprocess_bench(const BenchOptions& options) {
  Model model = load_model(options.model, 0);
  Decode decode = options.fast_decode ? Decode::Reduced : Decode::Exact;
  std::function<void()> work = [&] { model.image_input(options.preprocess_image, 0, decode); };
  int threads = intra_op_threads();
  Progress progress("bench", static_cast<size_t>(options.runs));
  size_t done = 0;
  double first_ms = time_one_ms(work);
  at::Tensor prepared = model.image_input(options.preprocess_image, 0, decode).toTensor();
  Measurement m = measure(work, 1, threads, 2, options.runs, progress, done);
  progress.finish();
  if (options.json) {
    json out = m.to_json();
    out["runs"] = options.runs;
    out["first_ms"] = first_ms;
    out["image"] = options.preprocess_image;
    out["decode"] = options.fast_decode ? "reduced" : "exact";
    out["prepared"] = describe(prepared);
    print_json(out);
    return 0;
  }
  std::cout << "preprocess " << options.preprocess_image << " -> " << describe(prepared) << " ("
            << (options.fast_decode ? "reduced" : "exact") << " decode), " << options.runs
            << " timed runs\n\n";
  std::cout << " batch  threads    p50 ms    p90 ms    p99 ms   mean ms     items/s\n";
  print_row(m);
  return 0;
}

// What load tried and timed: {"chosen", "stored_ms", "seconds", "trials": [{"candidate",
// "applies", "miss", "forward_ms"}]}; chosen is "" until a plain archive's first forward.
json optimization_json(const OptimizationReport& report) {
  json trials = json::array();
  for (const auto& trial : report.trials) {
    trials.push_back({{"candidate", trial.candidate},
                      {"applies", trial.applies},
                      {"miss", trial.miss},
                      {"forward_ms", trial.forward_ms}});
  }
  return {{"chosen", report.chosen},
          {"stored_ms", report.stored_ms},
          {"seconds", report.seconds},
          {"trials", trials}};
}

// The process's resident memory now, in MB (Linux; 0 elsewhere).
double resident_mb() {
#ifdef __linux__
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  if (!(statm >> pages >> resident)) return 0;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / 1e6;
#else
  return 0;
#endif
}

// One model loaded (with `engine`, "" for the options' own) and timed in every configuration.
struct BenchRun {
  Model model;
  std::vector<c10::IValue> inputs;
  double load_ms = 0;  // includes optimization and warm-up, as a caller of Model::load waits
  double weights_ms =
      0;                // --weights: applying the update to the loaded model, golden check included
  double first_ms = 0;  // the first request after load
  double loaded_mb = 0;  // the process's RSS when the model is ready (loaded, updated, warm)
  std::vector<Measurement> rows;
};

// How many items one forward on `inputs` (at `batch`, 0 for as given) carries.
int items_of(const Model& model, const std::vector<c10::IValue>& inputs, int batch) {
  if (batch > 0) return batch;
  if (model.manifest() && model.manifest()->batch_dim && inputs.size() == 1 &&
      inputs[0].isTensor()) {
    return static_cast<int>(inputs[0].toTensor().size(0));
  }
  return 1;
}

BenchRun bench_engine(const BenchOptions& options, const std::string& engine, Progress& progress,
                      size_t& done) {
  ModelOptions model_options = options.model;
  if (!engine.empty()) model_options.engine = engine;
  // A weights update is timed apart from the load it applies to (what a server's new version
  // costs when the model is loaded already).
  std::string weights = std::exchange(model_options.weights, "");
  auto load_started = Clock::now();
  BenchRun run{load_model(model_options, static_cast<size_t>(options.runs)), {}, 0, 0, 0, 0, {}};
  if (!weights.empty()) {
    auto started = Clock::now();
    run.model = run.model.with_weights(WeightsUpdate::open(weights));
    run.weights_ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
    release_free_memory();  // the old model's, as a server does after it takes a new version
  }
  Model& model = run.model;
  run.inputs = bench_inputs(model, options);
  // Without golden inputs load had nothing to warm up on (nor, without a manifest, to verify an
  // optimized module on): the benchmark's own inputs do both, as a server's first requests would.
  if (!model.archive().has_golden()) {
    for (int i = 0; i < options.model.warmup; ++i) model.forward(run.inputs);
    release_free_memory();  // as Model::load does after its own warm-up
  }
  run.loaded_mb = resident_mb();
  run.load_ms = std::chrono::duration<double, std::milli>(Clock::now() - load_started).count() -
                run.weights_ms;
  run.first_ms = time_one_ms([&] { model.forward(run.inputs); });
  std::vector<int> batches =
      options.batch_sizes.empty() ? std::vector<int>{0} : options.batch_sizes;
  std::vector<int> threads =
      options.thread_counts.empty() ? std::vector<int>{intra_op_threads()} : options.thread_counts;
  for (int batch : batches) {
    auto batch_inputs = batch == 0 ? run.inputs : with_batch(model, run.inputs, batch);
    for (int thread_count : threads) {
      run.rows.push_back(measure([&] { model.forward(batch_inputs); },
                                 items_of(model, run.inputs, batch), thread_count,
                                 std::max(1, options.model.warmup), options.runs, progress, done));
      run.rows.back().engine = engine;
    }
  }
  run.rows.front().first_ms = run.first_ms;
  return run;
}

// The first run's object as without a sweep (its notes, load and first forward), the other
// rows in "sweep", and with engines swept each engine's load in "engines".
void print_bench_json(const BenchOptions& options, const std::vector<BenchRun>& runs) {
  const BenchRun& run = runs.front();
  const Measurement& main = run.rows.front();
  json out = main.to_json();
  out["runs"] = options.runs;
  out["optimized"] = run.model.optimized();
  out["notes"] = run.model.notes();
  out["optimization"] = optimization_json(run.model.optimization());
  out["warmup_runs"] = options.model.warmup;
  out["first_ms"] = run.first_ms;
  out["first_over_steady"] = run.first_ms / main.p50;
  out["load_ms"] = run.load_ms;
  if (!options.model.weights.empty()) out["weights_ms"] = run.weights_ms;
  out["available_cpus"] = available_cpus();
  // RSS when loaded; after the timed runs (what the allocator keeps for forwards to come, as a
  // server holding the model does); and after those runs' freed memory went back to the system.
  out["rss_loaded_mb"] = run.loaded_mb;
  out["rss_mb"] = resident_mb();
  release_free_memory();
  out["rss_released_mb"] = resident_mb();
  out["heap"] = heap_name(process_heap());
  out["format"] = format_id(run.model.format());
  json sweep = json::array(), engines = json::array();
  for (const auto& each : runs) {
    for (const auto& m : each.rows) sweep.push_back(m.to_json());
    engines.push_back({{"engine", format_id(each.model.format())},
                       {"precision", each.model.precision()},
                       {"load_ms", each.load_ms},
                       {"first_ms", each.first_ms},
                       {"notes", each.model.notes()}});
  }
  if (sweep.size() > 1) out["sweep"] = sweep;
  if (runs.size() > 1) out["engines"] = engines;
  print_json(out);
}

void print_bench_text(const BenchOptions& options, const std::vector<BenchRun>& runs) {
  for (const auto& run : runs) {
    std::cout << "model    " << options.model.path
              << (run.model.optimized() ? " (optimized)" : " (as stored)") << ", " << options.runs
              << " timed runs per row after " << options.model.warmup << " warm-up runs\n";
    std::cout << "format   " << format_name(run.model.format()) << ", loaded in "
              << static_cast<int64_t>(run.load_ms) << " ms";
    if (!options.model.weights.empty()) {
      std::cout << ", weights update applied in " << static_cast<int64_t>(run.weights_ms) << " ms";
    }
    std::cout << '\n';
    for (const auto& note : run.model.notes()) std::cout << "note     " << note << '\n';
  }
  std::cout << "threads  " << threads_summary() << '\n';
  std::vector<std::string> shapes;
  for (const auto& input : runs.front().inputs) shapes.push_back(describe(input));
  std::cout << "input    " << join(shapes) << "\n\n";
  std::cout << " batch  threads    p50 ms    p90 ms    p99 ms   mean ms     items/s"
            << (runs.size() > 1 ? "  engine" : "") << '\n';
  for (const auto& run : runs) {
    for (const auto& m : run.rows) print_row(m);
  }
  std::cout << '\n';
  for (const auto& run : runs) {
    char line[160];
    std::snprintf(line, sizeof line,
                  "first inference after load (on the load's input shape): %.2f ms (%.2fx the "
                  "first row's p50)",
                  run.first_ms, run.first_ms / run.rows.front().p50);
    std::cout << line << (run.rows.front().engine.empty() ? "" : ", " + run.rows.front().engine)
              << '\n';
  }
}

// --engines: the names given, or for "all" every form of the archive ("" without the option).
std::vector<std::string> engines_to_bench(const BenchOptions& options) {
  if (options.engines.empty()) return {""};
  if (options.engines != std::vector<std::string>{"all"}) return options.engines;
  Archive archive = Archive::open(options.model.path);
  std::vector<std::string> all;
  for (const auto& form : archive.forms()) all.push_back(format_id(form.format));
  if (all.empty()) all.push_back(format_id(archive.format()));
  return all;
}

int run_bench(const BenchOptions& options) {
  if (!options.preprocess_image.empty()) return run_preprocess_bench(options);
  auto engines = engines_to_bench(options);
  size_t rows = (options.batch_sizes.empty() ? 1 : options.batch_sizes.size()) *
                (options.thread_counts.empty() ? 1 : options.thread_counts.size());
  Progress progress("bench", engines.size() * rows * static_cast<size_t>(options.runs));
  size_t done = 0;
  std::vector<BenchRun> runs;
  for (const auto& engine : engines) {
    runs.push_back(bench_engine(options, engine, progress, done));
  }
  progress.finish();
  if (options.json) {
    print_bench_json(options, runs);
  } else {
    print_bench_text(options, runs);
  }
  return 0;
}

}  // namespace

Command add_bench_command(CLI::App& app) {
  auto* command = app.add_subcommand("bench", "latency percentiles and throughput");
  auto options = std::make_shared<BenchOptions>();
  options->model.warmup = 2;
  add_model_options(*command, options->model);
  command
      ->add_option("--input,-i", options->inputs,
                   "as for run; without it, the golden inputs or inputs synthesized from the "
                   "manifest")
      ->allow_extra_args(false);
  command->add_option("--runs", options->runs, "timed runs per configuration")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      ->add_option("--batch-sizes", options->batch_sizes,
                   "sweep batch sizes, e.g. 1,8,32 (models with a batch dimension)")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  command->add_option("--thread-counts", options->thread_counts, "sweep thread counts, e.g. 1,2")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  command
      ->add_option("--engines", options->engines,
                   "sweep the forms of an archive of every form: all, or names (torchscript, "
                   "aoti, openvino), each loaded as --engine loads it")
      ->delimiter(',');
  auto* preprocess =
      command->add_option("--preprocess", options->preprocess_image,
                          "time decoding and preparing this image file for the model's first "
                          "input (as classify does) instead of the forward");
  command->add_flag("--fast-decode", options->fast_decode, "with --preprocess: as in classify")
      ->needs(preprocess);
  command->add_flag("--json", options->json,
                    "one JSON object: latency_ms {p50, p90, p99, mean}, throughput_per_s, ...");
  return {command, [options] { return run_bench(*options); }};
}

}  // namespace torchship::cli
