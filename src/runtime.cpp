#include "torchship/runtime.h"

#include <string>

#include <ATen/Parallel.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#include "torchship/error.h"

namespace torchship {

void configure_runtime(const RuntimeOptions& options) {
  if (options.threads < 0) {
    throw bad_input("threads must be 0 (default) or positive, got " +
                    std::to_string(options.threads));
  }
  if (options.interop_threads < 0) {
    throw bad_input("inter-op threads must be 0 (default) or positive, got " +
                    std::to_string(options.interop_threads));
  }
  if (options.threads > 0) at::set_num_threads(options.threads);
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
}

int intra_op_threads() {
  return at::get_num_threads();
}

}  // namespace torchship
