// Process-wide runtime settings: libtorch keeps one thread pool and one set of TorchScript
// executor flags per process, so they are configured once for the process, not per model.
// One header for what an application asks of the process, implemented by the platform layer's
// files of each concern: threads (platform/runtime.cpp), the CPUs this process may use
// (platform/cpu_budget.cpp), CUDA loaded on demand (platform/cuda_runtime.cpp).
#pragma once

#include <optional>
#include <string>

namespace torchship {

// Which AOTInductor packages run in a worker process of their own rather than in this one.
enum class PackageWorkers {
  Off,     // none: every package runs in this process
  Frozen,  // packages compiled with their weights inside (the default export): each version is
           // a new library, which only the end of the process that mapped it unmaps
  All,     // every package (a weights update over a package still runs in this process)
};

struct RuntimeOptions {
  int threads = 0;          // intra-op threads; 0: default_threads()
  int interop_threads = 0;  // inter-op threads; settable once per process; 0 keeps the default
  // TorchScript's profiling executor re-specializes the graph for every new input shape (the
  // first call at each batch size is slow); false selects the legacy executor. Unset: as is.
  std::optional<bool> profiling_executor;
  // TorchScript's graph optimization passes (fusion, specialization). They pay back over many
  // calls; a process that runs one forward and exits is faster without them. libtorch keeps
  // this flag per thread: it applies to forwards run on the thread that configured it (the
  // CLI's one-shot commands), not to a server's worker threads. Unset: as is.
  std::optional<bool> graph_optimizations;
  // An AOTInductor package's compiled library stays mapped after the model is freed (it
  // registers thread-local destructors in every thread that ran it, and the C library does not
  // unload it while those threads live). Loaded from memory (CPU) a library maps once per
  // distinct library; through AOTInductor's package loader (CUDA, custom operators) each load
  // maps another copy, its weights included. True gives a package loaded again, with the same
  // content, the one loaded while it is (no second load), and keeps those the package loader
  // opened for the process's life: what a server that unloads and reloads models needs
  // (torchship serve sets it). Unset: as is (off at start).
  std::optional<bool> keep_compiled_packages;
  // Packages that run in a worker process (PackageWorkers), one per loaded package: the worker
  // maps the package's libraries, and ends when the model is freed, which returns all of it to
  // the system. `package_worker_program` is the program that serves as the worker: torchship's
  // own (`torchship package-worker`; an application that links the library calls
  // serve_package_worker() from its main). Unset: as is (off at start).
  std::optional<PackageWorkers> package_workers;
  std::optional<std::string> package_worker_program;

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
  RuntimeOptions& with_keep_compiled_packages(bool value) {
    keep_compiled_packages = value;
    return *this;
  }
  RuntimeOptions& with_package_workers(PackageWorkers value, std::string program) {
    package_workers = value;
    package_worker_program = std::move(program);
    return *this;
  }
};

// Applies the options to this process: the intra-op threads (default_threads() for 0), the
// other settings where set (non-zero counts, flags with a value). Call it before loading models;
// calling it again changes the intra-op threads and the executor flags for every model, but
// inter-op threads can be set only once, before any model runs (Error(Unsupported) otherwise).
// Throws Error(BadInput) for negative counts. A process that never calls it gets the defaults
// from its first Model::load.
void configure_runtime(const RuntimeOptions& options);

// "off", "frozen" or "all" as PackageWorkers; Error(BadInput) naming them for another word.
PackageWorkers parse_package_workers(const std::string& text);

// The worker side of RuntimeOptions::package_workers: serves the package the parent process
// sends on file descriptors 3 to 3 + channels - 1 (one per concurrent forward), until the parent
// closes them or ends; returns the process's exit code. The torchship program runs it as
// `torchship package-worker CHANNELS DEVICE THREADS`; a program of an application's own that
// serves as package_worker_program calls it with those arguments.
int serve_package_worker(int channels, const std::string& device, int threads);

// The intra-op thread count models run with now.
int intra_op_threads();

// The CPUs this process may use: its affinity mask (taskset, docker --cpuset-cpus) capped by its
// cgroup's CPU quota (docker --cpus, a Kubernetes CPU limit), rounded up. libtorch's own default
// is its count of physical cores: 1 on a 2-vCPU virtual machine, the host's on a container
// limited to 2.
int available_cpus();

// Whether a CUDA device can run models. The first call loads libtorch's CUDA library where this
// libtorch has one (a process that never asks stays free of the CUDA libraries' memory); ask it,
// not libtorch, before anything else in the process queries CUDA.
bool cuda_available();

// The intra-op threads torchship uses unless told otherwise: OMP_NUM_THREADS when it is set
// (libtorch honours it), else available_cpus().
int default_threads();

}  // namespace torchship
