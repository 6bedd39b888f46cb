// Process-wide runtime settings: libtorch keeps one thread pool and one set of TorchScript
// executor flags per process, so they are configured once for the process, not per model.
#pragma once

#include <optional>

namespace torchship {

struct RuntimeOptions {
  int threads = 0;          // intra-op threads; 0 keeps libtorch's default
  int interop_threads = 0;  // inter-op threads; settable once per process; 0 keeps the default
  // TorchScript's profiling executor re-specializes the graph for every new input shape (the
  // first call at each batch size is slow); false selects the legacy executor. Unset: as is.
  std::optional<bool> profiling_executor;
  // TorchScript's graph optimization passes (fusion, specialization). They pay back over many
  // calls; a process that runs one forward and exits is faster without them. libtorch keeps
  // this flag per thread: it applies to forwards run on the thread that configured it (the
  // CLI's one-shot commands), not to a server's worker threads. Unset: as is.
  std::optional<bool> graph_optimizations;

  RuntimeOptions& with_threads(int value) {
    threads = value;
    return *this;
  }
  RuntimeOptions& with_interop_threads(int value) {
    interop_threads = value;
    return *this;
  }
  RuntimeOptions& with_profiling_executor(bool value) {
    profiling_executor = value;
    return *this;
  }
  RuntimeOptions& with_graph_optimizations(bool value) {
    graph_optimizations = value;
    return *this;
  }
};

// Applies the options that are set (non-zero counts, flags with a value) to this process. Call
// it before loading models; calling it again changes the intra-op threads and the executor
// flags for every model, but inter-op threads can be set only once, before any model runs
// (Error(Unsupported) otherwise). Throws Error(BadInput) for negative counts.
void configure_runtime(const RuntimeOptions& options);

// The intra-op thread count models run with now.
int intra_op_threads();

}  // namespace torchship
