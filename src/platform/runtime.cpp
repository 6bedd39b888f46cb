#include "torchship/runtime.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include <ATen/Parallel.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#include "platform/cpu_budget.h"
#include "platform/runtime_defaults.h"
#include "torchship/error.h"

namespace torchship {

namespace {
std::atomic<bool> configured{false};
std::atomic<bool> keep_packages{false};
std::mutex workers_mutex;
PackageWorkers workers = PackageWorkers::Off;
std::string worker_program;
}  // namespace

void configure_runtime(const RuntimeOptions& options) {
  if (options.threads < 0) {
    throw bad_input("threads must be 0 (default) or positive, got " +
                    std::to_string(options.threads));
  }
  if (options.interop_threads < 0) {
    throw bad_input("inter-op threads must be 0 (default) or positive, got " +
                    std::to_string(options.interop_threads));
  }
  int threads = options.threads > 0 ? options.threads : default_threads();
  if (at::get_num_threads() != threads) at::set_num_threads(threads);
  configured = true;
  if (options.interop_threads > 0 &&
      static_cast<int64_t>(at::get_num_interop_threads()) != options.interop_threads) {
    try {
      at::set_num_interop_threads(options.interop_threads);
    } catch (const c10::Error&) {
      throw unsupported(
          "inter-op threads can be set once per process, before any model runs; "
          "it is already " +
          std::to_string(at::get_num_interop_threads()));
    }
  }
  if (options.profiling_executor) torch::jit::getProfilingMode() = *options.profiling_executor;
  if (options.graph_optimizations) {
    torch::jit::setGraphExecutorOptimize(*options.graph_optimizations);
  }
  if (options.keep_compiled_packages) keep_packages = *options.keep_compiled_packages;
  std::lock_guard<std::mutex> lock(workers_mutex);
  if (options.package_workers) workers = *options.package_workers;
  if (options.package_worker_program) worker_program = *options.package_worker_program;
}

bool keep_compiled_packages() {
  return keep_packages;
}

PackageWorkers package_workers() {
  std::lock_guard<std::mutex> lock(workers_mutex);
  return workers;
}

std::string package_worker_program() {
  std::lock_guard<std::mutex> lock(workers_mutex);
  return worker_program;
}

PackageWorkers parse_package_workers(const std::string& text) {
  if (text == "off") return PackageWorkers::Off;
  if (text == "frozen") return PackageWorkers::Frozen;
  if (text == "all") return PackageWorkers::All;
  throw bad_input("package workers must be off, frozen or all, got '" + printable(text) + "'");
}

int intra_op_threads() {
  return at::get_num_threads();
}

int default_threads() {
  const char* omp = std::getenv("OMP_NUM_THREADS");
  if (omp && *omp) {
    char* end = nullptr;
    long value = std::strtol(omp, &end, 10);
    if (end != omp && value > 0) return static_cast<int>(std::min<long>(value, 1 << 16));
  }
  return available_cpus();
}

void apply_runtime_defaults() {
  if (!configured) configure_runtime(RuntimeOptions());
}

}  // namespace torchship
