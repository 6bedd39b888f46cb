// An AOTInductor package run in a worker process of its own (RuntimeOptions::package_workers).
// glibc never unmaps a compiled library once a thread has run it, so each new version of a
// package with its weights compiled in would stay in the server for good; in a worker, it goes
// when the model is freed: the worker ends, and the system takes back all it mapped.
//
// The worker is package_worker_program (torchship's own program: `torchship package-worker`),
// started with one socket per concurrent forward; torchship sends it the package's bytes (it
// writes nothing to disk), it answers with the call spec, then runs flat tensors in and out. It
// ends when torchship closes the sockets (the model freed) or ends (it dies with its parent).
#pragma once

#include <memory>

#include "backends/compiled_package.h"

namespace torchship::backends {

// The package opened in a new worker process. The worker's load failures come back as they
// would in this process (the same kind and message); Error(Internal) when the worker cannot be
// started or ends while loading. A worker that ends later (compiled code that crashed, a kill)
// is replaced by a new one: a forward it was running fails with Error(Internal), naming how it
// ended; one that had not reached it runs in the new worker.
std::unique_ptr<CompiledPackage> open_package_in_worker(const Archive& archive,
                                                        const c10::Device& device,
                                                        int concurrent_forwards);

}  // namespace torchship::backends
