// An AOTInductor package's compiled models, run on flat tensors: opened in this process, or in a
// worker process of its own (package_worker.h). The AOTInductor backend (aoti.cpp) calls either
// the same way; only where the compiled library is mapped differs, and so what its unload frees.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"

namespace torchship::backends {

// The package's call spec: torch.utils._pytree's treespec_dumps of (args, kwargs) and of the
// result.
struct CallSpec {
  std::string inputs;
  std::string outputs;
};

class CompiledPackage {
 public:
  virtual ~CompiledPackage() = default;

  virtual const CallSpec& call_spec() const = 0;
  virtual ModelSummary summary() const = 0;
  // Runs compiled model `model` on the flat inputs: -1 the dynamic one, i the manifest's i-th
  // static batch model (export.static_batches).
  virtual std::vector<at::Tensor> run(int model, std::vector<at::Tensor> inputs) const = 0;
  // Where it runs, for notes: "" in this process, else " in worker process 1234".
  virtual std::string where() const = 0;
};

// The package opened in this process. Throws Error(Unsupported) for a package this machine
// cannot run (another platform, device or CPU), Error(BadModel) for one that does not load.
std::unique_ptr<CompiledPackage> open_compiled_package(const Archive& archive,
                                                       const c10::Device& device,
                                                       int concurrent_forwards);

}  // namespace torchship::backends
